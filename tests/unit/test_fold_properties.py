"""Properties of the fold: order, repeats and batch boundaries never change the result."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from salespulse.events import CrmEvent
from streams.fold import BatchFold, fold_batch
from tests.helpers import make_event

ZONE = ZoneInfo("America/New_York")


def zone_for(_: str) -> ZoneInfo:
    return ZONE


@st.composite
def events(draw: st.DrawFn) -> CrmEvent:
    kind = draw(
        st.sampled_from(
            ["call", "message", "lead_created", "deal_created", "deal_stage_changed", "meeting"]
        )
    )
    fields: dict[str, object] = {
        "tenant": draw(st.sampled_from(["acme", "globex"])),
        "manager_id": draw(st.sampled_from(["m-1", "m-2", None])),
        "occurred_at": datetime(2026, 3, 7, tzinfo=UTC)
        + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60))),
    }
    if kind == "call":
        fields.update(
            direction=draw(st.sampled_from(["in", "out"])),
            answered=draw(st.booleans()),
            duration_s=draw(st.floats(0, 3600, allow_nan=False)),
        )
    if kind == "deal_stage_changed":
        fields.update(
            stage_to=draw(st.sampled_from(["new", "won", "lost"])),
            stage_kind=draw(st.sampled_from(["open", "won", "lost"])),
        )
    return make_event(f"e{draw(st.integers(0, 40))}", kind, **fields)


def totals(fold: BatchFold) -> tuple[Counter[object], Counter[object]]:
    return Counter(fold.all_time), Counter(fold.by_day)


def merged(folds: list[BatchFold]) -> tuple[Counter[object], Counter[object]]:
    all_time: Counter[object] = Counter()
    by_day: Counter[object] = Counter()
    for fold in folds:
        all_time.update(fold.all_time)
        by_day.update(fold.by_day)
    return +all_time, +by_day


def first_of_each_id(history: list[CrmEvent]) -> list[CrmEvent]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for event in history:
        if (event.tenant, event.event_id) not in seen:
            seen.add((event.tenant, event.event_id))
            unique.append(event)
    return unique


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), max_size=60), st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter(history: list[CrmEvent], rng: random.Random) -> None:
    unique = first_of_each_id(history)
    shuffled = list(unique)
    rng.shuffle(shuffled)
    assert totals(fold_batch(unique, zone_for)) == totals(fold_batch(shuffled, zone_for))


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), max_size=60))
def test_repeating_every_event_changes_nothing(history: list[CrmEvent]) -> None:
    once = fold_batch(history, zone_for)
    twice = fold_batch(history + history, zone_for)
    assert totals(once) == totals(twice)
    assert twice.duplicates == len(history) + once.duplicates


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), max_size=60), st.integers(1, 10))
def test_batch_boundaries_do_not_matter(history: list[CrmEvent], size: int) -> None:
    unique = first_of_each_id(history)
    whole = fold_batch(unique, zone_for)
    pieces = [fold_batch(unique[i : i + size], zone_for) for i in range(0, len(unique), size)]
    assert merged([whole]) == merged(pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), max_size=60))
def test_all_time_equals_the_sum_of_the_days(history: list[CrmEvent]) -> None:
    fold = fold_batch(history, zone_for)
    from_days: Counter[object] = Counter()
    for (tenant, _day, field), amount in fold.by_day.items():
        from_days[(tenant, field)] += amount
    assert +Counter(fold.all_time) == +from_days
