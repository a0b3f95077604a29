"""Scale figures of ``salespulse bench``: state memory and scrape time at office size.

Both write straight through the product's fold and Redis sink (no broker in between:
what is measured is Redis memory and the exporter, not the transport).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from metrics.collectors.kpi import KpiCollector
from metrics.merged import merged_exposition
from metrics.read.kpi_reader import KpiReader
from salespulse.core.events import CrmEvent, EventType
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.naive import BENCH_TENANTS
from salespulse.dev.bench.parts import delete_keys
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink

CHUNK = 20_000
TARGET_STATE_BYTES = 1 << 30
TARGET_SCRAPE_S = 0.05  # issue 19: GET /metrics, 200 managers, <= 50 ms


async def _apply_all(client: aioredis.Redis, keys: KpiKeys, events: Iterator[CrmEvent]) -> None:
    sink = RedisKpiSink(client, keys, group="bench-scale", dedupe_ttl_s=86_400, day_ttl_s=86_400)
    applier = KpiApplier(sink, BENCH_TENANTS, keys)
    chunk: list[CrmEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= CHUNK:
            await applier.apply(chunk, {})
            chunk = []
    if chunk:
        await applier.apply(chunk, {})


async def _drop(client: aioredis.Redis, prefix: str) -> None:
    await delete_keys(client, f"{prefix}*")


async def open_deal_state(redis_url: str, deals: int) -> str:
    """Redis memory taken by `deals` open deals (state, stage index, KPI fields, ids)."""
    client = aioredis.Redis.from_url(redis_url)
    keys = KpiKeys(f"spscale-{uuid.uuid4().hex[:8]}:")
    now = datetime.now(UTC)
    stages = ("new", "qualified", "proposal", "negotiation")

    def events() -> Iterator[CrmEvent]:
        for n in range(deals):
            yield CrmEvent(
                event_id=f"open-{n}",
                tenant="acme",
                type="deal_stage_changed",
                occurred_at=now - timedelta(minutes=n % 50_000),
                entity_id=f"deal-{n}",
                pipeline="sales",
                stage_to=stages[n % 4],
                manager_id=f"m-{n % 25}",
                client_id=f"client-{n % 20_000}",
                amount=Decimal(1000 + n % 9000),
                currency="USD",
                source_channel=("web", "ads", "partner")[n % 3],
                received_at=now,  # as the ingest stamps it
            )

    try:
        await client.memory_purge()
        before = int((await client.info("memory"))["used_memory"])
        started = time.perf_counter()
        await _apply_all(client, keys, events())
        seconds = time.perf_counter() - started
        after = int((await client.info("memory"))["used_memory"])
        ids = sum(
            [
                int(await client.memory_usage(key) or 0)
                for family in ("seen:*", "mark:*")
                async for key in client.scan_iter(match=f"{keys.prefix}{family}")
            ]
        )
    finally:
        await _drop(client, keys.prefix)
        await client.aclose()
    used = after - before
    verdict = "PASS" if used - ids < TARGET_STATE_BYTES else "FAIL"
    return (
        f"state for {deals:,} open deals: {used / 2**20:,.0f} MiB in Redis "
        f"({used / deals:,.0f} B/deal), of which event ids and marks {ids / 2**20:,.0f} MiB; "
        f"deal state without them < 1 GiB: {verdict} (written in {seconds:.0f}s)"
    )


async def scrape_time(redis_url: str, managers: int, events_per_manager: int = 250) -> str:
    """GET /metrics for one tenant with `managers` managers active today: median of 10."""
    client = aioredis.Redis.from_url(redis_url)
    keys = KpiKeys(f"spscrape-{uuid.uuid4().hex[:8]}:")
    now = datetime.now(UTC)

    def events() -> Iterator[CrmEvent]:
        kinds: tuple[EventType, ...] = ("call", "message", "deal_created", "deal_stage_changed")
        for n in range(managers * events_per_manager):
            kind = kinds[n % 4]
            yield CrmEvent(
                event_id=f"s-{n}",
                tenant="acme",
                type=kind,
                occurred_at=now - timedelta(seconds=(n * 7) % 7200),
                manager_id=f"m-{n % managers}",
                entity_id=f"deal-{n // 4}",
                direction="in" if n % 3 else "out",
                answered=n % 5 != 0,
                duration_s=60,
                pipeline="sales",
                stage_to=("qualified", "won", "lost")[n % 3],
                amount=Decimal(500),
                currency="USD",
                client_id=f"c-{n % 3000}",
                received_at=now,  # as the ingest stamps it
            )

    try:
        await _apply_all(client, keys, events())
        reader = KpiReader(redis.Redis.from_url(redis_url), keys, BENCH_TENANTS)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(KpiCollector(reader, BENCH_TENANTS))
        times = []
        for _ in range(10):
            started = time.perf_counter()
            body = merged_exposition(registry)  # what GET /metrics answers
            times.append(time.perf_counter() - started)
    finally:
        await _drop(client, keys.prefix)
        await client.aclose()
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    median = statistics.median(times)
    verdict = "PASS" if median <= TARGET_SCRAPE_S else "FAIL"
    return (
        f"GET /metrics, one tenant with {managers} managers ({series:,} series): "
        f"median {median * 1e3:.0f} ms of 10, max {max(times) * 1e3:.0f} ms; "
        f"<= {TARGET_SCRAPE_S * 1e3:.0f} ms: {verdict}"
    )
