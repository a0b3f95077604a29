"""The permanent event marks on a real redis-server: a repeat after the dedupe sets
expired counts nothing, the script's search is exact, and a day's marks stay small."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.event_marks import mark_of
from streams.fold import fold_batch
from streams.redis_sink import RedisKpiSink
from tests.helpers import T0, eventually, make_event
from tests.histories import TENANTS

pytestmark = pytest.mark.integration

DAY = "2026-11-20"  # T0's local day for acme


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


def sink(client: aioredis.Redis, keys: KpiKeys, dedupe_ttl_s: int = 3600) -> RedisKpiSink:
    return RedisKpiSink(client, keys, group="g", dedupe_ttl_s=dedupe_ttl_s, day_ttl_s=7200)


def office_day() -> list[CrmEvent]:
    """A few of every kind: counted per event, and counted from a deal's state."""
    money = {"amount": Decimal("25.10"), "currency": "USD"}
    kinds: list[tuple[str, dict[str, object]]] = [
        ("call", {}),
        ("call", {"direction": "out", "answered": False, "duration_s": 0.0}),
        ("message", {"direction": "out"}),
        ("meeting", {}),
        ("rating", {"rating": 5}),
        ("payment", money),
        ("invoice", money),
        ("marketing_cost", {**money, "source_channel": "ads"}),
        ("lead_created", {"entity_id": None}),
        ("deal_created", {"entity_id": "d-7"}),
        ("deal_stage_changed", {"entity_id": "d-7", "stage_to": "proposal", "stage_kind": None}),
    ]
    return [
        make_event(f"ev-{i}", kind, occurred_at=T0 + timedelta(minutes=i), **fields)
        for i, (kind, fields) in enumerate(kinds * 3)
    ]


async def buckets(client: aioredis.Redis, keys: KpiKeys) -> dict[bytes, dict[Any, Any]]:
    found = [key async for key in client.scan_iter(f"{keys.prefix}kpi:*")]
    return {key: await client.hgetall(key) for key in found}


async def test_a_repeat_after_the_dedupe_sets_expired_counts_nothing(redis_client, keys):
    """Issue 17 item 1, with a dedupe retention of one second."""
    events = office_day()
    first = KpiApplier(sink(redis_client, keys, dedupe_ttl_s=1), TENANTS, keys)
    assert (await first.apply(events, {})).events == len(events)
    once = await buckets(redis_client, keys)
    assert {key.split(b":")[-2] for key in once} == {b"m", b"h", b"d", b"mo", b"all"}

    async def forgotten() -> bool:
        return not await redis_client.exists(keys.seen("acme", DAY))

    await eventually(forgotten, 30, "the dedupe set to expire")
    # a new worker (no cached state) gets the same events again
    again = KpiApplier(sink(redis_client, keys, dedupe_ttl_s=1), TENANTS, keys)
    fold = await again.apply(events, {})
    assert await buckets(redis_client, keys) == once
    # every one of them counts or joins the deal: dropped by its mark, none refolded
    assert (fold.events, fold.duplicates) == (0, len(events))
    assert await redis_client.ttl(keys.mark("acme", DAY)) == -1


async def test_the_script_finds_a_mark_only_at_a_marks_offset(redis_client, keys):
    """The packed remainders have no separator: the same 7 bytes straddling two marks are
    no mark, so the event is counted; at a mark's offset they are one."""
    event = make_event("the-call")
    name, remainder = mark_of(event.event_id)
    mark_key = keys.mark("acme", DAY)
    await redis_client.hset(mark_key, name, b"\x00" * 3 + remainder + b"\x00" * 4)
    store = sink(redis_client, keys)
    assert (await store.apply(fold_batch([event], TENANTS, keys, {}), {})).applied
    held = await redis_client.hget(mark_key, name)
    assert held == b"\x00" * 3 + remainder + b"\x00" * 4 + remainder

    outcome = await store.apply(fold_batch([event], TENANTS, keys, {}), {})
    assert not outcome.applied
    assert outcome.already_counted == {("acme", "the-call")}


async def test_a_call_counted_before_marks_existed_is_recognised_by_its_id(redis_client, keys):
    """An upgrade: the version before marks put every counted id in the day's dedupe set;
    within that set's retention a repeat of such a call must not count again."""
    await redis_client.sadd(keys.seen("acme", DAY), "old-call")
    store = sink(redis_client, keys)
    outcome = await store.apply(fold_batch([make_event("old-call")], TENANTS, keys, {}), {})
    assert not outcome.applied
    assert outcome.already_counted == {("acme", "old-call")}
    assert not await redis_client.exists(keys.bucket("acme", "all", "all"))


async def day_of_marks(client: aioredis.Redis, keys: KpiKeys, events: int) -> tuple[float, float]:
    """Bytes per event of a day's marks, applied in batches of 500 as live traffic comes,
    and of the same ids in an event-id set (what a permanent dedupe set would take)."""
    store = sink(client, keys)
    ids = [f"amocrm:call:{40_000_000 + i}" for i in range(events)]
    for start in range(0, events, 500):
        batch = [
            make_event(i, occurred_at=T0 + timedelta(seconds=n % 3600))
            for n, i in enumerate(ids[start : start + 500], start)
        ]
        assert (await store.apply(fold_batch(batch, TENANTS, keys, {}), {})).applied
    marks = await client.memory_usage(keys.mark("acme", DAY), samples=0)
    assert marks is not None
    as_set = f"{keys.prefix}as-a-set"
    for start in range(0, events, 1000):
        await client.sadd(as_set, *ids[start : start + 1000])
    in_a_set = await client.memory_usage(as_set, samples=0)
    assert in_a_set is not None
    return marks / events, in_a_set / events


@pytest.mark.parametrize("events", [5_000, 50_000])
async def test_a_days_marks_take_about_ten_bytes_an_event(redis_client, keys, events):
    """docs/kpi-semantics.md "Retention": the figure the docs give (10.1 B at 5,000 events
    a day, 7.9 B at 50,000), far below an id set's (~70 B for these ids)."""
    per_event, per_id = await day_of_marks(redis_client, keys, events)
    assert per_event < 12, f"{per_event:.1f} B per event"
    assert per_id > 5 * per_event, f"{per_id:.1f} B per id in a set"
