"""The Kafka edge of the ingest: publish canonical events and dead letters, acks=all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from salespulse.errors import BrokerUnavailableError
from salespulse.events import CrmEvent, encode_event

logger = logging.getLogger(__name__)


class EventPublisher(Protocol):
    async def publish_events(self, events: Sequence[CrmEvent]) -> None: ...

    async def publish_dead_letter(
        self,
        raw: bytes,
        *,
        reason: str,
        problems: list[dict[str, object]],
        origin: str,
        key: bytes | None = None,
    ) -> None: ...


class KafkaPublisher:
    """Answers only after the broker acknowledged every record (acks=all).

    The producer is started lazily and restarted after a failure, so an ingest that came
    up while Kafka was down starts serving as soon as Kafka is back.
    """

    def __init__(
        self, bootstrap: str, *, events_topic: str, dlq_topic: str, timeout_s: float
    ) -> None:
        self._bootstrap = bootstrap
        self._events_topic = events_topic
        self._dlq_topic = dlq_topic
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def publish_events(self, events: Sequence[CrmEvent]) -> None:
        records = [(event.partition_key, encode_event(event), None) for event in events]
        await self._send_all(self._events_topic, records)

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
        by_topic: dict[str, list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]]] = {}
        for topic, key, value in records:
            by_topic.setdefault(topic, []).append((key, value, None))
        for topic, topic_records in by_topic.items():
            await self._send_all(topic, topic_records)

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def _send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]],
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = await self._ensure_producer()
                pending = [
                    await producer.send(topic, value=value, key=key, headers=headers)
                    for key, value, headers in records
                ]
                await asyncio.gather(*pending)
        except (KafkaError, TimeoutError, OSError) as exc:
            logger.warning(
                "broker did not acknowledge %d record(s) on %s: %r", len(records), topic, exc
            )
            await self._reset()
            raise BrokerUnavailableError(f"broker did not acknowledge: {exc!r}") from exc

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
