"""The KPI agent: consume ``crm.events`` in batches, fold, apply to Redis, then commit.

Why aiokafka ``getmany`` here rather than a faust agent over ``app.stream``: measured on
this stack (design/STACK-NOTES.md) faust's per-event stream path costs ~120-250 µs per
event, a ceiling of 4,000-8,300 events/s, while ``getmany`` + decode + fold + one Redis
round trip per batch costs ~3 µs. Faust still owns the process (worker lifecycle, web
server, app factory); this service is started by the faust Worker beside the app.

At-least-once delivery + an idempotent sink = every event counted exactly once:
offsets are committed to Kafka only after Redis accepted the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from salespulse.core.errors import BrokerUnavailableError, KpiStoreError
from salespulse.core.events import CrmEvent, decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.topics import group_consumer_options
from streams.poison import apply_isolating
from streams.resume import ResumedPartitions, SeekPastApplied
from streams.store_guard import StoreGuard, tp_name

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
# How long a stop waits for the batch being written (the rest is redelivered: Redis's
# watermark and the event-id sets make that harmless).
STOP_GRACE_S = 10.0

Batch = dict[TopicPartition, list[ConsumerRecord]]
T = TypeVar("T")
P = TypeVar("P")
# kpi: the KPI fold (it dead-letters too-late events and counts applied events);
# sla: the conversation clock, a second consumer group over the same topic.
Stage = Literal["kpi", "sla"]


class AppliedBatch(Protocol):
    events: int
    duplicates: int
    received_at: list[float]


class BatchApplier(Protocol[P]):
    """Two phases, so the next batch is folded while this one is written (KpiApplier)."""

    async def prepare(self, events: Sequence[CrmEvent]) -> P: ...

    async def commit(self, prepared: P, offsets: dict[str, int]) -> AppliedBatch: ...


class WatermarkStore(Protocol):
    async def watermarks(self, partitions: list[str]) -> dict[str, int]: ...


@dataclass(frozen=True)
class _Ready(Generic[P]):
    """A batch folded and waiting for its turn to be written."""

    prepared: P | None  # None: the fold failed on some event; the write isolates it
    offsets: dict[str, int]
    commits: dict[TopicPartition, int]
    # each event with its record, to dead-letter the one the fold or store cannot take
    items: list[tuple[ConsumerRecord, CrmEvent]]


class KpiBatchConsumer(Service, Generic[P]):
    """Consumes in batches until stopped; survives Redis and broker outages by waiting."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        sink: WatermarkStore,
        applier: BatchApplier[P],
        dead_letters: EventPublisher,
        metrics: PipelineMetrics,
        lateness_s: int,
        max_records: int,
        timeout_ms: int,
        session_timeout_s: float,
        stage: Stage = "kpi",
        guard: StoreGuard | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._stage = stage
        self._guard = guard
        self._group = group
        # next offset to read per partition, as far as this consumer fetched (lag gauge)
        self._next_offsets: dict[TopicPartition, int] = {}
        self._topic = topic
        self._sink = sink
        self._applier = applier
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._lateness = timedelta(seconds=lateness_s)
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self.watermarks: dict[TopicPartition, int] = {}
        self._resumed = ResumedPartitions()
        self.applied_batches = 0
        self._consumer_options: dict[str, Any] = {
            **group_consumer_options(bootstrap, group, session_timeout_s),
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
            # The broker holds a fetch until it has data or this passes; aiokafka's default
            # (500 ms) made p50 event-to-KPI latency ~130 ms on an idle stream (make bench).
            "fetch_max_wait_ms": timeout_ms,
        }
        self._kafka: AIOKafkaConsumer | None = None
        self._consuming: asyncio.Future[None] | None = None

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._kafka is None:
            raise RuntimeError("KpiBatchConsumer is not started")
        return self._kafka

    async def on_start(self) -> None:
        # aiokafka objects bind to the running loop, so they are made here, not in __init__.
        self._kafka = AIOKafkaConsumer(**self._consumer_options)
        listener = SeekPastApplied(self.load_watermarks, self.forget)
        self._kafka.subscribe([self._topic], listener=listener)
        # Joining the group takes seconds; the web server should not wait for it.
        self._consuming = self.add_future(self._consume_forever())

    async def on_stop(self) -> None:
        # The loop sees should_stop, finishes the batch being written and commits its
        # offsets while this consumer is still in the group: stopping the consumer first
        # made that last commit fail (UnknownMemberIdError) on every shutdown. Bounded,
        # as a Redis outage holds a write until Redis is back.
        if self._consuming is not None:
            await asyncio.wait({self._consuming}, timeout=STOP_GRACE_S)
        if self._kafka is not None:
            await self._kafka.stop()

    def forget(self, tp: TopicPartition) -> None:
        """A partition went to another consumer: its watermark and lag are not ours."""
        self.watermarks.pop(tp, None)
        self._resumed.forget(tp)
        self._next_offsets.pop(tp, None)
        self._metrics.forget_lag(self._group, tp.topic, tp.partition)

    def _record_lag(self, batch: Batch) -> None:
        for tp, records in batch.items():
            if records:
                self._next_offsets[tp] = records[-1].offset + 1
        for tp, next_offset in self._next_offsets.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                self._metrics.record_lag(
                    self._group, tp.topic, tp.partition, max(0, high - next_offset)
                )

    async def load_watermarks(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._seek_past_applied(assigned)
        finally:
            # Even after an unexpected failure: what it left unskipped the event-id sets
            # drop, whereas a partition never resumed would stall for good.
            self._resumed.resume(self._consumer, assigned)

    async def _seek_past_applied(self, assigned: set[TopicPartition]) -> None:
        by_name = {tp_name(tp): tp for tp in assigned}
        stored = await _retry("read watermarks", lambda: self._sink.watermarks(list(by_name)))
        if self._guard is not None:
            guard = self._guard
            await _retry(
                "check store", lambda: guard.on_assignment(self._consumer, by_name, stored)
            )
        for name, offset in stored.items():
            tp = by_name[name]
            self.watermarks[tp] = offset
            self._consumer.seek(tp, offset + 1)
            logger.info("partition %s: resuming after offset %d already in Redis", name, offset)

    async def _reread_lost(
        self, guard: StoreGuard, lost: list[TopicPartition], batch: Batch
    ) -> None:
        """A log lost under a running consumer: forget its watermark, read it from the start
        (this batch's records of it are fetched again)."""
        for tp in lost:
            watermark = self.watermarks.pop(tp)
            high = self._consumer.highwater(tp) or 0
            await _retry(
                "drop watermark", partial(guard.forget_lost_log, tp_name(tp), watermark, high)
            )
            batch.pop(tp, None)
            await self._consumer.seek_to_beginning(tp)

    async def _consume_forever(self) -> None:
        """Fetch and fold batch N+1 while batch N is being written to Redis.

        Writes and commits stay in order (one write in flight); folding on the states
        batch N will leave is the applier's job (streams/applier.py explains why it is
        safe). Measured by `make bench`: the Redis write no longer stalls the fold.
        """
        await self._consumer.start()
        in_flight: asyncio.Task[None] | None = None
        try:
            while not self.should_stop:
                try:
                    batch: Batch = await self._consumer.getmany(
                        timeout_ms=self._timeout_ms, max_records=self._max_records
                    )
                except KafkaError as exc:
                    logger.warning("fetch failed, retrying: %r", exc)
                    await asyncio.sleep(1.0)
                    continue
                self._resumed.put_back_unresumed(self._consumer, batch)
                self._record_lag(batch)
                if self._guard is not None:
                    lost = self._guard.lost_logs(self._consumer, self.watermarks)
                    if lost:
                        if in_flight is not None:  # its marks belong to the old log
                            await in_flight
                            in_flight = None
                        await self._reread_lost(self._guard, lost, batch)
                    await self._guard.check_store(self.watermarks)
                if not batch:
                    if in_flight is not None:
                        await in_flight
                        in_flight = None
                    continue
                ready = await self._prepare(batch)
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.create_task(self._write(ready))
        finally:
            if in_flight is not None:
                await in_flight

    async def process(self, batch: Batch) -> None:
        """Decode, fold, apply, commit one batch, start to end."""
        await self._write(await self._prepare(batch))

    async def _prepare(self, batch: Batch) -> _Ready[P]:
        items: list[tuple[ConsumerRecord, CrmEvent]] = []
        dead: list[tuple[ConsumerRecord, str, str]] = []
        offsets: dict[str, int] = {}
        commits: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            watermark = self.watermarks.get(tp, -1)
            for record in records:
                if record.offset <= watermark:
                    continue
                if record.value is None:  # a tombstone: nothing to count, keep it visible
                    dead.append((record, "undecodable_record", "record has no value"))
                    continue
                try:
                    event = decode_event(record.value)
                except msgspec.DecodeError as exc:
                    dead.append((record, "undecodable_record", str(exc)))
                    continue
                if self._too_late(event):
                    if self._stage == "sla":
                        continue  # the KPI stage dead-letters (and counts) it, once
                    self._metrics.events_too_late.inc()
                    late = f"received more than {self._lateness.days} days after it happened"
                    dead.append((record, "too_late", late))
                    continue
                items.append((record, event))
            last = records[-1].offset
            offsets[tp_name(tp)] = last
            commits[tp] = last + 1
        if dead:
            await self._dead_letter_all(dead)
        events = [event for _, event in items]
        try:
            prepared = await _retry("prepare batch", partial(self._applier.prepare, events))
        except Exception as exc:  # noqa: BLE001 - retriable ones were retried: poison
            logger.warning("%s fold failed, isolating the event(s): %r", self._stage, exc)
            return _Ready(None, offsets, commits, items)
        return _Ready(prepared, offsets, commits, items)

    async def _write(self, ready: _Ready[P]) -> None:
        folds: list[AppliedBatch]
        if ready.prepared is None:
            folds = await self._isolate(ready)
        else:
            try:
                commit = partial(self._applier.commit, ready.prepared, ready.offsets)
                folds = [await _retry("apply batch", commit)]
            except Exception as exc:  # noqa: BLE001 - as in _prepare; nothing was written
                logger.warning("%s apply failed, isolating the event(s): %r", self._stage, exc)
                folds = await self._isolate(ready)
        applied_at = time.time()
        for tp, next_offset in ready.commits.items():
            # Never lowered (like Redis's): records of a shorter, new log skipped below the
            # watermark must leave it where it is, or the lost log goes unnoticed.
            self.watermarks[tp] = max(self.watermarks.get(tp, -1), next_offset - 1)
        self.applied_batches += 1
        if self._stage == "kpi":
            self._metrics.batches_applied.inc()
        for fold in folds:
            if self._stage == "kpi":
                self._metrics.events_applied.inc(fold.events)
                self._metrics.duplicates_dropped.inc(fold.duplicates)
                self._metrics.observe_latencies(fold.received_at, applied_at)
            else:
                self._metrics.sla_batch_applied(fold.events)
        try:
            await self._consumer.commit(ready.commits)
        except KafkaError as exc:
            # Safe: Redis holds the watermark, whoever owns the partition next skips it.
            logger.warning("offset commit failed after Redis applied the batch: %r", exc)

    async def _isolate(self, ready: _Ready[P]) -> list[AppliedBatch]:
        """Apply a failed batch by parts (streams/poison.py), dead-letter its poison.

        Parts advance no watermark (a crash midway redelivers the batch: the store drops
        applied ids, SLA joins repeat harmlessly); a last, empty part takes the offsets.
        """
        await self._apply_part([], {})  # fails too: no event is to blame, stop as before
        applied, poison = await apply_isolating(
            ready.items, partial(self._apply_part, offsets={}), self._stage
        )
        if poison:
            await self._dead_letter_all(poison)
        applied.append(await self._apply_part([], ready.offsets))
        return applied

    async def _apply_part(self, events: list[CrmEvent], offsets: dict[str, int]) -> AppliedBatch:
        prepared = await _retry("prepare batch", partial(self._applier.prepare, events))
        return await _retry("apply batch", partial(self._applier.commit, prepared, offsets))

    def _too_late(self, event: CrmEvent) -> bool:
        """Measured from receipt, not from now: a replay of old history is not late."""
        received = event.received_at
        return received is not None and received - event.occurred_at > self._lateness

    async def _dead_letter_all(self, dead: list[tuple[ConsumerRecord, str, str]]) -> None:
        """Publish a batch's dead letters together; one log line per reason, not per record."""
        by_reason: dict[str, list[ConsumerRecord]] = {}
        for record, reason, _ in dead:
            by_reason.setdefault(reason, []).append(record)
        for reason, records in by_reason.items():
            first = records[0]
            logger.warning(
                "dead-lettering %d record(s) (%s), first topic=%s partition=%d offset=%d",
                len(records),
                reason,
                first.topic,
                first.partition,
                first.offset,
            )
        await asyncio.gather(*(self._dead_letter(*item) for item in dead))

    async def _dead_letter(self, record: ConsumerRecord, reason: str, error: str) -> None:
        problems: list[dict[str, object]] = [
            {
                "problem": error,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            }
        ]
        await _retry(
            "dead-letter record",
            lambda: self._dead_letters.publish_dead_letter(
                record.value or b"",
                reason=reason,
                problems=problems,
                origin=f"{record.topic}/{record.partition}",
                key=record.key,
            ),
        )
        self._metrics.dead_letters.labels(reason=reason).inc()


async def _retry(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry retriable store/broker errors with capped backoff; the batch waits, never skips."""
    failures = 0
    while True:
        try:
            result = await attempt()
        except (KpiStoreError, BrokerUnavailableError) as exc:
            delay = RETRY_BACKOFF_S[min(failures, len(RETRY_BACKOFF_S) - 1)]
            failures += 1
            logger.warning(
                "%s failed (attempt %d), retrying in %.1fs: %s", what, failures, delay, exc
            )
            await asyncio.sleep(delay)
        else:
            return result
