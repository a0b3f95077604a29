"""A big batch written in parts (streams/applier.py) on a real redis-server: the parts
leave exactly what one Lua call leaves, only the last moves the watermark, and a crash
between parts followed by the redelivery of the whole batch still counts each event once.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.applier import KpiApplier, fold_writes
from streams.fold import BatchFold
from streams.redis_sink import ApplyOutcome, RedisKpiSink
from tests.redis_dump import dump

pytestmark = pytest.mark.integration

PART_WRITES = 1_000
OFFSETS = {"crm.events:0": 2_999}
# "version:state": a state written by several parts carries a higher version


class RecordingSink(RedisKpiSink):
    """The real sink; records each Lua call's size and marks, and can crash before one."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys, crash_at_call: int) -> None:
        super().__init__(client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)
        self.calls: list[tuple[int, dict[str, int]]] = []
        self._crash_at_call = crash_at_call

    async def apply(self, fold: BatchFold, offsets: dict[str, int]) -> ApplyOutcome:
        if len(self.calls) + 1 == self._crash_at_call:
            raise SystemExit("the worker died between two parts")
        self.calls.append((fold_writes(fold), dict(offsets)))
        return await super().apply(fold, offsets)


def events() -> list[CrmEvent]:
    # three days of two offices' traffic: thousands of distinct minute and hour buckets
    return list(synthetic_events(3_000, 7, "parts"))


def sink(client: aioredis.Redis, keys: KpiKeys, crash_at_call: int = 0) -> RecordingSink:
    return RecordingSink(client, keys, crash_at_call)


async def whole_batch(
    client: aioredis.Redis, settings: Settings, batch: list[CrmEvent]
) -> dict[str, object]:
    keys = KpiKeys(f"{settings.redis_key_prefix}whole:")
    one = sink(client, keys)
    await KpiApplier(one, BENCH_TENANTS, keys, max_part_writes=10**9).apply(batch, OFFSETS)
    assert len(one.calls) == 1
    assert one.calls[0][0] > 6 * PART_WRITES  # really a big batch
    return await dump(client, keys.prefix)


async def test_parts_leave_what_one_call_leaves_and_only_the_last_moves_the_watermark(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await whole_batch(redis_client, settings, batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}parts:")
    parts = sink(redis_client, keys)
    applier = KpiApplier(parts, BENCH_TENANTS, keys, max_part_writes=PART_WRITES)
    # twice: the first batch learns its size, the second is cut up before it is folded
    half = len(batch) // 2
    await applier.apply(batch[:half], {})
    # the stage counts the parts as written, merging none of them (AppliedParts)
    applied = await applier.commit(await applier.prepare(batch[half:]), OFFSETS)
    folded = applied.whole()

    assert await dump(redis_client, keys.prefix) == expected
    assert len(parts.calls) >= 6
    assert all(writes <= PART_WRITES for writes, _ in parts.calls), parts.calls
    assert [marks for _, marks in parts.calls if marks] == [OFFSETS]
    assert parts.calls[-1][1] == OFFSETS
    assert folded.events == len(batch) - half
    assert len(applied.folds) >= 2
    assert (applied.events, applied.duplicates) == (folded.events, folded.duplicates)
    assert applied.received_at == folded.received_at


@pytest.mark.parametrize(("crash_at_call", "forget_ids"), [(2, False), (5, False), (3, True)])
async def test_a_crash_between_parts_then_the_redelivered_batch_counts_each_event_once(
    redis_client: aioredis.Redis, settings: Settings, crash_at_call: int, forget_ids: bool
) -> None:
    """``forget_ids``: the batch comes again after the dedupe sets expired (a replay long
    after): the marks and the entity states still count each event once."""
    batch = events()
    expected = await whole_batch(redis_client, settings, batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}crash{crash_at_call}:")
    crashing = sink(redis_client, keys, crash_at_call=crash_at_call)
    applier = KpiApplier(crashing, BENCH_TENANTS, keys, max_part_writes=PART_WRITES)
    with pytest.raises(SystemExit):
        await applier.apply(batch, OFFSETS)
    assert len(crashing.calls) == crash_at_call - 1
    assert await crashing.watermarks(list(OFFSETS)) == {}  # so Kafka redelivers the batch
    if forget_ids:
        seen = [key async for key in redis_client.scan_iter(f"{keys.prefix}seen:*")]
        assert seen
        await redis_client.delete(*seen)

    # A new worker, the batch redelivered whole: the parts already written are dropped
    # by their event ids, the rest folds on the states they left.
    restarted = sink(redis_client, keys)
    again = KpiApplier(restarted, BENCH_TENANTS, keys, max_part_writes=PART_WRITES)
    await again.apply(batch, OFFSETS)

    held = await dump(redis_client, keys.prefix)
    if forget_ids:  # the parts written after the crash made their sets anew
        held = {key: value for key, value in held.items() if not key.startswith("seen:")}
        expected = {key: value for key, value in expected.items() if not key.startswith("seen:")}
    assert held == expected
    assert await restarted.watermarks(list(OFFSETS)) == OFFSETS


async def test_a_retried_commit_goes_on_from_the_part_that_failed(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await whole_batch(redis_client, settings, batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}retry:")
    failing = sink(redis_client, keys, crash_at_call=3)
    applier = KpiApplier(failing, BENCH_TENANTS, keys, max_part_writes=PART_WRITES)
    prepared = await applier.prepare(batch)
    assert len(prepared.parts) > 3
    with pytest.raises(SystemExit):
        await applier.commit(prepared, OFFSETS)
    failing._crash_at_call = 0  # the store is back: the stage's retry calls commit again
    await applier.commit(prepared, OFFSETS)

    assert [marks for _, marks in failing.calls if marks] == [OFFSETS]
    assert await dump(redis_client, keys.prefix) == expected
