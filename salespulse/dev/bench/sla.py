"""Benchmark path (d): the SLA stage (conversation clock) over the same backlog as (a).

The worker runs it as a second consumer group beside the KPI stage; it is measured on its
own, with the factory every process role uses, from its first applied batch to its last.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from salespulse.app.compose import build_sla_consumer
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.dev.bench.naive import BENCH_TENANTS
from salespulse.dev.bench.parts import Mark, Row, close_quietly, delete_keys, wait_until
from salespulse.dev.bench.redis_cost import RedisCost, RedisProbe

PATH = "(d) SLA stage (conversation clock)"


class _SlaMarks(PipelineMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.applied = 0
        self.first: Mark | None = None
        self.last: Mark | None = None

    def sla_batch_applied(self, events: int) -> None:
        super().sla_batch_applied(events)
        self.applied += events
        self.last = Mark(self.applied, time.perf_counter(), time.process_time())
        self.first = self.first or self.last


async def measure_sla(
    settings: Settings, bootstrap: str, redis_url: str, topic: str, events: int
) -> tuple[Row, RedisCost]:
    """The row, and what the stage's writes cost Redis while it drained the backlog."""
    run = uuid.uuid4().hex[:8]
    settings = settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "events_topic": topic,
            "dlq_topic": f"{topic}.dlq",
            "sla_consumer_group": f"bench-sla-{run}",
            "redis_key_prefix": f"spbench-sla-{run}:",
        }
    )
    keys = settings.kpi_keys()
    metrics = _SlaMarks(CollectorRegistry(auto_describe=False))
    client = aioredis.Redis.from_url(redis_url)
    publisher = KafkaPublisher(
        bootstrap,
        events_topic=topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=settings.produce_timeout_s,
    )
    consumer = build_sla_consumer(settings, BENCH_TENANTS, client, publisher, metrics)
    probe = RedisProbe(client)
    try:
        await probe.start()
        await consumer.start()
        budget = 30 + settings.kafka_session_timeout_s + events / 5_000
        await wait_until(lambda: metrics.applied >= events, budget, "(d) to drain", consumer)
        redis_cost = await probe.stop()
        assert metrics.first is not None  # narrowing: set by the batches just waited for
        assert metrics.last is not None
        return Row.between(PATH, events, metrics.first, metrics.last), redis_cost
    finally:
        await close_quietly("(d) consumer", consumer.stop())
        await close_quietly("(d) dead-letter publisher", publisher.stop())
        await close_quietly("(d) Redis keys", delete_keys(client, f"{keys.prefix}*"))
        await close_quietly("(d) Redis client", client.aclose())
