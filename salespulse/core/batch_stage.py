"""The runtime our Kafka consumers share: fetch a batch, prepare it, write it, commit it.

Three stages run on it: the KPI fold and the conversation clock (streams/kpi_stage.py,
streams/sla_stage.py) over ``crm.events``, and the CRM enrichment (handlers/enrichment/
stage.py) over ``crm.raw``. It lives in the kernel because the ingest side and the worker
side both use it and may not import each other.

Why aiokafka ``getmany`` rather than a faust agent over ``app.stream``: faust's per-event
stream path with this catalogue runs ~1k events/s against tens of thousands for batch
folding (docs/adr/0001-faust-as-process-framework-batch-consumer-hot-path.md has the
measurement and how to repeat it). Faust still owns the process (worker lifecycle, web server,
app factory); a stage is a service the faust Worker starts beside the app.

At-least-once: a batch's offsets are committed only after the stage wrote it, so a
crash in between redelivers it, and each stage makes a redelivery harmless (Redis
watermarks and event-id sets; the same event ids derived again).
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from mode import Service

from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.topics import group_consumer_options

logger = logging.getLogger(__name__)

# How long a stop waits for the batch in hand (the rest is redelivered, harmlessly).
STOP_GRACE_S = 10.0
# A failed fetch (broker away, a rebalance) is tried again after this.
FETCH_RETRY_S = 1.0

Batch = dict[TopicPartition, list[ConsumerRecord]]
# partition → the next offset to read, as committed to Kafka
Commits = dict[TopicPartition, int]
R = TypeVar("R")  # a batch as prepare() leaves it for write()


class BatchStage(Service, Generic[R]):
    """Consumes one topic in batches until stopped: getmany → prepare → write → commit.

    A stage supplies ``prepare`` and ``write``, and may hook into a rebalance
    (``rebalance_listener``) and into each fetch (``claim_fetched``, ``check_fetched``).
    Errors a stage does not handle end the loop, as they always did; a failed fetch
    does not.
    """

    # names the stage in logs
    stage_name: ClassVar[str]
    # Prepare batch N+1 while batch N is written (one write in flight, writes and
    # commits in order): the KPI fold no longer waits for the Redis round trip
    # (`make bench`). The enrichment stage writes as it prepares, one batch at a time.
    overlap_writes: ClassVar[bool] = False

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        session_timeout_s: float,
        max_records: int,
        timeout_ms: int,
        consumer_options: Mapping[str, Any] | None = None,
        lag_metrics: PipelineMetrics | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._topic = topic
        self._group = group
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self._consumer_options: dict[str, Any] = {
            **group_consumer_options(bootstrap, group, session_timeout_s),
            **(consumer_options or {}),
        }
        self._lag_metrics = lag_metrics
        self._stop_grace_s = stop_grace_s
        # next offset to read per partition, as far as this consumer fetched (lag gauge)
        self._next_offsets: dict[TopicPartition, int] = {}
        self._kafka: AIOKafkaConsumer | None = None
        self._consuming: asyncio.Future[None] | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self.batches = 0  # written (their commit may have failed)

    # --- what a stage supplies --------------------------------------------------------

    @abstractmethod
    async def prepare(self, batch: Batch) -> R:
        """Turn a fetched, non-empty batch into what ``write`` takes."""

    @abstractmethod
    async def write(self, ready: R) -> Commits:
        """Write a prepared batch; return the offsets to commit. The commit may still
        fail (logged, not raised): the write must make a redelivery harmless."""

    def rebalance_listener(self) -> ConsumerRebalanceListener | None:
        """A listener to subscribe with (None: none). One that records lag calls
        ``forget_lag`` for each partition revoked."""
        return None

    def claim_fetched(self, batch: Batch) -> None:
        """Called right after each fetch, with no await between them (a listener's seek
        cannot fall in between); may take records out of ``batch``."""

    async def check_fetched(self, batch: Batch) -> None:
        """Called after each fetch, an empty one too, before ``prepare``."""

    # --- the runtime ------------------------------------------------------------------

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._kafka is None:
            raise RuntimeError(f"the {self.stage_name} stage is not started")
        return self._kafka

    async def on_start(self) -> None:
        # aiokafka objects bind to the running loop, so they are made here, not in __init__.
        self._kafka = AIOKafkaConsumer(**self._consumer_options)
        self._kafka.subscribe([self._topic], listener=self.rebalance_listener())
        # Joining the group takes seconds; the web server should not wait for it.
        self._consuming = self.add_future(self._consume_forever())

    async def on_stop(self) -> None:
        # The loop sees should_stop, finishes the batch being written and commits its
        # offsets while this consumer is still in the group: stopping the consumer first
        # made that last commit fail (UnknownMemberIdError) on every shutdown. Bounded,
        # as an outage holds a write until it is over.
        if self._consuming is not None:
            await asyncio.wait({self._consuming}, timeout=self._stop_grace_s)
        if self._kafka is not None:
            await self._kafka.stop()

    async def process(self, batch: Batch) -> None:
        """Prepare, write and commit one batch, start to end."""
        await self._write_and_commit(await self.prepare(batch))

    async def finish_write(self) -> None:
        """Wait for the batch being written and committed, if any."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight

    def forget_lag(self, tp: TopicPartition) -> None:
        """A partition went to another consumer: its lag is not ours to report."""
        self._next_offsets.pop(tp, None)
        if self._lag_metrics is not None:
            self._lag_metrics.forget_lag(self._group, tp.topic, tp.partition)

    async def _consume_forever(self) -> None:
        await self._consumer.start()
        try:
            while not self.should_stop:
                try:
                    batch: Batch = await self._consumer.getmany(
                        timeout_ms=self._timeout_ms, max_records=self._max_records
                    )
                except KafkaError as exc:
                    logger.warning("%s stage: fetch failed, retrying: %r", self.stage_name, exc)
                    await asyncio.sleep(FETCH_RETRY_S)
                    continue
                self.claim_fetched(batch)
                self._record_lag(batch)
                await self.check_fetched(batch)
                if not batch:
                    await self.finish_write()  # commit the last batch of a burst now
                    continue
                ready = await self.prepare(batch)
                await self.finish_write()
                self._in_flight = asyncio.create_task(self._write_and_commit(ready))
                if not self.overlap_writes:
                    await self.finish_write()
        finally:
            await self.finish_write()

    async def _write_and_commit(self, ready: R) -> None:
        commits = await self.write(ready)
        self.batches += 1
        try:
            await self._consumer.commit(commits)
        except KafkaError as exc:
            # Safe: the stage's write makes a redelivery harmless (see ``write``).
            logger.warning(
                "%s stage: offset commit failed after the batch was written: %r",
                self.stage_name,
                exc,
            )

    def _record_lag(self, batch: Batch) -> None:
        if self._lag_metrics is None:
            return
        for tp, records in batch.items():
            if records:
                self._next_offsets[tp] = records[-1].offset + 1
        for tp, next_offset in self._next_offsets.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                self._lag_metrics.record_lag(
                    self._group, tp.topic, tp.partition, max(0, high - next_offset)
                )
