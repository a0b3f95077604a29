"""The product as a user runs it: a webhook over HTTP becomes a KPI on /metrics."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from metrics.read.kpi_reader import Groups, KpiReader
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from tests.helpers import T0, eventually, make_event, produce, wait_until_applied
from tests.integration.processes import salespulse_process
from tests.kpi_memory import MemoryStore

pytestmark = pytest.mark.integration

CALL = {
    "event_id": "vox-1001",
    "tenant": "acme",
    "type": "call",
    "occurred_at": "2026-11-22T10:15:00+03:00",
    "direction": "in",
    "answered": True,
    "duration_s": 95.5,
    "manager_id": "42",
    "channel": "phone",
}
ALL = {"tenant": "acme", "window": "all"}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(session: aiohttp.ClientSession, base: str) -> Samples:
    async with session.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(values: Samples, name: str, labels: dict[str, str] | None = None) -> float | None:
    return values.get((name, frozenset((labels or {}).items())))


async def test_a_posted_event_shows_on_metrics_and_a_repeat_counts_once(settings, tmp_path):
    base = f"http://127.0.0.1:{settings.http_port}"
    call = {**CALL, "occurred_at": datetime.now(UTC).isoformat()}  # inside today and month
    with salespulse_process("run", settings, tmp_path / "run.log"):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/events", json=call) as response:
                assert response.status == 202

            async def counted() -> bool:
                values = await scrape(session, base)
                return sample(values, "salespulse_calls", ALL) == 1

            await eventually(counted, 30, "the call on /metrics")
            values = await scrape(session, base)
            assert sample(values, "salespulse_talk_time_seconds", ALL) == 95.5
            manager_today = {"tenant": "acme", "window": "month", "manager": "42"}
            assert sample(values, "salespulse_calls_by_manager", manager_today) == 1
            assert sample(values, "salespulse_ingest_events_accepted_total") == 1

            async with session.post(f"{base}/v1/events", json=call) as response:
                assert response.status == 202

            async def dropped() -> bool:
                values = await scrape(session, base)
                return sample(values, "salespulse_worker_duplicates_dropped_total") == 1

            await eventually(dropped, 30, "the repeat dropped as a duplicate")
            values = await scrape(session, base)
            assert sample(values, "salespulse_calls", ALL) == 1

            async with session.post(
                f"{base}/v1/events", data=b"{oops", headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400
                assert (await response.json())["error"] == "malformed_json"
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200


async def test_a_worker_killed_mid_stream_resumes_to_the_same_kpis(
    settings: Settings, redis_client: aioredis.Redis, redis_url: str, bootstrap: str, tmp_path: Path
) -> None:
    events = [
        make_event(
            f"k-{i}",
            ("call", "message", "deal_stage_changed")[i % 3],
            manager_id=f"m-{i % 11}",
            entity_id=f"deal-{i % 97}",
            direction="out" if i % 2 else "in",
            stage_to=("new", "proposal", "won", "lost")[i % 4],
            occurred_at=T0 + timedelta(seconds=i),
        )
        for i in range(20_000)
    ]
    await produce(bootstrap, settings.events_topic, events)
    tenants = settings.tenant_directory()
    memory = MemoryStore(tenants)
    memory.apply_batch(events)
    expected = memory.components("acme", "all", None, T0)
    reader = KpiReader(redis.Redis.from_url(redis_url), KpiKeys(settings.redis_key_prefix), tenants)
    keys = KpiKeys(settings.redis_key_prefix)

    async def stored() -> Groups:
        return await asyncio.to_thread(reader.components, "acme", "all", None, T0)

    async def applied_offsets() -> int:
        raw = await redis_client.hgetall(keys.offsets(settings.consumer_group))
        return sum(int(v) + 1 for v in raw.values())

    log = tmp_path / "worker.log"
    # Small batches, so that the kill lands between batches' Redis writes and commits.
    with salespulse_process("worker", settings, log, batch_max_records=200) as first:

        async def partway() -> bool:
            return await applied_offsets() > 2_000

        await eventually(partway, 60, "the first worker to be partway through")
        first.send_signal(signal.SIGKILL)
        first.wait()
    partial = await applied_offsets()
    assert partial < len(events), "the kill should land before the end"

    with salespulse_process("worker", settings, log, batch_max_records=200):

        async def caught_up() -> bool:
            return await stored() == expected

        await eventually(caught_up, 90, "the restarted worker to reach the expected KPIs")
        # Both stages have applied every record now: nothing more may arrive after that.
        groups = [settings.consumer_group, settings.sla_consumer_group]
        await wait_until_applied(redis_client, settings, groups)
        assert await stored() == expected
