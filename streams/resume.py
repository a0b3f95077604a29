"""Resuming a newly assigned partition after what Redis already holds.

On assignment the rebalance listener reads each partition's watermark (the last offset
applied to Redis, perhaps never committed to Kafka) and seeks past it. aiokafka starts
fetching a partition as soon as it is assigned, while that listener still awaits Redis
and the broker: records fetched meanwhile would reach the fold before their watermark
is known (counted twice but for the event marks and id sets), and the listener's later seek
would not take them back. So records of a partition not yet resumed are put back, and
the partition paused (not fetched over and over) until the listener is done with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

logger = logging.getLogger(__name__)


class SeekPastApplied(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """On assignment, skip what Redis already holds (applied but not yet committed)."""

    def __init__(
        self,
        load_watermarks: Callable[[set[TopicPartition]], Awaitable[None]],
        forget: Callable[[TopicPartition], None],
    ) -> None:
        self._load_watermarks = load_watermarks
        self._forget = forget

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._forget(tp)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._load_watermarks(assigned)


class ResumedPartitions:
    """The assigned partitions whose watermarks are read: only their records are folded."""

    def __init__(self) -> None:
        self._resumed: set[TopicPartition] = set()

    def resume(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Call right after the listener's seeks, with no await between them."""
        self._resumed.update(partitions)
        # (only those still assigned: resume() raises for others, e.g. while stopping)
        consumer.resume(*(partitions & consumer.assignment()))

    def forget(self, tp: TopicPartition) -> None:
        self._resumed.discard(tp)

    def put_back_unresumed(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """Take records of partitions not yet resumed out of ``batch``, seek back to the
        first of them and pause: fetched again, once resumed, from wherever the
        listener's seek leaves the partition. Call right after the fetch: no await
        between the fetch and this, so the listener's seek cannot fall between them."""
        for tp in [tp for tp in batch if tp not in self._resumed]:
            records: list[ConsumerRecord] = batch.pop(tp)
            if records:
                consumer.seek(tp, records[0].offset)
                consumer.pause(tp)
                logger.debug(
                    "partition %s:%d: %d record(s) fetched before its watermark was read, "
                    "to be fetched again",
                    tp.topic,
                    tp.partition,
                    len(records),
                )
