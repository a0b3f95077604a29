"""While a big batch folds, the event loop keeps serving (streams/off_loop.py).

In ``salespulse run`` HTTP ingest shares the loop with the KPI and SLA stages; a fold on
the loop held every request for its whole duration. A heartbeat task measures the
longest time the loop went without running it, and is compared with the fold's own
duration, not with a fixed number of milliseconds: on a loaded machine both stretch.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tuning import tune_gc
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore

pytestmark = pytest.mark.integration

EVENTS = 30_000
TICK_S = 0.001


@pytest.fixture(autouse=True)
def _worker_gc() -> Iterator[None]:
    """The collector tuned as the worker process tunes it (salespulse/app/launcher.py):
    with CPython's defaults a full collection of the batch's objects holds the GIL, in
    whichever thread it runs, for ~200 ms here."""
    thresholds = gc.get_threshold()
    tune_gc()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def longest_stall(fold: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(longest gap between two heartbeats beyond their tick, the fold's duration)."""
    longest = 0.0
    beating = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal longest
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            longest = max(longest, now - last - TICK_S)
            last = now
            beating.set()

    task = asyncio.create_task(heartbeat())
    try:
        await asyncio.wait_for(beating.wait(), 30)
        started = time.perf_counter()
        await fold()
        fold_s = time.perf_counter() - started
        # a stall is measured when the heartbeat runs again: let it, once more
        beating.clear()
        await asyncio.wait_for(beating.wait(), 30)
        return longest, fold_s
    finally:
        task.cancel()


def events() -> list[CrmEvent]:
    return list(synthetic_events(EVENTS, 11, "loop"))


async def test_the_loop_runs_while_the_kpi_fold_folds_a_big_batch(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = KpiKeys(settings.redis_key_prefix)
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)
    # one fold of the whole batch: parts would give the loop a turn between them anyway
    applier = KpiApplier(sink, BENCH_TENANTS, keys, max_part_writes=10**9)
    batch = events()

    stall, fold_s = await longest_stall(lambda: applier.prepare(batch))

    # ~30k events fold in hundreds of ms; on the loop the heartbeat stalled for all of it
    assert fold_s > 0.1, fold_s
    assert stall < fold_s / 4, (stall, fold_s)


async def test_the_loop_runs_while_the_sla_fold_folds_a_big_batch(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = KpiKeys(settings.redis_key_prefix)
    store = SlaStore(redis_client, keys, group="g-sla", day_ttl_s=7200)
    applier = SlaApplier(store, BENCH_TENANTS, keys)
    batch = events()

    stall, fold_s = await longest_stall(lambda: applier.prepare(batch))

    assert fold_s > 0.1, fold_s
    assert stall < fold_s / 4, (stall, fold_s)
