"""Periods equal the batch oracle: hypothesis histories over several months in a tenant
whose zone changes its clocks (Europe/Berlin, 29 March 2026), folded as the worker folds
them (tests/kpi_memory.py applies the same BatchFolds the Redis script does) and read
from their day buckets as `GET /v1/kpis?period=` reads them. Pure; the real-Redis subset
is tests/integration/test_periods_api.py."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.kpi import periods
from tests.helpers import make_event
from tests.histories import CONFIG, NOW, TENANT, TENANTS, histories
from tests.kpi_memory import MemoryStore
from tests.oracle.compare import assert_matches_oracle
from tests.oracle.periods import calendar_days, period_components, previous_days

TODAY = NOW.astimezone(CONFIG.zone).date()  # Monday 30 March 2026, Berlin
NAMES = (
    "2026-01", "2026-02", "2026-03", "2026-Q1", "2025-Q4", "2026-W13", "2026-W14",
    "2026-03-28", "2026-03-29", "2026-03-30", "2025-12-31",
)  # fmt: skip
# Shifts that spread each entity's history over December to March (and past the change).
SHIFTS = (0, 0, -1, -9, -31, -40, -61, -89)


def shifted(event: CrmEvent, days: int) -> CrmEvent:
    values = msgspec.structs.asdict(event)
    values["occurred_at"] = event.occurred_at + timedelta(days=days)
    event_id, kind = values.pop("event_id"), values.pop("type")
    values.pop("schema")
    return make_event(event_id, kind, **values)


@st.composite
def multi_month(draw: st.DrawFn) -> list[CrmEvent]:
    """A tests/histories.py history with each entity's events moved by one shift."""
    events = draw(histories())
    shifts: dict[str, int] = {}
    out = []
    for event in events:
        key = event.entity_id or event.event_id
        if key not in shifts:
            shifts[key] = draw(st.sampled_from(SHIFTS))
        out.append(shifted(event, shifts[key]))
    return out


def stored(events: list[CrmEvent]) -> MemoryStore:
    store = MemoryStore(TENANTS, with_sla=False)
    for start in range(0, len(events), 7):
        store.apply_batch(events[start : start + 7])
    return store


def read(store: MemoryStore, period: periods.Period, by: str | None) -> dict[str, dict[str, int]]:
    plan = periods.bucket_plan(period, TODAY, 400)
    groups = store.bucket_components(TENANT, plan.granularity, plan.buckets, by)
    for group in groups.values():
        group.pop("client_distinct", None)  # 0 is kept by the reader, absent in the oracle
    return {name: group for name, group in groups.items() if group or name == ""}


def expected(
    events: list[CrmEvent], first: date, last: date, by: str | None
) -> dict[str, dict[str, int]]:
    groups = period_components(events, CONFIG, TENANT, first, last, by)
    for group in groups.values():
        group.pop("client_distinct", None)
    return groups


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=multi_month(),
    name=st.sampled_from(NAMES),
    by=st.sampled_from([None, "manager", "team", "source"]),
)
def test_every_named_period_and_its_previous_equal_the_oracle(
    events: list[CrmEvent], name: str, by: str | None
) -> None:
    store = stored(events)
    period = periods.named(name, TODAY)
    assert (period.first, period.last) == calendar_days(name)
    assert_matches_oracle(
        read(store, period, by), expected(events, period.first, period.last, by), period
    )
    before = periods.compared(period, "previous")
    assert (before.first, before.last) == previous_days(period.first, period.last)
    assert_matches_oracle(
        read(store, before, by), expected(events, before.first, before.last, by), before
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=multi_month(),
    start=st.integers(0, 120),
    length=st.integers(1, 60),
    step=st.sampled_from(periods.STEPS),
)
def test_any_day_range_and_its_steps_equal_the_oracle(
    events: list[CrmEvent], start: int, length: int, step: str
) -> None:
    store = stored(events)
    first = date(2025, 12, 1) + timedelta(days=start)
    period = periods.between(first.isoformat(), (first + timedelta(days=length - 1)).isoformat())
    assert_matches_oracle(
        read(store, period, None), expected(events, period.first, period.last, None), period
    )
    cuts = periods.steps(period, step)
    # The steps tile the range: consecutive, no gap, no overlap.
    assert cuts[0].first == period.first
    assert cuts[-1].last == period.last
    assert all(a.last + timedelta(days=1) == b.first for a, b in itertools.pairwise(cuts))
    for cut in cuts:
        assert_matches_oracle(
            read(store, cut, "manager"), expected(events, cut.first, cut.last, "manager"), cut
        )


def test_the_day_of_the_clock_change_has_23_hours_of_events() -> None:
    # 29 March 2026 in Berlin runs 28 Mar 23:00 UTC → 29 Mar 22:00 UTC (23 hours).
    zone = CONFIG.zone
    day = periods.named("2026-03-29", TODAY)
    assert (day.end(zone) - day.start(zone)).total_seconds() == 23 * 3600
    inside = datetime(2026, 3, 29, 21, 59, tzinfo=UTC)
    outside = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    events = [
        make_event("in", tenant=TENANT, occurred_at=inside),
        make_event("out", tenant=TENANT, occurred_at=outside),
    ]
    assert read(stored(events), day, None)[""]["calls"] == 1
    assert expected(events, day.first, day.last, None)[""]["calls"] == 1
