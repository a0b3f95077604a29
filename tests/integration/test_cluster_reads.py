"""The read side on a three-master Redis Cluster answers what it answers on a single
Redis for the same events: KPI windows and groupings, live counts, day snapshots, recent
wins, the waiting list, last receipt times, staff names and the wall's frames."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis
import redis.asyncio as aioredis

from handlers.enrichment.users import StaffStore
from metrics.read.kpi_reader import KpiReader
from metrics.wall.frame import WallKey
from metrics.wall.source import WallSource
from salespulse.core import redis_clients
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.daily_snapshot import DailySnapshot
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests.integration.test_cluster_apply import DIRECTORY, TENANTS, events
from tests.redis_cluster import RedisCluster

pytestmark = pytest.mark.integration

OFFSETS = {"crm.events:0": 1_199}


@dataclass(frozen=True)
class Store:
    keys: KpiKeys
    reader: KpiReader
    sync: redis.Redis


async def fill(client: aioredis.Redis, keys: KpiKeys, batch: list[CrmEvent], clock: float) -> None:
    """Both worker stages' writes, a day snapshot and a staff sync, as a worker makes them."""
    sink = RedisKpiSink(client, keys, group="kpi", dedupe_ttl_s=3600, day_ttl_s=86_400)
    snapshot = DailySnapshot(client, keys, DIRECTORY, ttl_s=86_400, clock=lambda: clock)
    applier = KpiApplier(sink, DIRECTORY, keys, before_commit=snapshot.before_commit)
    await applier.apply(batch, OFFSETS)
    sla = SlaApplier(SlaStore(client, keys, group="sla", day_ttl_s=86_400), DIRECTORY, keys)
    await sla.commit(await sla.prepare(batch), OFFSETS)
    staff = StaffStore(client, keys)
    for tenant in TENANTS:
        await staff.save(tenant, {"m-00": f"Ann of {tenant}", "m-01": "Bo"}, complete=True)


@pytest.fixture
def stores(
    settings: Settings, redis_url: str, redis_cluster: RedisCluster
) -> Iterator[tuple[Store, Store]]:
    batch = events()
    now = max(event.occurred_at for event in batch) + timedelta(minutes=1)
    clock = now.timestamp()
    made: list[Store] = []
    for mode, url in (("single", redis_url), ("cluster", redis_cluster.url)):
        mode_settings = settings.model_copy(update={"redis_mode": mode, "redis_url": url})
        keys = mode_settings.kpi_keys()

        async def filled(settings: Settings = mode_settings, keys: KpiKeys = keys) -> None:
            client = redis_clients.async_redis(settings, settings.redis_url or "")
            try:
                await fill(client, keys, batch, clock)
            finally:
                await client.aclose()

        asyncio.run(filled())
        sync = redis_clients.sync_redis(mode_settings, url)
        made.append(Store(keys, KpiReader(sync, keys, DIRECTORY, clock=lambda: clock), sync))
    yield made[0], made[1]
    for store in made:
        store.sync.close()


def test_the_cluster_store_reads_as_the_single_one(stores: tuple[Store, Store]) -> None:
    single, cluster = stores
    assert cluster.keys.tenant_slots
    now = single.reader.now()
    assert cluster.reader.tenants() == single.reader.tenants() == sorted(TENANTS)
    assert cluster.reader.waiting_reader().last_received() == (
        single.reader.waiting_reader().last_received()
    )
    for tenant in TENANTS:
        for window in WINDOWS:
            for by in (None, *DIMENSIONS):
                expected = single.reader.components(tenant, window, by, now)
                assert cluster.reader.components(tenant, window, by, now) == expected
        assert cluster.reader.live_counts(tenant, now) == single.reader.live_counts(tenant, now)
        day = (now - timedelta(days=1)).date()
        expected_snapshot = single.reader.day_snapshot(tenant, day, now.date())
        assert expected_snapshot[0] is not None  # the worker took one: compared for real
        assert cluster.reader.day_snapshot(tenant, day, now.date()) == expected_snapshot
        since = now - timedelta(days=3)
        assert cluster.reader.recent_wins(tenant, since) == single.reader.recent_wins(tenant, since)
        waits = cluster.reader.waiting_reader().waiting(tenant, now)
        assert waits, "the events leave clients waiting"
        assert waits == single.reader.waiting_reader().waiting(tenant, now)
        names = cluster.reader.staff_reader().names(tenant)
        assert names["m-00"] == f"Ann of {tenant}"
        assert names == single.reader.staff_reader().names(tenant)


async def test_the_wall_frames_on_the_cluster_are_the_single_ones(
    stores: tuple[Store, Store],
) -> None:
    frames = []
    for store in stores:
        offsets = (store.keys.offsets("kpi"), store.keys.offsets("sla"))
        waiting = store.reader.waiting_reader()
        source = WallSource(store.reader, store.sync, DIRECTORY, offsets, waiting=waiting)
        frames.append([(await source.frame(WallKey(t, None))).payload for t in TENANTS])
    assert frames[1] == frames[0]
