"""What the KPI and SLA stages share: ``crm.events`` batches into the Redis store.

Each stage is its own consumer group over the same topic (streams/kpi_stage.py,
streams/sla_stage.py) on the batch runtime (salespulse/core/batch_stage.py). Here:
decoding, the per-partition watermarks Redis keeps (a batch at or below them is
skipped; on assignment each partition resumes after its watermark, streams/resume.py),
the store guard (streams/store_guard.py), dead letters, and isolating the event a batch
fails on (streams/poison.py).

At-least-once delivery + an idempotent sink = every event counted exactly once:
offsets are committed to Kafka only after Redis accepted the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from salespulse.core.batch_stage import Batch, BatchStage, Commits
from salespulse.core.events import CrmEvent, decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.retry import retry
from streams.poison import apply_isolating
from streams.resume import ResumedPartitions, SeekPastApplied
from streams.store_guard import StoreGuard, tp_name

logger = logging.getLogger(__name__)

P = TypeVar("P")
# (record, reason, problem), as it is dead-lettered
DeadLetter = tuple[ConsumerRecord, str, str]


class AppliedBatch(Protocol):
    @property
    def events(self) -> int: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def received_at(self) -> list[float]: ...


class BatchApplier(Protocol[P]):
    """Two phases, so the next batch is folded while this one is written (KpiApplier)."""

    async def prepare(self, events: Sequence[CrmEvent]) -> P: ...

    async def commit(self, prepared: P, offsets: dict[str, int]) -> AppliedBatch: ...


class WatermarkStore(Protocol):
    async def watermarks(self, partitions: list[str]) -> dict[str, int]: ...

    async def finish_journals(self) -> int: ...


@dataclass(frozen=True)
class Ready(Generic[P]):
    """A batch folded and waiting for its turn to be written."""

    prepared: P | None  # None: the fold failed on some event; the write isolates it
    offsets: dict[str, int]
    commits: Commits
    # each event with its record, to dead-letter the one the fold or store cannot take
    items: list[tuple[ConsumerRecord, CrmEvent]]


class StoreStage(BatchStage[Ready[P]]):
    """Consumes in batches until stopped; survives Redis and broker outages by waiting.

    A stage says what it does with a too-late event and how it counts what it applied.
    """

    overlap_writes = True

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
        guard: StoreGuard | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            topic=topic,
            group=group,
            session_timeout_s=session_timeout_s,
            max_records=max_records,
            timeout_ms=timeout_ms,
            consumer_options={
                "max_partition_fetch_bytes": 4 * 1024 * 1024,
                # The broker holds a fetch until it has data or this passes; aiokafka's
                # default (500 ms) made p50 event-to-KPI latency ~130 ms on an idle
                # stream (make bench).
                "fetch_max_wait_ms": timeout_ms,
            },
            lag_metrics=metrics,
            **kwargs,
        )
        self._guard = guard
        self._sink = sink
        self._applier = applier
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._lateness = timedelta(seconds=lateness_s)
        self.watermarks: dict[TopicPartition, int] = {}
        self._resumed = ResumedPartitions()

    @property
    def applied_batches(self) -> int:
        return self.batches

    # --- what the KPI and SLA stages differ in ---------------------------------------

    @abstractmethod
    async def too_late(self, late: list[tuple[ConsumerRecord, CrmEvent]]) -> list[DeadLetter]:
        """A batch's events received past the lateness window: their dead letters (none:
        skipped)."""

    @abstractmethod
    def count_applied(self, folds: list[AppliedBatch], applied_at: float) -> None:
        """Count one written batch (its parts, if it was isolated) in the metrics."""

    # --- rebalances -------------------------------------------------------------------

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return SeekPastApplied(self.load_watermarks, self.forget)

    def forget(self, tp: TopicPartition) -> None:
        """A partition went to another consumer: its watermark and lag are not ours."""
        self.watermarks.pop(tp, None)
        self._resumed.forget(tp)
        self.forget_lag(tp)

    async def load_watermarks(self, assigned: set[TopicPartition]) -> None:
        try:
            await self._seek_past_applied(assigned)
        finally:
            # Even after an unexpected failure: what it left unskipped the event-id sets
            # drop, whereas a partition never resumed would stall for good.
            self._resumed.resume(self._consumer, assigned)

    async def _seek_past_applied(self, assigned: set[TopicPartition]) -> None:
        by_name = {tp_name(tp): tp for tp in assigned}
        stored = await retry("read watermarks", lambda: self._sink.watermarks(list(by_name)))
        if self._guard is not None:
            guard = self._guard
            await retry(
                "check store",
                lambda: guard.on_assignment(self._consumer, by_name, stored),
            )
        for name, offset in stored.items():
            tp = by_name[name]
            self.watermarks[tp] = offset
            self._consumer.seek(tp, offset + 1)
            logger.info("partition %s: resuming after offset %d already in Redis", name, offset)
        # the hash writes of batches whose worker stopped between its script calls
        await retry("finish journals", self._sink.finish_journals)

    # --- each fetch -------------------------------------------------------------------

    def claim_fetched(self, batch: Batch) -> None:
        self._resumed.put_back_unresumed(self._consumer, batch)

    async def check_fetched(self, batch: Batch) -> None:
        if self._guard is None:
            return
        lost = self._guard.lost_logs(self._consumer, self.watermarks)
        if lost:
            await self.finish_write()  # its marks belong to the old log
            await self._reread_lost(self._guard, lost, batch)
        await self._guard.check_store(self.watermarks)

    async def _reread_lost(
        self, guard: StoreGuard, lost: list[TopicPartition], batch: Batch
    ) -> None:
        """A log lost under a running consumer: forget its watermark, read it from the start
        (this batch's records of it are fetched again)."""
        for tp in lost:
            watermark = self.watermarks.pop(tp)
            high = self._consumer.highwater(tp) or 0
            await retry(
                "drop watermark",
                partial(guard.forget_lost_log, tp_name(tp), watermark, high),
            )
            batch.pop(tp, None)
            await self._consumer.seek_to_beginning(tp)

    # --- prepare and write ------------------------------------------------------------

    async def prepare(self, batch: Batch) -> Ready[P]:
        items: list[tuple[ConsumerRecord, CrmEvent]] = []
        dead: list[DeadLetter] = []
        offsets: dict[str, int] = {}
        commits: Commits = {}
        late: list[tuple[ConsumerRecord, CrmEvent]] = []
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
                    late.append((record, event))
                    continue
                items.append((record, event))
            last = records[-1].offset
            offsets[tp_name(tp)] = last
            commits[tp] = last + 1
        if late:
            dead += await self.too_late(late)
        if dead:
            await self._dead_letter_all(dead)
        events = [event for _, event in items]
        try:
            prepared = await retry("prepare batch", partial(self._applier.prepare, events))
        except Exception as exc:  # noqa: BLE001 - retriable ones were retried: poison
            logger.warning("%s fold failed, isolating the event(s): %r", self.stage_name, exc)
            return Ready(None, offsets, commits, items)
        return Ready(prepared, offsets, commits, items)

    async def write(self, ready: Ready[P]) -> Commits:
        folds: list[AppliedBatch]
        if ready.prepared is None:
            folds = await self._isolate(ready)
        else:
            try:
                commit = partial(self._applier.commit, ready.prepared, ready.offsets)
                folds = [await retry("apply batch", commit)]
            except Exception as exc:  # noqa: BLE001 - as in prepare; nothing was written
                logger.warning("%s apply failed, isolating the event(s): %r", self.stage_name, exc)
                folds = await self._isolate(ready)
        applied_at = time.time()
        for tp, next_offset in ready.commits.items():
            # Never lowered (like Redis's): records of a shorter, new log skipped below the
            # watermark must leave it where it is, or the lost log goes unnoticed.
            self.watermarks[tp] = max(self.watermarks.get(tp, -1), next_offset - 1)
        self.count_applied(folds, applied_at)
        # Safe to commit even if that fails: Redis holds the watermark, whoever owns the
        # partition next skips what it applied.
        return ready.commits

    async def _isolate(self, ready: Ready[P]) -> list[AppliedBatch]:
        """Apply a failed batch by parts (streams/poison.py), dead-letter its poison.

        Parts advance no watermark (a crash midway redelivers the batch: the store drops
        applied ids, SLA joins repeat harmlessly); a last, empty part takes the offsets.
        """
        await self._apply_part([], {})  # fails too: no event is to blame, stop as before
        applied, poison = await apply_isolating(
            ready.items, partial(self._apply_part, offsets={}), self.stage_name
        )
        if poison:
            await self._dead_letter_all(poison)
        applied.append(await self._apply_part([], ready.offsets))
        return applied

    async def _apply_part(self, events: list[CrmEvent], offsets: dict[str, int]) -> AppliedBatch:
        prepared = await retry("prepare batch", partial(self._applier.prepare, events))
        return await retry("apply batch", partial(self._applier.commit, prepared, offsets))

    def _too_late(self, event: CrmEvent) -> bool:
        """Measured from receipt, not from now: a replay of old history is not late."""
        received = event.received_at
        return received is not None and received - event.occurred_at > self._lateness

    async def _dead_letter_all(self, dead: list[DeadLetter]) -> None:
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
        await retry(
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
