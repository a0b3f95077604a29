"""Stream equals batch through the real pipeline: broker, KPI consumer, Redis, reader.

Hypothesis generates histories; each is sent shuffled, with CRM retries and too-late
events, through the real broker to a real KPI consumer (restarted mid-stream in some
examples), and every KPI component of every window and grouping read back from Redis
must equal the independent batch oracle (tests/oracle) exactly, percentiles within 1 %
(tests/oracle/compare.py). Once on a single Redis, once on a three-master Redis Cluster
(`SALESPULSE_REDIS_MODE=cluster`, tests/redis_cluster.py), whose examples' tenants land
on every master.
"""

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
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from metrics.read.kpi_reader import KpiReader
from salespulse.app.compose import build_kpi_consumer, topic_specs
from salespulse.core import redis_clients
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile
from salespulse.core.topics import ensure_topics
from streams.store_stage import StoreStage
from tests.helpers import eventually, metric_value, produce
from tests.histories import CONFIG, NOW, histories
from tests.oracle.batch import compute_components
from tests.oracle.compare import assert_matches_oracle

pytestmark = pytest.mark.integration

EXAMPLES = 14
TENANTS = TenantDirectory(TenantsFile(tenants={f"office-{n}": CONFIG for n in range(EXAMPLES + 5)}))


@dataclass
class Pipeline:
    settings: Settings
    redis_client: aioredis.Redis
    reader: KpiReader
    publisher: KafkaPublisher
    metrics: PipelineMetrics = field(default_factory=lambda: PipelineMetrics(CollectorRegistry()))
    consumer: StoreStage[Any] | None = None
    examples: itertools.count[int] = field(default_factory=itertools.count)

    async def restart(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        self.consumer = build_kpi_consumer(
            self.settings, TENANTS, self.redis_client, self.publisher, self.metrics
        )
        await self.consumer.start()

    def handled(self) -> float:
        counted = metric_value(self.metrics, "salespulse_worker_events_applied_total")
        return float(
            counted
            + metric_value(self.metrics, "salespulse_worker_duplicates_dropped_total")
            + metric_value(self.metrics, "salespulse_dead_letters_total", reason="too_late")
        )


@pytest.fixture(scope="module", params=["single", "cluster"])
async def pipeline(
    request: pytest.FixtureRequest, broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    mode = request.param
    prefix = "seb"
    if mode == "cluster":
        redis_url = request.getfixturevalue("redis_cluster").url
        topics = "seb-cluster"  # its own topics and groups: the single run's are consumed
    else:
        redis_url = f"redis://127.0.0.1:{request.getfixturevalue('redis_server').port}/0"
        topics = "seb"
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{broker.port}",
        redis_url=redis_url,
        redis_mode=mode,
        events_topic=f"crm.events.{topics}",
        dlq_topic=f"crm.events.dlq.{topics}",
        consumer_group=f"kpi-{topics}",
        sla_consumer_group=f"sla-{topics}",
        redis_key_prefix=f"{prefix}:",
        topic_partitions=4,
        kafka_session_timeout_s=6.0,
        batch_timeout_ms=20,
        batch_max_records=64,  # many batches per example: boundaries land everywhere
        data_dir=tmp_path_factory.mktemp("seb"),
    )
    await ensure_topics(settings.kafka_bootstrap or "", topic_specs(settings))
    client = redis_clients.async_redis(settings, redis_url)
    reader = KpiReader(redis_clients.sync_redis(settings, redis_url), settings.kpi_keys(), TENANTS)
    publisher = KafkaPublisher(
        settings.kafka_bootstrap or "",
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=5,
    )
    running = Pipeline(settings, client, reader, publisher)
    await running.restart()
    yield running
    if running.consumer is not None:
        await running.consumer.stop()
    await publisher.stop()
    await client.aclose()


def retenanted(events: list[CrmEvent], tenant: str) -> list[CrmEvent]:
    return [msgspec.structs.replace(event, tenant=tenant) for event in events]


def with_receipt(events: list[CrmEvent], rng: random.Random) -> list[CrmEvent]:
    """Most events arrive promptly; some later than the 35-day lateness limit.

    Nothing happens or is received after NOW, the instant the KPIs are read at: a real
    read always follows the receipt of what it shows (docs/kpi-semantics.md, Windows).
    """
    out = []
    for event in events:
        occurred = min(event.occurred_at, NOW)
        if rng.random() < 0.1:
            received = occurred + timedelta(days=36)  # too late: never counted
        else:
            received = min(occurred + timedelta(seconds=rng.random() * 90), NOW)
        out.append(msgspec.structs.replace(event, occurred_at=occurred, received_at=received))
    return out


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(max_deals=8, max_activity=40), seed=st.integers(0, 2**32))
async def test_stream_equals_batch_through_the_real_pipeline(
    pipeline: Pipeline, history: list[CrmEvent], seed: int
) -> None:
    rng = random.Random(seed)
    number = next(pipeline.examples)
    tenant = f"office-{number}"
    truth = with_receipt(retenanted(history, tenant), rng)
    arrived = truth + rng.sample(truth, k=len(truth) // 4)  # CRM retries: same ids
    rng.shuffle(arrived)
    before = pipeline.handled()
    half = len(arrived) // 2
    await produce(
        pipeline.settings.kafka_bootstrap or "", pipeline.settings.events_topic, arrived[:half]
    )
    if number % 4 == 1:  # a worker restart in the middle of the stream
        await pipeline.restart()
    await produce(
        pipeline.settings.kafka_bootstrap or "", pipeline.settings.events_topic, arrived[half:]
    )

    async def all_handled() -> bool:
        return pipeline.handled() - before >= len(arrived)

    await eventually(all_handled, 60, f"{len(arrived)} records of {tenant}")
    for window, by in itertools.product(WINDOWS, (None, *DIMENSIONS)):
        stream = await asyncio.to_thread(pipeline.reader.components, tenant, window, by, NOW)
        batch = compute_components(truth, CONFIG, tenant, window, by, NOW)
        assert_matches_oracle(stream, batch, (tenant, window, by))
