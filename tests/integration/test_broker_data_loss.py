"""A broker that lost its log (topic deleted and recreated) on the real broker and Redis:
new events count, an error is logged, the offset-reset counter moves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from salespulse.app.compose import build_kpi_consumer, build_sla_consumer, topic_specs
from salespulse.app.embedded import free_port, start_broker
from salespulse.core.events import CrmEvent
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from streams.store_stage import StoreStage
from tests.helpers import T0, eventually, make_event, metric_value, produce
from tests.integration.test_kpi_worker import expected, stored

pytestmark = pytest.mark.integration

Factory = Callable[[str], StoreStage[Any]]


@pytest.fixture
async def workers(
    settings: Settings, redis_client: aioredis.Redis, bootstrap: str
) -> AsyncIterator[tuple[Factory, PipelineMetrics]]:
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    started: list[StoreStage[Any]] = []

    def factory(stage: str) -> StoreStage[Any]:
        build = build_kpi_consumer if stage == "kpi" else build_sla_consumer
        consumer = build(settings, settings.tenant_directory(), redis_client, publisher, metrics)
        started.append(consumer)
        return consumer

    yield factory, metrics
    for consumer in started:
        await consumer.stop()
    await publisher.stop()


def calls(first: int, n: int) -> list[CrmEvent]:
    return [
        make_event(
            f"call-{i}",
            manager_id=f"m-{i % 5}",
            occurred_at=T0 + timedelta(minutes=i),
            received_at=datetime.now(UTC),
        )
        for i in range(first, first + n)
    ]


async def recreate_topic(bootstrap: str, settings: Settings) -> None:
    """What a broker restarted empty looks like to a worker: the same topic, a new log."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.events_topic])
    finally:
        await admin.close()
    await ensure_topics(bootstrap, {settings.events_topic: settings.topic_partitions})


def resets(metrics: PipelineMetrics, stage: str) -> float:
    return metric_value(metrics, "salespulse_worker_offset_resets_total", stage=stage)


async def test_a_recreated_topic_is_read_from_its_start_on_assignment(
    workers, settings, redis_url, bootstrap, caplog
):
    factory, metrics = workers
    before = calls(0, 400)
    await produce(bootstrap, settings.events_topic, before)
    first = factory("kpi")
    await first.start()

    async def applied(n: int) -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == n

    await eventually(lambda: applied(400), 60, "the first 400 events")
    await first.stop()

    await recreate_topic(bootstrap, settings)
    # Fewer records than the old log held: every new offset lies below a stored watermark.
    after = calls(400, 40)
    await produce(bootstrap, settings.events_topic, after)
    caplog.set_level(logging.ERROR, logger="streams.store_guard")
    await factory("kpi").start()

    await eventually(lambda: applied(440), 60, "the 40 events of the new log")
    assert stored(redis_url, settings) == expected(before + after, settings)
    assert resets(metrics, "kpi") >= 1
    assert any("lost its log" in r.getMessage() for r in caplog.records)


async def test_a_running_worker_counts_the_new_log_after_a_recreation(
    workers, settings, redis_url, bootstrap, caplog
):
    """Both stages keep running while their topic is deleted and recreated."""
    factory, metrics = workers
    before = calls(0, 400)
    await produce(bootstrap, settings.events_topic, before)
    kpi, sla = factory("kpi"), factory("sla")
    await kpi.start()
    await sla.start()

    async def applied(n: int) -> bool:
        kpi_done = metric_value(metrics, "salespulse_worker_events_applied_total") == n
        return kpi_done and metric_value(metrics, "salespulse_worker_sla_events_applied_total") == n

    await eventually(lambda: applied(400), 60, "the first 400 events, both stages")
    caplog.set_level(logging.ERROR, logger="streams.store_guard")
    await recreate_topic(bootstrap, settings)
    after = calls(400, 40)
    await produce(bootstrap, settings.events_topic, after)

    await eventually(lambda: applied(440), 90, "the 40 events of the new log, both stages")
    assert stored(redis_url, settings) == expected(before + after, settings)
    assert resets(metrics, "kpi") >= 1
    assert resets(metrics, "sla") >= 1
    assert any("lost its log" in r.getMessage() for r in caplog.records)


async def test_a_broker_restarted_empty_under_running_workers(
    settings, redis_client, redis_url, tmp_path, caplog
):
    """The review's case: Redis kept, the in-memory broker restarted empty on its port."""
    port = free_port()
    local = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    bootstrap = local.kafka_bootstrap
    metrics = PipelineMetrics(CollectorRegistry())
    broker = start_broker(tmp_path / "broker-1", port)
    publisher = KafkaPublisher(
        bootstrap, events_topic=local.events_topic, dlq_topic=local.dlq_topic, timeout_s=5
    )
    tenants = local.tenant_directory()
    workers = [
        build(local, tenants, redis_client, publisher, metrics)
        for build in (build_kpi_consumer, build_sla_consumer)
    ]
    try:
        await ensure_topics(bootstrap, topic_specs(local))
        before = calls(0, 400)
        await produce(bootstrap, local.events_topic, before)
        for worker in workers:
            await worker.start()

        async def applied(n: int) -> bool:
            kpi_done = metric_value(metrics, "salespulse_worker_events_applied_total") == n
            return (
                kpi_done
                and metric_value(metrics, "salespulse_worker_sla_events_applied_total") == n
            )

        await eventually(lambda: applied(400), 60, "the first 400 events, both stages")
        caplog.set_level(logging.ERROR, logger="streams.store_guard")
        broker.stop()
        broker = start_broker(tmp_path / "broker-2", port)
        await ensure_topics(bootstrap, topic_specs(local))
        after = calls(400, 40)
        await produce(bootstrap, local.events_topic, after)

        await eventually(lambda: applied(440), 120, "the 40 events of the new broker")
        assert stored(redis_url, local) == expected(before + after, local)
        assert resets(metrics, "kpi") >= 1
        assert any("lost its log" in r.getMessage() for r in caplog.records)
    finally:
        for worker in workers:
            await worker.stop()
        await publisher.stop()
        broker.stop()
