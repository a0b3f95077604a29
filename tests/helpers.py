"""Small builders and Kafka/Redis readers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from salespulse.core.events import CrmEvent, ValidatedEvent, encode_event
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_event(event_id: str, kind: str = "call", **fields: Any) -> CrmEvent:
    """A valid canonical event of the given type; fields override the defaults."""
    by_kind: dict[str, dict[str, Any]] = {
        "call": {"direction": "in", "answered": True, "duration_s": 30.0, "channel": "phone"},
        "message": {"direction": "in", "channel": "chat", "conversation_id": "conv-1"},
        "lead_created": {"entity_id": "lead-1"},
        "deal_created": {"entity_id": "deal-1", "pipeline": "sales"},
        "deal_stage_changed": {
            "entity_id": "deal-1",
            "pipeline": "sales",
            "stage_to": "won",
            "stage_kind": "won",
            "amount": Decimal("100.50"),
            "currency": "USD",
        },
    }
    defaults = by_kind.get(kind, {})
    values: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "tenant": "acme",
        "manager_id": "m-1",
        "occurred_at": T0,
        **defaults,
        **fields,
    }
    # convert() validates like the ingest does, so a test cannot build an impossible event.
    return msgspec.convert(values, ValidatedEvent)


def metric_value(metrics: PipelineMetrics, name: str, **labels: str) -> float:
    """A sample as a scrape reads it (the registry's public get_sample_value), not a
    metric's private value. Every series exists up front, so a miss is a wrong name."""
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


async def produce(bootstrap: str, topic: str, events: list[CrmEvent], partitions: int = 4) -> None:
    await ensure_topics(bootstrap, {topic: partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=encode_event(e), key=e.partition_key) for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0
) -> list[ConsumerRecord]:
    """Read `expected` records from the start of a topic without a consumer group."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll an async condition; fail naming what never became true."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def topic_ends(bootstrap: str, topic: str) -> dict[str, int]:
    """``topic:partition`` → the offset after the partition's last record, now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata, partitions included
        numbers = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in numbers])
    finally:
        await consumer.stop()
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in ends.items()}


async def wait_until_applied(
    client: aioredis.Redis, settings: Settings, groups: list[str], timeout_s: float = 90
) -> None:
    """Wait (bounded) until each consumer group's applied offsets in Redis (its
    watermarks) reach the events topic's current end: the workers have then seen every
    record sent so far, counted or dropped, so a test may assert that nothing changed."""
    assert settings.kafka_bootstrap is not None, "the test's broker"
    ends = await topic_ends(settings.kafka_bootstrap, settings.events_topic)
    assert ends, f"no partitions found for {settings.events_topic}"
    keys = KpiKeys(settings.redis_key_prefix)

    async def reached() -> bool:
        for group in groups:
            stored = await client.hgetall(keys.offsets(group))
            applied = {_text(k): int(v) + 1 for k, v in stored.items()}
            if any(applied.get(partition, 0) < end for partition, end in ends.items()):
                return False
        return True

    await eventually(reached, timeout_s, f"{groups} to apply {settings.events_topic} to {ends}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
