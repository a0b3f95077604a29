"""Periods through the real pipeline: hypothesis histories over several months of a
Berlin office (across the March clock change) sent through the real broker to a real KPI
consumer; every period and its previous one read back from Redis equals the batch
oracle (tests/oracle/periods.py). The pure rest: tests/oracle/test_periods_oracle.py."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from metrics.read.kpi_reader import KpiReader
from salespulse.app.compose import build_kpi_consumer, topic_specs
from salespulse.core.events import CrmEvent
from salespulse.core.kpi import periods
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile
from salespulse.core.topics import ensure_topics
from streams.store_stage import StoreStage
from tests.helpers import eventually, metric_value, produce
from tests.histories import CONFIG, NOW
from tests.oracle.compare import assert_matches_oracle
from tests.oracle.periods import period_components
from tests.oracle.test_periods_oracle import NAMES, TODAY, multi_month

pytestmark = pytest.mark.integration

EXAMPLES = 6
TENANTS = TenantDirectory(TenantsFile(tenants={f"period-{n}": CONFIG for n in range(EXAMPLES + 5)}))


@dataclass
class Running:
    settings: Settings
    reader: KpiReader
    publisher: KafkaPublisher
    consumer: StoreStage[Any]
    metrics: PipelineMetrics
    examples: itertools.count[int] = field(default_factory=itertools.count)

    def handled(self) -> float:
        return float(
            metric_value(self.metrics, "salespulse_worker_events_applied_total")
            + metric_value(self.metrics, "salespulse_worker_duplicates_dropped_total")
            + metric_value(self.metrics, "salespulse_worker_events_too_late_total")
        )


@pytest.fixture(scope="module")
async def running(
    broker, redis_server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{broker.port}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        events_topic="crm.events.per",
        dlq_topic="crm.events.dlq.per",
        consumer_group="kpi-per",
        sla_consumer_group="sla-per",
        redis_key_prefix="per:",
        topic_partitions=4,
        kafka_session_timeout_s=6.0,
        batch_timeout_ms=20,
        batch_max_records=64,
        data_dir=tmp_path_factory.mktemp("per"),
    )
    await ensure_topics(settings.kafka_bootstrap or "", topic_specs(settings))
    client = aioredis.Redis.from_url(settings.redis_url or "")
    reader = KpiReader(
        redis.Redis.from_url(settings.redis_url or ""),
        KpiKeys(settings.redis_key_prefix),
        TENANTS,
        clock=NOW.timestamp,
    )
    publisher = KafkaPublisher(
        settings.kafka_bootstrap or "",
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=5,
    )
    metrics = PipelineMetrics(CollectorRegistry())
    consumer = build_kpi_consumer(settings, TENANTS, client, publisher, metrics)
    await consumer.start()
    yield Running(settings, reader, publisher, consumer, metrics)
    await consumer.stop()
    await publisher.stop()
    await client.aclose()


def received(events: list[CrmEvent], tenant: str) -> list[CrmEvent]:
    """Each event received a minute after it happened (none is late)."""
    return [
        msgspec.structs.replace(
            event, tenant=tenant, received_at=event.occurred_at + timedelta(minutes=1)
        )
        for event in events
    ]


def comparable(groups: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    for group in groups.values():
        group.pop("client_distinct", None)
    return {name: group for name, group in groups.items() if group or name == ""}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=multi_month(), seed=st.integers(0, 2**32))
async def test_periods_equal_the_oracle_through_the_real_pipeline(
    running: Running, history: list[CrmEvent], seed: int
) -> None:
    rng = random.Random(seed)
    tenant = f"period-{next(running.examples)}"
    truth = received(history, tenant)
    arrived = truth + rng.sample(truth, k=len(truth) // 4)  # CRM retries: same ids
    rng.shuffle(arrived)
    before = running.handled()
    await produce(running.settings.kafka_bootstrap or "", running.settings.events_topic, arrived)

    async def all_handled() -> bool:
        return running.handled() - before >= len(arrived)

    await eventually(all_handled, 60, f"{len(arrived)} records of {tenant}")
    shared = await asyncio.to_thread(running.reader.tenant_state, tenant, NOW)
    for name, by in itertools.product(NAMES, (None, "manager")):
        for period in (named := periods.named(name, TODAY), periods.compared(named, "previous")):
            plan = periods.bucket_plan(period, TODAY, 400)
            snapshot = await asyncio.to_thread(
                running.reader.bucket_snapshot,
                tenant,
                plan.granularity,
                plan.buckets,
                by,
                shared,
                NOW,
            )
            oracle = period_components(truth, CONFIG, tenant, period.first, period.last, by)
            # percentiles within the sketch's 1 %, every other component equal
            assert_matches_oracle(
                comparable(snapshot.groups), comparable(oracle), (tenant, name, by)
            )
