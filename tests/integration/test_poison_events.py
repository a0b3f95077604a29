"""Poison events on the real broker and Redis: records the door would refuse today but
that are on the topic (older ingests, other producers) never stop a stage; each is
dead-lettered as ``poison`` and the rest of its batch counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from salespulse.app.compose import build_kpi_consumer, build_sla_consumer, topic_specs
from salespulse.core.events import CrmEvent
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from streams.store_stage import StoreStage
from tests.helpers import eventually, make_event, metric_value, produce, read_topic
from tests.integration.test_kpi_worker import expected, stored

pytestmark = pytest.mark.integration

Build = Callable[..., StoreStage[Any]]


@pytest.fixture
def east(settings: Settings) -> Settings:
    """Tenants east of UTC: the last hours of year 9999 have no local day there."""
    return settings.model_copy(update={"default_timezone": "Asia/Jakarta"})


@pytest.fixture
async def worker(
    east: Settings, redis_client: aioredis.Redis, bootstrap: str
) -> AsyncIterator[tuple[Callable[[Build], StoreStage[Any]], PipelineMetrics]]:
    settings = east
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    started: list[StoreStage[Any]] = []

    def start(build: Build) -> StoreStage[Any]:
        consumer = build(settings, settings.tenant_directory(), redis_client, publisher, metrics)
        started.append(consumer)
        return consumer

    yield start, metrics
    for consumer in started:
        await consumer.stop()
    await publisher.stop()


def unchecked(event: CrmEvent, **values: Any) -> CrmEvent:
    """An event as a producer without today's door could have put it on the topic."""
    return msgspec.convert({**msgspec.to_builtins(event), **values}, CrmEvent)


def won(deal: str, amount: str) -> list[CrmEvent]:
    now = datetime.now(UTC)
    created = make_event(f"{deal}-c", "deal_created", entity_id=deal, received_at=now)
    stage = make_event(f"{deal}-w", "deal_stage_changed", entity_id=deal, received_at=now)
    return [created, unchecked(stage, amount=amount)]


def poison_of(records: list[Any]) -> dict[str, str]:
    """event_id → problem of each dead letter, which must carry the raw record."""
    found = {}
    for record in records:
        headers = dict(record.headers)
        assert headers["reason"] == b"poison"
        found[msgspec.json.decode(record.value)["event_id"]] = headers["problems"].decode()
    return found


async def test_the_review_s_poison_pills_are_dead_lettered_and_the_batch_counts(
    worker, east, redis_url, bootstrap
):
    settings = east
    start, metrics = worker
    now = datetime.now(UTC)
    calls = [make_event(f"call-{n}", received_at=now) for n in range(200)]
    far_future = unchecked(make_event("y9999", received_at=now), occurred_at="9999-12-31T23:59:59Z")
    good = [*calls[:100], *won("ten-trillion", "10000000000000"), *calls[100:]]
    events = [*good[:50], *won("e30", "1e30"), far_future, *good[50:], *won("e15", "1.9e15")]
    await produce(bootstrap, settings.events_topic, events)
    consumer = start(build_kpi_consumer)
    await consumer.start()

    async def rest_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == len(good) + 2

    await eventually(rest_applied, 60, "every event but the three poison ones")
    dead = poison_of(await read_topic(bootstrap, settings.dlq_topic, 3))
    assert sorted(dead) == ["e15-w", "e30-w", "y9999"]
    assert "InvalidOperation" in dead["e30-w"]
    assert "OverflowError" in dead["y9999"]
    assert "would overflow" in dead["e15-w"]
    assert metric_value(metrics, "salespulse_dead_letters_total", reason="poison") == 3
    assert metric_value(metrics, "salespulse_worker_duplicates_dropped_total") == 0
    assert not consumer._consuming.done(), "the KPI stage is still consuming"
    counted = [*good, *won("e30", "0")[:1], *won("e15", "0")[:1]]
    assert stored(redis_url, settings) == expected(counted, settings)
    assert stored(redis_url, settings)["revenue"] == 10**13 * 10_000

    # and it goes on consuming after them
    await produce(bootstrap, settings.events_topic, [make_event("later")])

    async def later_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == len(good) + 3

    await eventually(later_applied, 60, "an event after the poison")


async def test_the_sla_stage_dead_letters_its_poison_and_goes_on(
    worker, east, redis_client, bootstrap
):
    settings = east
    start, metrics = worker
    now = datetime.now(UTC)
    asked = make_event(
        "m-in", "message", conversation_id="conv-2", received_at=now, occurred_at=now
    )
    # a reply in the last second of year 9999: no local day to count its response time in
    far_future = unchecked(
        make_event("m-9999", "message", conversation_id="conv-2", direction="out"),
        occurred_at="9999-12-31T23:59:59Z",
        received_at=now.isoformat(),
    )
    message = make_event("m-ok", "message", received_at=now, occurred_at=now)
    reply = make_event("m-reply", "message", direction="out", received_at=now, occurred_at=now)
    await produce(bootstrap, settings.events_topic, [asked, message, far_future, reply])
    consumer = start(build_sla_consumer)
    await consumer.start()

    async def applied() -> bool:
        poison = metric_value(metrics, "salespulse_dead_letters_total", reason="poison")
        return (
            poison == 1 and metric_value(metrics, "salespulse_worker_sla_events_applied_total") >= 3
        )

    await eventually(applied, 60, "the poison dead-lettered and three messages applied")
    dead = poison_of(await read_topic(bootstrap, settings.dlq_topic, 1))
    assert list(dead) == ["m-9999"]
    assert "the sla stage cannot take this event" in dead["m-9999"]
    assert not consumer._consuming.done()
    waiting = await redis_client.zcard(f"{settings.redis_key_prefix}waiting:acme")
    # conv-1 was answered; conv-2's only reply was the poison, so it still waits
    assert waiting == 1
