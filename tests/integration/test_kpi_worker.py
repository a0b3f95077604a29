"""The KPI consumer on the real broker and Redis: batches, duplicates, crash windows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from metrics.read.kpi_reader import KpiReader
from salespulse.app.compose import build_kpi_consumer, topic_specs
from salespulse.core.events import CrmEvent, decode_event
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from streams.applier import KpiApplier
from streams.contributions import event_components
from streams.redis_sink import RedisKpiSink
from streams.store_stage import StoreStage, WatermarkStore
from tests.helpers import T0, eventually, make_event, metric_value, produce, read_topic
from tests.kpi_memory import MemoryStore

pytestmark = pytest.mark.integration

ConsumerFactory = Callable[[], StoreStage[Any]]


@pytest.fixture
async def consumers(
    settings: Settings, redis_client: aioredis.Redis, bootstrap: str
) -> AsyncIterator[tuple[ConsumerFactory, PipelineMetrics]]:
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    started: list[StoreStage[Any]] = []

    def factory() -> StoreStage[Any]:
        consumer = build_kpi_consumer(
            settings, settings.tenant_directory(), redis_client, publisher, metrics
        )
        started.append(consumer)
        return consumer

    yield factory, metrics
    for consumer in started:
        await consumer.stop()
    await publisher.stop()


def history(n: int) -> list[CrmEvent]:
    """A mixed history over several deals, managers and days."""
    kinds = ["call", "message", "lead_created", "deal_created", "deal_stage_changed"]
    return [
        make_event(
            f"ev-{i}",
            kinds[i % 5],
            manager_id=f"m-{i % 7}",
            entity_id=f"deal-{i % 13}",
            answered=i % 3 != 0,
            direction="out" if i % 2 else "in",
            stage_to=("new", "proposal", "won", "lost")[i % 4],
            occurred_at=T0 + timedelta(minutes=i),
            received_at=datetime.now(UTC),
        )
        for i in range(n)
    ]


def stored(redis_url: str, settings: Settings) -> dict[str, int]:
    reader = KpiReader(
        redis.Redis.from_url(redis_url),
        KpiKeys(settings.redis_key_prefix),
        settings.tenant_directory(),
    )
    return reader.components("acme", "all", None, T0)[TOTAL_GROUP]


def expected(events: list[CrmEvent], settings: Settings) -> dict[str, int]:
    store = MemoryStore(settings.tenant_directory(), with_sla=False)
    store.apply_batch(events)
    return store.components("acme", "all", None, T0)[TOTAL_GROUP]


async def test_events_become_kpis_and_offsets_are_committed(
    consumers, settings, redis_url, bootstrap
):
    factory, metrics = consumers
    events = history(500)
    await produce(bootstrap, settings.events_topic, events)
    consumer = factory()
    await consumer.start()

    async def all_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == 500

    await eventually(all_applied, 30, "500 events applied")
    assert stored(redis_url, settings) == expected(events, settings)
    assert metric_value(metrics, "salespulse_worker_batches_applied_total") >= 1
    [latency] = metrics.event_to_kpi_latency.collect()
    counts = {sample.name: sample.value for sample in latency.samples}
    assert counts["salespulse_event_to_kpi_latency_seconds_count"] == 500
    # The offsets are committed to Kafka after Redis took the batch (and after the applied
    # counters moved), so a busy machine may show the counters first.
    partition = next(iter(consumer.watermarks))

    async def offsets_committed() -> bool:
        return await consumer._consumer.committed(partition) is not None

    await eventually(offsets_committed, 30, "the batch's offsets committed")


async def test_a_retried_webhook_counts_once(consumers, settings, redis_url, bootstrap):
    factory, metrics = consumers
    first = [make_event("dup-1"), make_event("solo")]
    await produce(bootstrap, settings.events_topic, first)
    consumer = factory()
    await consumer.start()

    async def applied(n: int) -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == n

    await eventually(lambda: applied(2), 30, "first two events")
    # The CRM retries the same delivery much later: a new record, the same event_id.
    await produce(bootstrap, settings.events_topic, [make_event("dup-1"), make_event("new")])

    async def third_seen() -> bool:
        return metric_value(
            metrics, "salespulse_worker_duplicates_dropped_total"
        ) == 1 and await applied(3)

    await eventually(third_seen, 30, "the retry dropped as a duplicate")
    assert stored(redis_url, settings)["calls"] == 3


async def crash_after_applying(
    applied: int,
    events: list[CrmEvent],
    settings: Settings,
    redis_client: aioredis.Redis,
    bootstrap: str,
) -> list[CrmEvent]:
    """``events`` on 4 partitions, and a worker that died after applying the first
    ``applied`` records it read (watermarks included), before committing them."""
    await produce(bootstrap, settings.events_topic, events, partitions=4)
    records = await read_topic(bootstrap, settings.events_topic, len(events))
    crashed_batch: list[CrmEvent] = []
    offsets: dict[str, int] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset))[:applied]:
        crashed_batch.append(decode_event(record.value))
        offsets[f"{record.topic}:{record.partition}"] = record.offset
    keys = KpiKeys(settings.redis_key_prefix)
    sink = RedisKpiSink(
        redis_client, keys, group=settings.consumer_group, dedupe_ttl_s=3600, day_ttl_s=3600
    )
    await KpiApplier(sink, settings.tenant_directory(), keys).apply(crashed_batch, offsets)
    return events


async def test_a_worker_applies_the_journal_parts_a_dead_one_left(
    consumers, settings, redis_client, redis_url, bootstrap
):
    """A worker died after a batch's first script call (ids, states and watermarks in),
    before its later calls wrote the rest of the batch's hash fields (streams/journal.py);
    the next worker applies them when it is assigned the partitions."""
    factory, metrics = consumers
    events = history(300)
    await produce(bootstrap, settings.events_topic, events, partitions=4)
    records = await read_topic(bootstrap, settings.events_topic, len(events))
    last_first = sorted(records, key=lambda record: record.offset)
    offsets = {f"{record.topic}:{record.partition}": record.offset for record in last_first}
    keys = KpiKeys(settings.redis_key_prefix)
    sink = RedisKpiSink(
        redis_client, keys, group=settings.consumer_group, dedupe_ttl_s=3600, day_ttl_s=3600,
        part_fields=50,
    )  # fmt: skip

    async def die(pending: object) -> None:
        raise SystemExit("the worker died after the batch's first call")

    sink.journal.drain = die  # type: ignore[method-assign]
    batch = [decode_event(record.value) for record in records]
    with pytest.raises(SystemExit):
        await KpiApplier(sink, settings.tenant_directory(), keys).apply(batch, offsets)
    assert await redis_client.hlen(keys.journal("")) > 3
    assert stored(redis_url, settings) != expected(events, settings)

    consumer = factory()
    await consumer.start()

    async def journal_drained() -> bool:
        return int(await redis_client.exists(keys.journal(""))) == 0

    await eventually(journal_drained, 30, "the journal drained")
    assert stored(redis_url, settings) == expected(events, settings)
    assert metric_value(metrics, "salespulse_worker_events_applied_total") == 0


async def test_applied_but_uncommitted_batches_are_not_counted_twice(
    consumers, settings, redis_client, redis_url, bootstrap
):
    """The crash window: Redis took the batch, the Kafka commit never happened."""
    factory, metrics = consumers
    events = await crash_after_applying(120, history(300), settings, redis_client, bootstrap)

    consumer = factory()
    await consumer.start()

    async def rest_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == 180

    await eventually(rest_applied, 30, "the remaining 180 events")
    assert stored(redis_url, settings) == expected(events, settings)
    assert metric_value(metrics, "salespulse_worker_duplicates_dropped_total") == 0, (
        "watermarks skip, not dedupe"
    )


class WatermarksReadAfterTheFirstFetch:
    """The KPI store, its watermark reads answered only once the consumer's fetcher has
    records of every partition: the rebalance listener is slower than the first fetch,
    as on a busy machine (what made the test above fail under CPU load)."""

    def __init__(self, store: WatermarkStore) -> None:
        self._store = store
        self.consumer: StoreStage[Any] | None = None

    async def watermarks(self, partitions: list[str]) -> dict[str, int]:
        assert self.consumer is not None
        kafka = self.consumer._consumer

        async def every_partition_fetched() -> bool:
            return all(kafka.highwater(tp) is not None for tp in kafka.assignment())

        await eventually(every_partition_fetched, 30, "a first fetch of every partition")
        return await self._store.watermarks(partitions)

    async def finish_journals(self) -> int:
        return await self._store.finish_journals()


async def test_records_fetched_while_the_watermarks_are_read_are_skipped_not_deduped(
    consumers, settings, redis_client, redis_url, bootstrap
):
    factory, metrics = consumers
    events = await crash_after_applying(120, history(300), settings, redis_client, bootstrap)
    consumer = factory()
    held = WatermarksReadAfterTheFirstFetch(consumer._sink)
    held.consumer, consumer._sink = consumer, held
    await consumer.start()

    async def rest_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") >= 180

    await eventually(rest_applied, 30, "the remaining 180 events")
    assert metric_value(metrics, "salespulse_worker_duplicates_dropped_total") == 0, (
        "watermarks skip, not dedupe"
    )
    assert metric_value(metrics, "salespulse_worker_events_applied_total") == 180
    assert stored(redis_url, settings) == expected(events, settings)


async def test_an_undecodable_record_is_dead_lettered_and_the_rest_counted(
    consumers, settings, redis_client, bootstrap
):
    factory, metrics = consumers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await producer.send_and_wait(settings.events_topic, b"\x00not json", key=b"acme:x")
    await producer.send_and_wait(settings.events_topic, None, key=b"acme:tombstone")
    await producer.stop()
    await produce(bootstrap, settings.events_topic, [make_event("fine")])
    consumer = factory()
    await consumer.start()

    async def fine_applied() -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == 1

    await eventually(fine_applied, 30, "the good event")
    dead = await read_topic(bootstrap, settings.dlq_topic, 2)
    assert sorted(record.value for record in dead) == [b"", b"\x00not json"]
    assert {dict(record.headers)["reason"] for record in dead} == {b"undecodable_record"}
    assert metric_value(metrics, "salespulse_dead_letters_total", reason="undecodable_record") == 2


def additive_history(n: int) -> list[CrmEvent]:
    """Events with no entity, each of its own day (so many event days): every kind whose
    count is made per event."""
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("meeting", {}),
        ("rating", {"rating": 4}),
        ("payment", {"amount": Decimal("12.50"), "currency": "USD"}),
        ("invoice", {"amount": Decimal("30"), "currency": "USD"}),
        ("marketing_cost", {"amount": Decimal("7"), "currency": "USD", "source_channel": "ads"}),
        ("lead_created", {"entity_id": None}),
        ("call", {"direction": "out", "answered": False, "duration_s": 0.0}),
        ("message", {"direction": "out"}),
    ]
    return [
        make_event(
            f"add-{i}",
            kinds[i % len(kinds)][0],
            manager_id=f"m-{i % 5}",
            occurred_at=T0 - timedelta(days=i % 9, minutes=i),
            received_at=datetime.now(UTC),
            **kinds[i % len(kinds)][1],
        )
        for i in range(n)
    ]


async def every_bucket(client: aioredis.Redis, prefix: str) -> dict[bytes, dict[Any, Any]]:
    """Every KPI hash (each granularity's buckets), with its fields."""
    return {key: await client.hgetall(key) async for key in client.scan_iter(f"{prefix}kpi:*")}


@pytest.mark.parametrize("forgotten", [("seen",), ("seen", "ent")], ids=["ids", "ids+states"])
async def test_a_replay_after_the_dedupe_retention_counts_nothing_twice(
    consumers, settings, redis_client, redis_url, bootstrap, forgotten
):
    """Issue 17 item 1: the event-id sets expire (SALESPULSE_DEDUPE_RETENTION_DAYS), and
    so do won and lost deals' and leads' states (SALESPULSE_ENTITY_RETENTION_DAYS); the
    same history replayed after that must count nothing again: no deal created or stage
    entered twice, no call, message, meeting, rating, money event or lead twice (every
    event that counts or joins an entity keeps a permanent mark)."""
    factory, metrics = consumers
    events = history(300) + additive_history(160)
    await produce(bootstrap, settings.events_topic, events)
    first = factory()
    await first.start()

    async def applied(n: int) -> bool:
        return metric_value(metrics, "salespulse_worker_events_applied_total") == n

    await eventually(lambda: applied(460), 30, "the history applied")
    await first.stop()
    once = stored(redis_url, settings)
    assert once == expected(events, settings)
    for name in (
        "deals_created", "leads_created", "calls", "messages_in", "messages_out", "meetings",
        "rating_count", "paid", "invoiced", "marketing_cost:ads",
    ):  # fmt: skip
        assert once.get(name), name
    assert sum(1 for name in once if name.startswith("stage_entries:")) == 4
    buckets = await every_bucket(redis_client, settings.redis_key_prefix)
    # What the retentions do, at once: every seen set (and entity state) gone.
    for family in forgotten:
        pattern = f"{settings.redis_key_prefix}{family}:*"
        gone = [key async for key in redis_client.scan_iter(pattern)]
        # every event here counts or joins an entity: marked, so no id set is left
        assert gone if family == "ent" else not gone, family
        if gone:
            await redis_client.delete(*gone)
    # The replay: the same events as new records, read by a worker with no cached state.
    await produce(bootstrap, settings.events_topic, events)
    second = factory()
    await second.start()
    config = settings.tenant_directory().get("acme")
    marked = sum(1 for e in events if event_components(e, config) or e.entity_id is not None)
    assert marked > 160

    async def replay_read() -> bool:
        names = ("events_applied", "duplicates_dropped")
        read = sum(metric_value(metrics, f"salespulse_worker_{n}_total") for n in names)
        return read == 2 * len(events)

    await eventually(replay_read, 30, "the replay read")
    assert stored(redis_url, settings) == once
    assert await every_bucket(redis_client, settings.redis_key_prefix) == buckets
    # every event that counts or joins an entity is dropped as marked, its ids forgotten
    assert metric_value(metrics, "salespulse_worker_duplicates_dropped_total") == marked
