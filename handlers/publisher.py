"""The Kafka edge of the ingest: publish canonical events and dead letters, acks=all.

With a spool (handlers/spool.py), what Kafka does not acknowledge in time is kept on disk
and sent on by a drainer task when Kafka is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from handlers.spool import DiskSpool, SpoolFullError, SpoolRecord
from salespulse.core.errors import BrokerUnavailableError
from salespulse.core.events import CrmEvent, encode_event
from salespulse.core.pipeline_metrics import PipelineMetrics

logger = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]  # key, value, headers
DRAIN_BATCH = 500
DRAIN_BACKOFF_MAX_S = 30.0


class KafkaPublisher:
    """Answers only after the broker acknowledged every record (acks=all) or, with a
    spool (``use_spool``), after the records it did not take in time are safe on disk.

    The producer is started lazily and restarted after a failure, so an ingest that came
    up while Kafka was down starts serving as soon as Kafka is back.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        events_topic: str,
        dlq_topic: str,
        timeout_s: float,
        spool_after_s: float = 1.0,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._events_topic = events_topic
        self._dlq_topic = dlq_topic
        self._timeout_s = timeout_s
        self._send_timeout_s = timeout_s
        self._spool_after_s = spool_after_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._spool: DiskSpool | None = None
        self._metrics = metrics
        self._spooled = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._resetting: asyncio.Task[None] | None = None
        self._topics_ready: asyncio.Event | None = None

    def use_spool(self, spool: DiskSpool, *, topics_ready: asyncio.Event | None = None) -> None:
        """From now on keep what Kafka does not take in time in ``spool``, and send what
        an earlier run left there (call with the loop running). Until ``topics_ready`` is
        set, everything is spooled and nothing drained: an ingest that started while Kafka
        was down must not have Kafka auto-create its topics with the wrong partitions."""
        self._spool = spool
        self._topics_ready = topics_ready
        # A sender waits at most this long for Kafka (amoCRM gives up after 2 s); what
        # Kafka then still acknowledges is spooled too: a duplicate, dropped downstream by
        # event id.
        self._send_timeout_s = min(self._timeout_s, self._spool_after_s)
        if self._metrics is not None:
            self._metrics.spool_bytes.set_function(lambda: spool.pending_bytes)
        if spool.pending:
            self._wake_drainer()

    async def publish_events(
        self, events: Sequence[CrmEvent], *, patient: bool = False
    ) -> dict[str, int]:
        """``patient`` (a backfill): wait the full produce timeout for the broker, not
        SALESPULSE_SPOOL_AFTER_S. A replay's batches then wait for their acknowledgements
        (that throttles the sender to what the broker takes) instead of going to the
        spool whenever a busy broker is slower than the spool's second, after which every
        later batch queued behind the spool too (742,500 of 1,000,000 records once)."""
        records = [(event.partition_key, encode_event(event), None) for event in events]
        return await self._send_all(self._events_topic, records, patient=patient)

    async def publish_dead_letter(
        self,
        raw: bytes,
        *,
        reason: str,
        problems: list[dict[str, object]],
        origin: str,
        key: bytes | None = None,
    ) -> None:
        """The raw payload as the value, byte for byte; why it was rejected in headers."""
        headers = [
            ("reason", reason.encode()),
            ("problems", msgspec.json.encode(problems)),
            ("origin", origin.encode()),
            ("rejected_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._send_all(self._dlq_topic, [(key, raw, headers)])

    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """(topic, key, value) records, on one or more topics, all acknowledged before it
        returns: a CRM webhook's canonical events and its enrichment requests."""
        by_topic: dict[str, list[Record]] = {}
        for topic, key, value in records:
            by_topic.setdefault(topic, []).append((key, value, None))
        for topic, topic_records in by_topic.items():
            await self._send_all(topic, topic_records)

    async def stop(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
            self._drainer = None
        if self._spool is not None:
            if self._spool.pending:
                logger.warning(
                    "stopping with %d bytes spooled in %s: they are sent at the next start",
                    self._spool.pending_bytes,
                    self._spool.directory,
                )
            self._spool.close()
            self._spool = None
        if self._resetting is not None:
            await self._resetting
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def _send_all(
        self, topic: str, records: Sequence[Record], *, patient: bool = False
    ) -> dict[str, int]:
        """Per ``topic:partition`` the offset after the last record sent (empty: spooled)."""
        if self._spool is not None and (self._spool.pending or not self._topics_exist()):
            # Behind what waits already: one deal's events keep their order.
            await self._to_spool(topic, records)
            return {}
        try:
            wait_s = self._timeout_s if patient else self._send_timeout_s
            return await self._send_to_broker(topic, records, wait_s)
        except BrokerUnavailableError:
            if self._spool is None:
                raise
            await self._to_spool(topic, records)
            return {}

    async def _send_to_broker(
        self, topic: str, records: Sequence[Record], wait_s: float
    ) -> dict[str, int]:
        try:
            async with asyncio.timeout(wait_s):
                producer = await self._ensure_producer()
                pending = [
                    await producer.send(topic, value=value, key=key, headers=headers)
                    for key, value, headers in records
                ]
                # One record (a webhook's event) needs no gather: its task is a request's
                # worth of CPU at thousands of requests a second.
                sent = [await pending[0]] if len(pending) == 1 else await asyncio.gather(*pending)
        except (KafkaError, TimeoutError, OSError) as exc:
            logger.warning(
                "broker did not acknowledge %d record(s) on %s: %r", len(records), topic, exc
            )
            if self._spool is None:
                await self._reset()
            elif self._resetting is None or self._resetting.done():
                # Stopping a producer waits for its undelivered batches to expire: with a
                # spool the sender gets its answer first (amoCRM waits 2 s at most).
                self._resetting = asyncio.get_running_loop().create_task(self._reset())
            raise BrokerUnavailableError(f"broker did not acknowledge: {exc!r}") from exc
        ends: dict[str, int] = {}
        for meta in sent:
            name = f"{meta.topic}:{meta.partition}"
            ends[name] = max(ends.get(name, 0), meta.offset + 1)
        return ends

    async def _to_spool(self, topic: str, records: Sequence[Record]) -> None:
        assert self._spool is not None
        try:
            await self._spool.append([(topic, *record) for record in records])
        except (SpoolFullError, OSError) as exc:
            logger.warning("cannot spool %d record(s): %s", len(records), exc)
            raise BrokerUnavailableError(f"broker down and spool refused: {exc}") from exc
        if self._metrics is not None:
            self._metrics.spooled_records.inc(len(records))
        self._wake_drainer()

    def _wake_drainer(self) -> None:
        self._spooled.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain_forever())

    def _topics_exist(self) -> bool:
        return self._topics_ready is None or self._topics_ready.is_set()

    async def _drain_forever(self) -> None:
        delay = 1.0
        if self._topics_ready is not None:
            await self._topics_ready.wait()
        while self._spool is not None:
            await self._spooled.wait()
            spool = self._spool
            while spool.pending:
                records, offset = spool.read(DRAIN_BATCH)
                try:
                    await self._send_in_order(records)
                except BrokerUnavailableError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, DRAIN_BACKOFF_MAX_S)
                    continue
                spool.commit(offset)
                delay = 1.0
                if self._metrics is not None:
                    self._metrics.spool_drained_records.inc(len(records))
            logger.info("spool drained: the broker has every spooled record")
            self._spooled.clear()  # no await since `pending` turned False

    async def _send_in_order(self, records: list[SpoolRecord]) -> None:
        """Consecutive records of one topic go in one send, in spool order."""
        start = 0
        while start < len(records):
            topic = records[start][0]
            stop = start
            while stop < len(records) and records[stop][0] == topic:
                stop += 1
            chunk = [(key, value, headers) for _, key, value, headers in records[start:stop]]
            await self._send_to_broker(topic, chunk, self._timeout_s)
            start = stop

    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    linger_ms=2,
                    request_timeout_ms=int(self._timeout_s * 1000),
                    # Room for a dead letter of a full-size rejected body plus headers; the
                    # dead-letter topic is created with a matching max.message.bytes.
                    max_request_size=4 * 1024 * 1024,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _reset(self) -> None:
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                try:
                    await producer.stop()
                except (KafkaError, OSError) as exc:
                    logger.debug("ignoring error while dropping a broken producer: %r", exc)
