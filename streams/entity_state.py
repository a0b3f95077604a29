"""Per-entity state (deals, leads): the join of an entity's events. Pure.

A state is a *join* of the entity's events: every field keeps the minimum or maximum by
the ordering key (occurred_at, causal rank, event_id). Joins are commutative, associative
and idempotent, so the state after any arrival order, with any repeats, is the same
(docs/kpi-semantics.md, "Deal state"). streams/entities.py derives the KPI
contributions from a state.

Creations and stage entries are counted from the state too (a deal is created once; it
enters a stage once per distinct instant), not per event: a re-delivered event whose
dedupe id expired long ago joins a state it is already part of and counts nothing.

The causal rank (lead created < lead stage < deal created < entry into an open stage <
into a won or lost one) orders events at the same instant before the id does: CRMs with
date-only timestamps put a creation and its first stage on the same instant. It is kept
as a one-digit prefix of the event id in the tuples below (``tie``), so that one string
comparison orders both; states stored before the prefix compare their ties by id alone.
"""

from __future__ import annotations

from bisect import bisect_left

import msgspec

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import to_us
from salespulse.core.kpi.codecs import StateCodec
from salespulse.core.kpi.redis_layout import SEP
from salespulse.core.tenants import TenantConfig

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
    # latest stage event: (µs, tie, pipeline, stage, given kind or "")
    current: tuple[int, str, str, str, str] | None = None
    # field → (µs, tie, value) of the latest event carrying it
    latest: dict[str, tuple[int, str, str]] = msgspec.field(default_factory=dict)
    # "pipeline\x1fstage" → the later entries (µs, ascending, distinct, after the first):
    # with `entries`, every distinct entry once. Last, so older stored states decode.
    again: dict[str, list[int]] = msgspec.field(default_factory=dict)


class LeadState(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    # earliest event: (µs, tie, stage); lead_created counts as stage "new"
    first: tuple[int, str, str] | None = None
    # stage of a lead_stage_changed → its earliest µs
    stage_first: dict[str, int] = msgspec.field(default_factory=dict)
    latest: dict[str, tuple[int, str, str]] = msgspec.field(default_factory=dict)
    # the earliest lead_created (µs): the lead is counted created once, there
    created: int | None = None


# Causal ranks (module docstring); an event of no entity ranks after them all.
LEAD_CREATED, LEAD_STAGE, DEAL_CREATED, OPEN_ENTRY, CLOSING_ENTRY, OTHER = range(6)


def causal_rank(event: CrmEvent, config: TenantConfig | None = None) -> int:
    """The event's rank among events at the same instant (docs/kpi-semantics.md,
    "Ordering key"); a stage's kind is the event's ``stage_kind``, else the configured one."""
    kind = event.type
    if kind == "lead_created":
        return LEAD_CREATED
    if kind == "lead_stage_changed":
        return LEAD_STAGE
    if kind == "deal_created":
        return DEAL_CREATED
    if kind != "deal_stage_changed":
        return OTHER
    stage_kind = event.stage_kind
    if stage_kind is None and config is not None and event.pipeline is not None:
        pipeline = config.pipelines.get(event.pipeline)
        if pipeline is not None:
            stage_kind = next((s.kind for s in pipeline.stages if s.id == event.stage_to), None)
    return CLOSING_ENTRY if stage_kind in ("won", "lost") else OPEN_ENTRY


def tie(event: CrmEvent, config: TenantConfig | None = None) -> str:
    """The rank digit and the id: compared as one string (module docstring)."""
    return f"{causal_rank(event, config)}{event.event_id}"


# How the states are stored ({p}ent:{tenant}:deal|lead:{id}, salespulse/core/kpi/redis_layout.py).
DEAL_STATE = StateCodec(DealState)
LEAD_STATE = StateCodec(LeadState)


def _keep_latest(
    latest: dict[str, tuple[int, str, str]], event: CrmEvent, us: int, event_id: str
) -> None:
    # Unrolled over CODE: ten attribute reads cost less than one getattr loop, and most
    # of the fields are None. ``event_id`` is the event's tie.
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


def join_deal(
    state: DealState, event: CrmEvent, us: int | None = None, config: TenantConfig | None = None
) -> None:
    """Join one deal event. A ``deal_created`` with ``pipeline`` and ``stage_to`` is the
    creation and the entry into that stage (docs/kpi-semantics.md, "Deal state")."""
    if us is None:
        us = to_us(event.occurred_at)
    order = tie(event, config)
    kind = event.type
    if kind == "deal_created" and (state.created is None or us < state.created):
        state.created = us
    if event.pipeline and event.stage_to:
        _enter(state, f"{event.pipeline}{SEP}{event.stage_to}", us)
        stamp = (us, order, event.pipeline, event.stage_to, event.stage_kind or "")
        if state.current is None or stamp[:2] > state.current[:2]:
            state.current = stamp
    _keep_latest(state.latest, event, us, order)


def _enter(state: DealState, key: str, us: int) -> None:
    """Record an entry into a stage; entries at one instant are one entry."""
    first = state.entries.get(key)
    if first is None:
        state.entries[key] = us
        return
    if us == first:
        return
    if us < first:
        state.entries[key] = us
        us = first
    later = state.again.setdefault(key, [])
    at = bisect_left(later, us)
    if at == len(later) or later[at] != us:
        later.insert(at, us)


def join_lead(
    state: LeadState, event: CrmEvent, us: int | None = None, config: TenantConfig | None = None
) -> None:
    if us is None:
        us = to_us(event.occurred_at)
    order = tie(event, config)
    created = event.type == "lead_created"
    stage = "new" if created else (event.stage_to or "new")
    if state.first is None or (us, order) < state.first[:2]:
        state.first = (us, order, stage)
    if created and (state.created is None or us < state.created):
        state.created = us
    if event.type == "lead_stage_changed" and event.stage_to:
        held = state.stage_first.get(event.stage_to)
        if held is None or us < held:
            state.stage_first[event.stage_to] = us
    _keep_latest(state.latest, event, us, order)
