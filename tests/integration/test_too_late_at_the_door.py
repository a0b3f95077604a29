"""History posted without the backfill header is refused at the door (422 ``too_late``)
instead of being acknowledged and then dropped by the worker; a too-late event that
still reaches the worker (a CRM webhook's) is counted once however often it arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from salespulse.app.compose import build_kpi_consumer, topic_specs
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile
from salespulse.core.topics import ensure_topics
from tests.helpers import eventually, make_event, metric_value, produce, wait_until_applied
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration


def call(event_id: str, occurred_at: datetime) -> dict[str, object]:
    return {
        "event_id": event_id,
        "tenant": "acme",
        "type": "call",
        "occurred_at": occurred_at.isoformat(),
        "direction": "in",
        "answered": True,
        "duration_s": 60,
        "manager_id": "42",
        "channel": "phone",
    }


async def calls_counted(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/v1/kpis", params={"tenant": "acme", "window": "all"}) as r:
        body = await r.json()
        if r.status == 404:  # no event of the tenant applied yet
            return 0
        assert r.status == 200, body
    return int(body["total"]["calls"])


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The product's default limits: the suite's settings widen them for its fixed dates."""
    defaults = Settings.model_fields
    return settings.model_copy(
        update={
            name: defaults[name].default
            for name in ("lateness_days", "dedupe_retention_days", "entity_retention_days")
        }
    )


async def test_history_without_the_backfill_header_is_refused_and_with_it_counted(
    settings: Settings, redis_client: aioredis.Redis, tmp_path
):
    base = f"http://127.0.0.1:{settings.http_port}"
    now = datetime.now(UTC)
    last_year = [
        call("hist-1", now - timedelta(days=365)),
        call("hist-2", now - timedelta(days=40)),
    ]
    fresh = call("live-1", now - timedelta(hours=1))
    with salespulse_process("run", settings, tmp_path / "run.log"):
        async with aiohttp.ClientSession() as session:
            # One fresh event in the array: all or nothing, as for any other problem.
            async with session.post(f"{base}/v1/events", json=[*last_year, fresh]) as response:
                assert response.status == 422
                body = await response.json()
            assert body["error"] == "too_late"
            assert body["lateness_limit_days"] == settings.lateness_days
            assert "X-SalesPulse-Backfill" in body["how_to_backfill"]
            assert "salespulse replay" in body["how_to_backfill"]
            assert [(p["index"], p["field"]) for p in body["problems"]] == [
                (0, "occurred_at"),
                (1, "occurred_at"),
            ]
            assert f"{settings.lateness_days:g} days" in body["problems"][0]["problem"]

            async with session.post(
                f"{base}/v1/events",
                json=[*last_year, fresh],
                headers={"X-SalesPulse-Backfill": "true"},
            ) as response:
                assert response.status == 202, await response.text()

            async def all_three_counted() -> bool:
                return await calls_counted(session, base) == 3

            await eventually(all_three_counted, 60, "the backfilled calls counted")
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
    assert 'salespulse_ingest_payloads_rejected_total{reason="too_late"} 1.0' in text


async def test_a_too_late_event_is_counted_once_however_often_it_arrives(
    settings: Settings, redis_client: aioredis.Redis
):
    assert settings.kafka_bootstrap is not None
    await ensure_topics(settings.kafka_bootstrap, topic_specs(settings))
    received = datetime.now(UTC)
    late = [
        make_event(f"late-{n}", occurred_at=received - timedelta(days=60), received_at=received)
        for n in range(2)
    ]
    # The CRM resent late-0 twice; a batch redelivered after a crash looks the same.
    records = [late[0], late[1], late[0], late[0]]
    await produce(settings.kafka_bootstrap, settings.events_topic, records)
    metrics = PipelineMetrics(CollectorRegistry())
    publisher = KafkaPublisher(
        settings.kafka_bootstrap,
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=5,
    )
    tenants = TenantDirectory(TenantsFile())
    stage = build_kpi_consumer(settings, tenants, redis_client, publisher, metrics)
    await stage.start()
    try:
        await wait_until_applied(redis_client, settings, [settings.consumer_group])
    finally:
        await stage.stop()
        await publisher.stop()
    assert metric_value(metrics, "salespulse_dead_letters_total", reason="too_late") == 4
    assert metric_value(metrics, "salespulse_worker_events_too_late_total") == 2
