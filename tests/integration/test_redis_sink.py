"""The Redis sink on a real redis-server: exact, atomic, idempotent."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from salespulse.kpi_keys import KpiKeys, encode_field
from salespulse.settings import Settings
from streams.fold import fold_batch
from streams.redis_sink import RedisKpiSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration

CALLS = encode_field(("calls", "m-1", "in", "answered"))


def zone_for(_: str) -> ZoneInfo:
    return ZoneInfo("UTC")


@pytest.fixture
def sink(redis_client: aioredis.Redis, settings: Settings) -> RedisKpiSink:
    return RedisKpiSink(
        redis_client,
        KpiKeys(settings.redis_key_prefix),
        group="g",
        dedupe_ttl_s=3600,
        day_ttl_s=7200,
    )


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


async def test_a_batch_lands_in_all_time_and_day_hashes(
    sink: RedisKpiSink, keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    fold = fold_batch([make_event("a"), make_event("b")], zone_for)
    outcome = await sink.apply(fold, {"topic:0": 41})
    assert outcome.applied
    assert await redis_client.hget(keys.all_time("acme"), CALLS) == b"2"
    assert await redis_client.hget(keys.day("acme", "2026-11-20"), CALLS) == b"2"
    assert await redis_client.smembers(keys.tenants) == {b"acme"}
    assert await sink.watermarks(["topic:0", "topic:1"]) == {"topic:0": 41}
    day_ttl = await redis_client.ttl(keys.day("acme", "2026-11-20"))
    seen_ttl = await redis_client.ttl(keys.seen("acme", "2026-11-20"))
    assert 7000 < day_ttl <= 7200
    assert 3500 < seen_ttl <= 3600
    assert await redis_client.ttl(keys.all_time("acme")) == -1


async def test_a_replayed_batch_writes_nothing_and_names_the_ids(
    sink: RedisKpiSink, keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    fold = fold_batch([make_event("a"), make_event("b")], zone_for)
    assert (await sink.apply(fold, {"topic:0": 5})).applied

    replay = fold_batch([make_event("a"), make_event("b"), make_event("c")], zone_for)
    outcome = await sink.apply(replay, {"topic:0": 9})
    assert not outcome.applied
    assert outcome.already_counted == {("acme", "a"), ("acme", "b")}
    assert await redis_client.hget(keys.all_time("acme"), CALLS) == b"2"
    assert await sink.watermarks(["topic:0"]) == {"topic:0": 5}

    refold = fold_batch(
        [make_event("a"), make_event("b"), make_event("c")],
        zone_for,
        skip_ids=outcome.already_counted,
    )
    assert (await sink.apply(refold, {"topic:0": 9})).applied
    assert await redis_client.hget(keys.all_time("acme"), CALLS) == b"3"
    assert await sink.watermarks(["topic:0"]) == {"topic:0": 9}


async def test_watermarks_never_move_back(sink: RedisKpiSink) -> None:
    assert (await sink.apply(fold_batch([make_event("a")], zone_for), {"t:3": 100})).applied
    assert (await sink.apply(fold_batch([make_event("b")], zone_for), {"t:3": 50})).applied
    assert await sink.watermarks(["t:3"]) == {"t:3": 100}


async def test_large_batches_pass_lua_argument_limits(
    sink: RedisKpiSink, keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    events = [make_event(f"id-{n}") for n in range(12_000)]
    assert (await sink.apply(fold_batch(events, zone_for), {"t:0": 1})).applied
    assert await redis_client.hget(keys.all_time("acme"), CALLS) == b"12000"
    assert await redis_client.scard(keys.seen("acme", "2026-11-20")) == 12_000
    again = await sink.apply(fold_batch(events[:5000], zone_for), {"t:0": 2})
    assert len(again.already_counted) == 5000


async def test_an_unreachable_redis_is_a_retriable_store_error(settings: Settings) -> None:
    from salespulse.embedded import free_port
    from salespulse.errors import KpiStoreError

    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    dead = RedisKpiSink(client, KpiKeys("x:"), group="g", dedupe_ttl_s=1, day_ttl_s=1)
    with pytest.raises(KpiStoreError) as info:
        await dead.apply(fold_batch([make_event("a")], zone_for), {})
    assert info.value.retriable
    await client.aclose()
