"""A batch of tenants on different masters of a real Redis Cluster (tests/redis_cluster.py):
one script call per tenant, the watermark only after all of them, and a crash between two
tenants' calls followed by the redelivery of the whole batch counts each event once,
leaving what one call leaves on a single Redis; for the KPI stage and the SLA stage."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.applier import KpiApplier
from streams.fold import BatchFold
from streams.redis_sink import ApplyOutcome, RedisKpiSink
from streams.sla_fold import SlaFold
from streams.sla_store import SlaApplier, SlaStore
from tests.redis_cluster import RedisCluster
from tests.redis_dump import dump, text

pytestmark = pytest.mark.integration

OFFSETS = {"crm.events:0": 2_999, "crm.events:3": 17}
# acme and globex hash to one master of a three-master cluster, hooli and umbrella to the
# other two (asserted below, against the cluster's own slot map)
TENANTS = ("acme", "globex", "hooli", "umbrella")
DIRECTORY = TenantDirectory(
    TenantsFile(tenants={name: BENCH_TENANTS.get("acme") for name in TENANTS})
)


class RecordingSink(RedisKpiSink):
    """The real sink; records each call's tenants and marks, and can crash before one."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys, crash_at_call: int = 0) -> None:
        super().__init__(client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)
        self.calls: list[tuple[frozenset[str], dict[str, int]]] = []
        self._crash_at_call = crash_at_call

    async def apply(self, fold: BatchFold, offsets: dict[str, int]) -> ApplyOutcome:
        if len(self.calls) + 1 == self._crash_at_call:
            raise SystemExit("the worker died between two tenants' calls")
        tenants = frozenset(tenant for tenant, _ in fold.event_ids)
        self.calls.append((tenants, dict(offsets)))
        return await super().apply(fold, offsets)


def events() -> list[CrmEvent]:
    """Two offices' traffic spread over four tenants, interleaved in the batch."""
    return [
        msgspec.structs.replace(event, tenant=TENANTS[i % len(TENANTS)])
        for i, event in enumerate(synthetic_events(1_200, 11, "cluster"))
    ]


async def single_redis_result(
    client: aioredis.Redis, settings: Settings, batch: list[CrmEvent]
) -> dict[str, object]:
    keys = KpiKeys(f"{settings.redis_key_prefix}single:")
    one = RecordingSink(client, keys)
    await KpiApplier(one, DIRECTORY, keys).apply(batch, OFFSETS)
    assert len(one.calls) == 1
    return await dump(client, keys.prefix)


def test_the_tenants_live_on_every_master(redis_cluster: RedisCluster) -> None:
    keys = KpiKeys("any:", tenant_slots=True)
    masters = {redis_cluster.node_of_key(keys.won(tenant)) for tenant in TENANTS}
    assert masters == {node.port for node in redis_cluster.nodes}


async def test_one_call_per_tenant_and_the_watermark_after_the_last(
    redis_client: aioredis.Redis,
    cluster_client: aioredis.Redis,
    redis_cluster: RedisCluster,
    settings: Settings,
) -> None:
    batch = events()
    expected = await single_redis_result(redis_client, settings, batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}cl:", tenant_slots=True)
    recording = RecordingSink(cluster_client, keys)
    await KpiApplier(recording, DIRECTORY, keys).apply(batch, OFFSETS)

    assert [tenants for tenants, _ in recording.calls] == [
        frozenset({tenant}) for tenant in TENANTS
    ]
    assert [marks for _, marks in recording.calls if marks] == [OFFSETS]
    assert await dump(cluster_client, keys.prefix) == expected
    assert await recording.watermarks(list(OFFSETS)) == OFFSETS
    # really spread: each tenant's KPI buckets are on its own master
    holders = {
        redis_cluster.node_of_key(text(raw))
        async for raw in cluster_client.scan_iter(match=f"{keys.prefix}kpi:*", count=1000)
    }
    assert len(holders) == len(redis_cluster.nodes)


@pytest.mark.parametrize("crash_at_call", [2, 4])
async def test_a_crash_between_tenants_then_the_redelivered_batch_counts_each_event_once(
    redis_client: aioredis.Redis,
    cluster_client: aioredis.Redis,
    settings: Settings,
    crash_at_call: int,
) -> None:
    batch = events()
    expected = await single_redis_result(redis_client, settings, batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}crash{crash_at_call}:", tenant_slots=True)
    crashing = RecordingSink(cluster_client, keys, crash_at_call=crash_at_call)
    with pytest.raises(SystemExit):
        await KpiApplier(crashing, DIRECTORY, keys).apply(batch, OFFSETS)
    assert len(crashing.calls) == crash_at_call - 1
    assert await crashing.watermarks(list(OFFSETS)) == {}  # so Kafka redelivers the batch

    restarted = RecordingSink(cluster_client, keys)
    await KpiApplier(restarted, DIRECTORY, keys).apply(batch, OFFSETS)

    assert await dump(cluster_client, keys.prefix) == expected
    assert await restarted.watermarks(list(OFFSETS)) == OFFSETS


class CrashingSlaStore(SlaStore):
    """The real SLA store; counts its per-tenant calls and can crash before one."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys, crash_at_call: int = 0) -> None:
        super().__init__(client, keys, group="g", day_ttl_s=7200)
        self.calls = 0
        self._crash_at_call = crash_at_call

    async def apply_part(self, fold: SlaFold, offsets: dict[str, int]) -> ApplyOutcome:
        if self.calls + 1 == self._crash_at_call:
            raise SystemExit("the worker died between two tenants' calls")
        self.calls += 1
        return await super().apply_part(fold, offsets)


async def apply_sla(store: SlaStore, keys: KpiKeys, batch: list[CrmEvent]) -> None:
    applier = SlaApplier(store, DIRECTORY, keys)
    await applier.commit(await applier.prepare(batch), OFFSETS)


@pytest.mark.parametrize("crash_at_call", [0, 3])
async def test_the_sla_stage_writes_each_tenant_once_on_the_cluster(
    redis_client: aioredis.Redis,
    cluster_client: aioredis.Redis,
    settings: Settings,
    crash_at_call: int,
) -> None:
    batch = events()
    single = KpiKeys(f"{settings.redis_key_prefix}sla-single:")
    await apply_sla(SlaStore(redis_client, single, group="g", day_ttl_s=7200), single, batch)
    expected = await dump(redis_client, single.prefix)
    assert {name.split(":")[0] for name in expected} >= {"waiting", "lastseen", "offsets", "kpi"}

    keys = KpiKeys(f"{settings.redis_key_prefix}sla{crash_at_call}:", tenant_slots=True)
    if crash_at_call:
        crashing = CrashingSlaStore(cluster_client, keys, crash_at_call)
        with pytest.raises(SystemExit):
            await apply_sla(crashing, keys, batch)
        assert await crashing.watermarks(list(OFFSETS)) == {}
    store = CrashingSlaStore(cluster_client, keys)
    await apply_sla(store, keys, batch)

    # the tenants written before the crash carry their SLA marks: each such call is
    # refused as already counted (nothing written) and the batch refolded without them
    written_before = max(crash_at_call - 1, 0)
    assert store.calls <= len(TENANTS) + written_before * (written_before + 1) // 2
    assert await dump(cluster_client, keys.prefix) == expected
