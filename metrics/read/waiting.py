"""Clients waiting for a reply now, with their age and SLA state at this very instant.

The waiting index (written by streams/sla_fold.py, each member a codecs.WaitingMember)
holds each open wait scored by when it opened; nothing about "now" is stored. Age,
business age and the state (ok → at_risk → breached) are computed here, at read time, so
a breach shows the second it happens, before any reply exists, and the list is exact at
any instant.

Ids only: conversation or client ids, manager and team ids. No names or texts exist here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

import redis

from salespulse.core.kpi.buckets import from_us
from salespulse.core.kpi.catalogue import NO_VALUE
from salespulse.core.kpi.codecs import (
    decode_received_s,
    decode_waiting_member,
    public_conversation_id,
)
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.sla_policy import Basis, WaitKind
from salespulse.core.tenants import TenantConfig, TenantDirectory

WaitState = Literal["ok", "at_risk", "breached"]


@dataclass(frozen=True)
class Wait:
    conversation: str
    kind: WaitKind
    channel: str
    manager: str | None
    team: str
    pipeline: str | None
    opened_at: datetime
    age_seconds: float
    business_age_seconds: float
    # The clock and targets of the SLA policy that applies; None: no policy applies.
    basis: Basis
    target_seconds: float | None
    at_risk_seconds: float | None
    state: WaitState

    @property
    def measured_seconds(self) -> float:
        return self.business_age_seconds if self.basis == "business" else self.age_seconds

    def as_json(self) -> dict[str, object]:
        return {
            "conversation": self.conversation,
            "kind": self.kind,
            "channel": self.channel,
            "manager": self.manager,
            "team": self.team,
            "pipeline": self.pipeline,
            "opened_at": self.opened_at.isoformat(),
            "age_seconds": self.age_seconds,
            "business_age_seconds": self.business_age_seconds,
            "basis": self.basis,
            "target_seconds": self.target_seconds,
            "at_risk_seconds": self.at_risk_seconds,
            "state": self.state,
        }


def wait_team(config: TenantConfig, manager: str | None, team: str | None) -> str:
    """The team a wait is shown under: the manager's in the tenants file as it is now,
    else the one the contact named (as the fold's dimensions resolve it)."""
    return config.team_of(manager) or team or NO_VALUE


def classify(member: str, opened_us: int, config: TenantConfig, now: datetime) -> Wait:
    """One waiting-index entry, timed and judged against its policy at ``now``. Pure."""
    entry = decode_waiting_member(member)
    channel, manager, pipeline = entry.channel, entry.manager, entry.pipeline
    team = wait_team(config, manager or None, entry.team or None)
    opened_at = from_us(opened_us)
    # Ages are judged at the millisecond they are reported with: a state computed from the
    # unrounded age could say "breached" beside a reported age equal to the target.
    age = round(max(0.0, (now - opened_at).total_seconds()), 3)
    calendar = config.calendar_for(team)
    business_age = round(float(calendar.business_seconds(opened_at, now)), 3) if calendar else age
    wait_kind: WaitKind = "next" if entry.kind == "next" else "first"
    target = config.sla_target(channel, pipeline or None, wait_kind)
    state: WaitState = "ok"
    basis: Basis = target.basis if target else config.default_basis
    if target is not None:
        measured = business_age if target.basis == "business" else age
        if measured > target.target_s:
            state = "breached"
        elif measured >= target.warning_s:
            state = "at_risk"
    return Wait(
        conversation=public_conversation_id(entry.ref),
        kind=wait_kind,
        channel=channel,
        manager=manager or None,
        team=team,
        pipeline=pipeline or None,
        opened_at=opened_at,
        age_seconds=age,
        business_age_seconds=business_age,
        basis=basis,
        target_seconds=target.target_s if target else None,
        at_risk_seconds=target.warning_s if target else None,
        state=state,
    )


def oldest_first(waits: Iterable[Wait]) -> list[Wait]:
    return sorted(waits, key=lambda wait: (wait.opened_at, wait.conversation))


class WaitingReader:
    """Synchronous, like the KpiReader: runs in the exporter's scrape and API threads."""

    def __init__(self, client: redis.Redis, keys: KpiKeys, tenants: TenantDirectory) -> None:
        self._client = client
        self._keys = keys
        self._tenants = tenants

    def waiting(self, tenant: str, now: datetime, limit: int | None = None) -> list[Wait]:
        """The tenant's open waits, oldest first (the first ``limit`` of them)."""
        stop = -1 if limit is None else max(limit, 1) - 1
        # redis-py types replies loosely; with withscores it is a list of (member, score)
        entries = cast(
            "list[tuple[bytes, float]]",
            self._client.zrange(self._keys.waiting(tenant), 0, stop, withscores=True),
        )
        config = self._tenants.get(tenant)
        waits = [classify(member.decode(), int(score), config, now) for member, score in entries]
        return oldest_first(waits)

    def count(self, tenant: str) -> int:
        return int(self._client.zcard(self._keys.waiting(tenant)))

    def last_received(self) -> dict[str, float]:
        """Tenant → unix time (s) of the newest event received from it."""
        held = self._client.hgetall(self._keys.last_received)
        return {
            (k.decode() if isinstance(k, bytes) else k): decode_received_s(v)
            for k, v in held.items()
        }
