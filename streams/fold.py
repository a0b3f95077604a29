"""Pure KPI arithmetic: canonical events → integer increments per tenant, day and field.

No I/O here. The batch consumer folds a whole Kafka batch with :func:`fold_batch` and the
sink applies the result in one Redis round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from salespulse.events import CrmEvent
from salespulse.kpi_keys import DURATION_SCALE, MONEY_SCALE, KpiField

UNASSIGNED = "unassigned"
_MONEY_QUANTUM = Decimal(1)


def event_day(event: CrmEvent, zone: ZoneInfo) -> str:
    """The calendar day the event belongs to in the tenant's zone (ISO date)."""
    return event.occurred_at.astimezone(zone).date().isoformat()


def money_units(amount: Decimal) -> int:
    """Amount in 1/10,000 units, rounded half-even so that sums stay exact integers."""
    return int((amount * MONEY_SCALE).quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN))


def kpi_increments(event: CrmEvent) -> list[tuple[KpiField, int]]:
    """What one event adds to the counters; the same list for every window it falls in."""
    manager = event.manager_id or UNASSIGNED
    kind = event.type
    if kind == "call" and event.direction is not None:
        outcome = "answered" if event.answered else "missed"
        increments: list[tuple[KpiField, int]] = [(("calls", manager, event.direction, outcome), 1)]
        if event.answered and event.duration_s:
            talk_ms = round(event.duration_s * DURATION_SCALE)
            increments.append((("talk_time_ms", manager), talk_ms))
        return increments
    if kind == "message" and event.direction is not None:
        # Bot and auto-replies are not a manager's activity.
        if event.automated:
            return []
        return [(("messages", manager, event.direction), 1)]
    if kind == "lead_created":
        return [(("leads_created", manager), 1)]
    if kind == "deal_created":
        return [(("deals_created", manager), 1)]
    if kind == "deal_stage_changed" and event.pipeline and event.stage_to:
        increments = [(("stage_entries", manager, event.pipeline, event.stage_to), 1)]
        if event.stage_kind == "won":
            increments.append((("deals_won", manager), 1))
            if event.amount is not None:
                currency = event.currency or "XXX"
                increments.append((("revenue", manager, currency), money_units(event.amount)))
        return increments
    return []


@dataclass
class BatchFold:
    """Increments of one batch, ready for one Redis round trip."""

    all_time: dict[tuple[str, KpiField], int] = field(default_factory=dict)
    by_day: dict[tuple[str, str, KpiField], int] = field(default_factory=dict)
    # (tenant, event day) → event ids, for the cross-batch dedupe set.
    event_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    events: int = 0
    # Dropped because seen earlier in the batch or already counted by the store.
    duplicates: int = 0
    received_at: list[float] = field(default_factory=list)


def fold_batch(
    events: Iterable[CrmEvent],
    zone_for: Callable[[str], ZoneInfo],
    skip_ids: frozenset[tuple[str, str]] = frozenset(),
) -> BatchFold:
    """Fold events into one BatchFold, dropping repeated (tenant, event_id) pairs.

    ``skip_ids`` are (tenant, event_id) pairs the store has already counted.
    """
    fold = BatchFold()
    seen: set[tuple[str, str]] = set(skip_ids)
    zones: dict[str, ZoneInfo] = {}
    all_time = fold.all_time
    by_day = fold.by_day
    for event in events:
        identity = (event.tenant, event.event_id)
        if identity in seen:
            fold.duplicates += 1
            continue
        seen.add(identity)
        tenant = event.tenant
        zone = zones.get(tenant)
        if zone is None:
            zone = zones[tenant] = zone_for(tenant)
        day = event_day(event, zone)
        fold.event_ids.setdefault((tenant, day), []).append(event.event_id)
        fold.events += 1
        if event.received_at is not None:
            fold.received_at.append(event.received_at.timestamp())
        for kpi_field, amount in kpi_increments(event):
            key = (tenant, kpi_field)
            all_time[key] = all_time.get(key, 0) + amount
            day_key = (tenant, day, kpi_field)
            by_day[day_key] = by_day.get(day_key, 0) + amount
    return fold
