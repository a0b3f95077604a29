"""What an event and an entity state contribute to the KPIs. Pure; used by the fold.

Event-additive components come from one event alone; an entity's contributions are a
function of its joined state (streams/entity_state.py), diffed by the fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.codecs import WonDeal
from salespulse.core.tenants import TenantConfig
from streams.entities import Dims, Parts, deal_facts, lead_facts, money_units
from streams.entity_state import DealState, LeadState


def event_components(event: CrmEvent, config: TenantConfig) -> Sequence[tuple[str, int]]:
    """The event-additive components of one event (docs/kpi-semantics.md).

    A sequence, not a generator: it runs once per event, and most events have one.
    """
    kind = event.type
    direction = event.direction
    if kind == "call":
        if direction is None:
            return ()
        if not event.answered:
            return _MISSED[direction]
        if event.duration_s:
            return (_ANSWERED[direction][0], ("talk_time_ms", round(event.duration_s * 1000)))
        return _ANSWERED[direction]
    if kind == "message":
        if direction is None or event.automated:
            return ()
        return _MESSAGES[direction]
    if kind == "meeting":
        return _MEETING
    if kind == "lead_created" and event.entity_id is None:
        # A lead without an id has no state to be counted from: counted per event, kept
        # once by its permanent mark (streams/event_marks.py, docs/kpi-semantics.md).
        return _LEAD_CREATED
    if kind == "rating" and event.rating is not None:
        return (("rating_sum", event.rating), ("rating_count", 1))
    if kind in ("invoice", "payment", "marketing_cost") and event.amount is not None:
        units = money_units(event.amount, event.currency, config)
        if units is not None:
            name = {"invoice": "invoiced", "payment": "paid"}.get(kind)
            return ((name or f"marketing_cost:{event.source_channel or 'none'}", units),)
    return ()


# The constant answers, made once (events.Direction is "in" or "out").
_MISSED = {d: ((f"calls:{d}:missed", 1),) for d in ("in", "out")}
_ANSWERED = {d: ((f"calls:{d}:answered", 1),) for d in ("in", "out")}
_MESSAGES = {d: ((f"messages_{d}", 1),) for d in ("in", "out")}
_MEETING = (("meetings", 1),)
_LEAD_CREATED = (("leads_created", 1),)
# deals_created, stage_entries and the leads_created of a lead with an id come from the
# entity's state (streams/entities.py): counted once however often an event is delivered.


class Derived(NamedTuple):
    """What a state contributes: KPI amounts by (instant, component) under the entity's
    one set of dimensions, and its membership of the open-deal and won-deal indexes. A
    pure function of the state (and the tenant config), so the applier keeps it beside a
    cached state. A NamedTuple: one is made per touched entity, and a frozen dataclass is
    several times slower to construct."""

    contributions: Parts
    dims: Dims | None = None  # None only when there are no contributions
    open: tuple[str, str, int] | None = None
    won: WonDeal | None = None


def derive(state: DealState | LeadState, config: TenantConfig) -> Derived:
    if isinstance(state, DealState):
        dims, parts, membership, won = deal_facts(state, config)
        return Derived(parts, dims, membership, won)
    facts = lead_facts(state, config)
    return _NOTHING if facts is None else Derived(facts[1], facts[0])


# Shared, so never changed: _diff_entity copies contributions before subtracting.
_NOTHING = Derived({})
