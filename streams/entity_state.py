"""Per-entity state (deals, leads): the join of an entity's events. Pure.

A state is a *join* of the entity's events: every field keeps the minimum or maximum by
the ordering key (occurred_at, event_id). Joins are commutative, associative and
idempotent, so the state after any arrival order, with any repeats, is the same
(docs/kpi-semantics.md, "Deal state"). streams/entities.py derives the KPI
contributions from a state.
"""

from __future__ import annotations

import msgspec

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import to_us
from salespulse.core.kpi.codecs import StateCodec
from salespulse.core.kpi.redis_layout import SEP

# Event field → the short key it is kept under in a state's `latest` (states are stored
# per entity: at a million open deals every byte of a state counts). _keep_latest
# spells these out: keep the two in step.
CODE = {
    "manager_id": "m", "team": "t", "pipeline": "p", "source_channel": "s", "amount": "a",
    "cost": "k", "currency": "c", "client_id": "cl", "lead_id": "l", "lost_reason": "r",
}  # fmt: skip


class DealState(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    created: int | None = None
    # "pipeline\x1fstage" → first entry (µs)
    entries: dict[str, int] = msgspec.field(default_factory=dict)
    # latest stage event: (µs, event_id, pipeline, stage, given kind or "")
    current: tuple[int, str, str, str, str] | None = None
    # field → (µs, event_id, value) of the latest event carrying it
    latest: dict[str, tuple[int, str, str]] = msgspec.field(default_factory=dict)


class LeadState(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    # earliest event: (µs, event_id, stage); lead_created counts as stage "new"
    first: tuple[int, str, str] | None = None
    # stage of a lead_stage_changed → its earliest µs
    stage_first: dict[str, int] = msgspec.field(default_factory=dict)
    latest: dict[str, tuple[int, str, str]] = msgspec.field(default_factory=dict)


# How the states are stored ({p}ent:{tenant}:deal|lead:{id}, salespulse/core/kpi/redis_layout.py).
DEAL_STATE = StateCodec(DealState)
LEAD_STATE = StateCodec(LeadState)


def _keep_latest(latest: dict[str, tuple[int, str, str]], event: CrmEvent, us: int) -> None:
    # Unrolled over CODE: ten attribute reads cost less than one getattr loop, and most
    # of the fields are None.
    event_id = event.event_id
    if event.manager_id is not None:
        _hold(latest, "m", us, event_id, event.manager_id)
    if event.team is not None:
        _hold(latest, "t", us, event_id, event.team)
    if event.pipeline is not None:
        _hold(latest, "p", us, event_id, event.pipeline)
    if event.source_channel is not None:
        _hold(latest, "s", us, event_id, event.source_channel)
    if event.amount is not None:
        _hold(latest, "a", us, event_id, str(event.amount))
    if event.cost is not None:
        _hold(latest, "k", us, event_id, str(event.cost))
    if event.currency is not None:
        _hold(latest, "c", us, event_id, event.currency)
    if event.client_id is not None:
        _hold(latest, "cl", us, event_id, event.client_id)
    if event.lead_id is not None:
        _hold(latest, "l", us, event_id, event.lead_id)
    if event.lost_reason is not None:
        _hold(latest, "r", us, event_id, event.lost_reason)


def _hold(
    latest: dict[str, tuple[int, str, str]], code: str, us: int, event_id: str, value: str
) -> None:
    held = latest.get(code)
    if held is None or us > held[0] or (us == held[0] and event_id > held[1]):
        latest[code] = (us, event_id, value)


def join_deal(state: DealState, event: CrmEvent, us: int | None = None) -> None:
    if us is None:
        us = to_us(event.occurred_at)
    if event.type == "deal_created" and (state.created is None or us < state.created):
        state.created = us
    if event.type == "deal_stage_changed" and event.pipeline and event.stage_to:
        key = f"{event.pipeline}{SEP}{event.stage_to}"
        held = state.entries.get(key)
        if held is None or us < held:
            state.entries[key] = us
        stamp = (us, event.event_id, event.pipeline, event.stage_to, event.stage_kind or "")
        if state.current is None or stamp[:2] > state.current[:2]:
            state.current = stamp
    _keep_latest(state.latest, event, us)


def join_lead(state: LeadState, event: CrmEvent, us: int | None = None) -> None:
    if us is None:
        us = to_us(event.occurred_at)
    stage = "new" if event.type == "lead_created" else (event.stage_to or "new")
    if state.first is None or (us, event.event_id) < state.first[:2]:
        state.first = (us, event.event_id, stage)
    if event.type == "lead_stage_changed" and event.stage_to:
        held = state.stage_first.get(event.stage_to)
        if held is None or us < held:
            state.stage_first[event.stage_to] = us
    _keep_latest(state.latest, event, us)
