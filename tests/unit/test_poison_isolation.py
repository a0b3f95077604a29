"""Isolating poison: every good event applies (in order), each bad one is named, alone."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from streams.poison import Item, apply_isolating
from tests.helpers import make_event


def items(bad: set[int], size: int) -> list[Item]:
    return [
        (
            ConsumerRecord("crm.events", 0, n, 0, 0, None, b"raw", None, 0, 3, []),
            make_event(f"bad-{n}" if n in bad else f"ok-{n}"),
        )
        for n in range(size)
    ]


@given(size=st.integers(1, 200), data=st.data())
async def test_good_events_apply_in_order_and_only_bad_ones_are_poison(
    size: int, data: st.DataObject
) -> None:
    bad = data.draw(st.sets(st.integers(0, size - 1), max_size=5))
    applied_ids: list[str] = []
    calls = 0

    async def apply_part(events: list[CrmEvent]) -> int:
        nonlocal calls
        calls += 1
        if any(event.event_id.startswith("bad") for event in events):
            raise OverflowError("date value out of range")
        applied_ids.extend(event.event_id for event in events)
        return len(events)

    applied, poison = await apply_isolating(items(bad, size), apply_part, "kpi")
    assert applied_ids == [f"ok-{n}" for n in range(size) if n not in bad]
    assert sum(applied) == size - len(bad)
    assert [record.offset for record, _, _ in poison] == sorted(bad)
    assert {reason for _, reason, _ in poison} <= {"poison"}
    for _, _, problem in poison:
        assert problem == (
            "the kpi stage cannot take this event: OverflowError: date value out of range"
        )
    # bisection, not one apply per event: about 2·log2(n) applies per bad event
    assert calls <= 1 + 2 * len(bad) * max(1, size.bit_length())


async def test_a_batch_that_applies_is_applied_once() -> None:
    async def apply_part(events: list[CrmEvent]) -> int:
        return len(events)

    assert await apply_isolating(items(set(), 50), apply_part, "sla") == ([50], [])


async def test_cancellation_is_not_taken_for_poison() -> None:
    async def apply_part(events: list[CrmEvent]) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await apply_isolating(items(set(), 3), apply_part, "kpi")
