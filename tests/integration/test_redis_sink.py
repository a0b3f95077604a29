"""The Redis sink and applier on a real redis-server: exact, atomic, idempotent."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis

from metrics.read.kpi_reader import KpiReader
from salespulse.app.embedded import free_port
from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.codecs import encode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.fold import BatchFold, States, fold_batch
from streams.redis_sink import RedisKpiSink
from tests.helpers import T0, make_event
from tests.histories import NOW, TENANT, TENANTS

pytestmark = pytest.mark.integration

CALLS = encode_field(("calls:in:answered", "m-1", "none", "none", "none"))


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


@pytest.fixture
def sink(redis_client: aioredis.Redis, keys: KpiKeys) -> RedisKpiSink:
    return RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)


def fold(
    events: list[CrmEvent],
    keys: KpiKeys,
    states: States | None = None,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> BatchFold:
    return fold_batch(events, TENANTS, keys, states or {}, skip)


async def test_a_batch_lands_in_every_granularity(sink, keys, redis_client):
    outcome = await sink.apply(fold([make_event("a"), make_event("b")], keys), {"topic:0": 41})
    assert outcome.applied
    minute = str(int(T0.timestamp()) // 60)
    for granularity, bucket, ttl in (
        ("all", "all", -1),
        ("d", "2026-11-20", 7200),
        ("mo", "2026-11", 7200),
        ("h", str(int(T0.timestamp()) // 3600), 2 * 86_400),
        ("m", minute, 7200),
    ):
        key = keys.bucket("acme", granularity, bucket)
        assert await redis_client.hget(key, CALLS) == b"2", key
        remaining = await redis_client.ttl(key)
        assert remaining == -1 if ttl == -1 else ttl - 100 < remaining <= ttl
    assert await redis_client.smembers(keys.tenants) == {b"acme"}
    assert await sink.watermarks(["topic:0", "topic:1"]) == {"topic:0": 41}
    # calls carry permanent marks; only events that count nothing and join no entity go
    # to the expiring dedupe set
    assert await redis_client.ttl(keys.mark("acme", "2026-11-20")) == -1
    assert not await redis_client.exists(keys.seen("acme", "2026-11-20"))
    bot = make_event("c", "message", direction="out", automated=True)
    assert (await sink.apply(fold([bot], keys), {"topic:0": 42})).applied
    assert 3500 < await redis_client.ttl(keys.seen("acme", "2026-11-20")) <= 3600
    # the week is read from its day buckets: no week bucket is written (issue 19)
    assert await redis_client.keys(keys.bucket("acme", "w", "*")) == []


async def test_month_buckets_outlive_day_buckets(keys, redis_client):
    """SALESPULSE_MONTH_BUCKET_RETENTION_DAYS: a past month answers from its month bucket
    after its days expired (docs/kpi-semantics.md, "Periods")."""
    sink = RedisKpiSink(
        redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200, month_ttl_s=90_000
    )
    assert (await sink.apply(fold([make_event("a")], keys), {"topic:0": 1})).applied
    day = await redis_client.ttl(keys.bucket("acme", "d", "2026-11-20"))
    month = await redis_client.ttl(keys.bucket("acme", "mo", "2026-11"))
    assert 7100 < day <= 7200
    assert 89_900 < month <= 90_000


async def test_a_replayed_batch_writes_nothing_and_names_the_ids(sink, keys, redis_client):
    assert (await sink.apply(fold([make_event("a"), make_event("b")], keys), {"t:0": 5})).applied
    replay = [make_event("a"), make_event("b"), make_event("c")]
    outcome = await sink.apply(fold(replay, keys), {"t:0": 9})
    assert not outcome.applied
    assert outcome.already_counted == {("acme", "a"), ("acme", "b")}
    all_key = keys.bucket("acme", "all", "all")
    assert await redis_client.hget(all_key, CALLS) == b"2"
    assert await sink.watermarks(["t:0"]) == {"t:0": 5}
    assert (await sink.apply(fold(replay, keys, skip=outcome.already_counted), {"t:0": 9})).applied
    assert await redis_client.hget(all_key, CALLS) == b"3"


async def test_an_entity_changed_since_it_was_read_is_a_conflict(sink, keys):
    first = make_event(
        "s1", "deal_stage_changed", stage_to="new", stage_kind=None, amount=None, currency=None
    )
    assert (await sink.apply(fold([first], keys), {})).applied
    # A second writer folded from the empty state it read before the first write:
    stale = fold([make_event("s2", "deal_stage_changed", stage_to="won")], keys)
    outcome = await sink.apply(stale, {})
    assert not outcome.applied
    assert outcome.conflicts == (keys.entity("acme", "deal", "deal-1"),)


async def test_the_applier_refolds_after_conflicts_and_duplicates(
    sink, keys, redis_url, redis_client
):
    applier = KpiApplier(sink, TENANTS, keys)
    deal = {
        "entity_id": "d",
        "tenant": TENANT,
        "stage_kind": None,
        "amount": None,
        "currency": None,
        "manager_id": "m1",
    }
    await applier.apply(
        [
            make_event(
                "e1",
                "deal_stage_changed",
                stage_to="new",
                occurred_at=NOW - timedelta(hours=2),
                **deal,
            )
        ],
        {},
    )
    # Meanwhile another writer moved the deal on (bumping its version):
    other = KpiApplier(sink, TENANTS, keys)
    await other.apply(
        [
            make_event(
                "e2",
                "deal_stage_changed",
                stage_to="qualified",
                occurred_at=NOW - timedelta(hours=1),
                **deal,
            )
        ],
        {},
    )
    won = {**deal, "amount": Decimal("10"), "currency": "EUR"}
    await applier.apply(
        [
            make_event(
                "e1",
                "deal_stage_changed",
                stage_to="new",
                occurred_at=NOW - timedelta(hours=2),
                **deal,
            ),
            make_event("e3", "deal_stage_changed", stage_to="won", occurred_at=NOW, **won),
        ],
        {},
    )
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, TENANTS)
    total = reader.components(TENANT, "all", None, NOW)[TOTAL_GROUP]
    assert total["won"] == 1
    assert total["revenue"] == 100_000
    assert total["stage_entries:sales:new"] == 1  # the repeat of e1 was not counted
    assert total["cohort_num:sales:new"] == total["cohort_num:sales:qualified"] == 1


async def test_large_batches_pass_lua_argument_limits(sink, keys, redis_client):
    events = [make_event(f"id-{n}") for n in range(12_000)]
    assert (await sink.apply(fold(events, keys), {"t:0": 1})).applied
    assert await redis_client.hget(keys.bucket("acme", "all", "all"), CALLS) == b"12000"
    again = await sink.apply(fold(events[:5000], keys), {"t:0": 2})
    assert len(again.already_counted) == 5000


async def test_an_unreachable_redis_is_a_retriable_store_error() -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    dead = RedisKpiSink(client, KpiKeys("x:"), group="g", dedupe_ttl_s=1, day_ttl_s=1)
    with pytest.raises(KpiStoreError) as info:
        await dead.apply(fold([make_event("a")], KpiKeys("x:")), {})
    assert info.value.retriable
    await client.aclose()
