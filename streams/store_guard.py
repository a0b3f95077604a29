"""Notice when the broker or the store lost what the other still remembers.

Each consumer stage keeps two records of its progress: Kafka's committed offsets and
Redis's per-partition watermarks (streams/redis_sink.py). Either side can be lost alone:

* **The broker lost its log** (an in-memory broker restarted empty, a migration, a topic
  deleted and recreated): Redis's watermarks now point beyond the topic's end, and the
  consumer would seek past, or drop as already applied, every new record up to them.
  A watermark at or beyond the high-water mark fetches report (after an assignment or
  later; for LOST_LOG_CONFIRM_S) cannot belong to this log: it is dropped in Redis
  (compare-and-delete, so a newer owner's mark is never undone) and the partition is
  read from its earliest offset. Logged as an error, counted in
  ``salespulse_worker_offset_resets_total``; alert BrokerDataLoss. Not detectable: a new
  log that already grew past the old watermark before a worker looked (its first records
  are then skipped); the RUNBOOK's BrokerDataLoss section covers that case.
* **The store lost its keys** (FLUSHALL, Redis restarted empty without persistence): on
  assignment, a partition has committed offsets but Redis holds no watermark for it;
  while consuming, the store's epoch key (``{prefix}store_epoch``, a random id the first
  worker creates and no batch writes) vanished or changed under a worker that applied.
  Counting goes on from where Kafka is, so KPIs would silently restart near zero. The
  worker logs an error and sets ``{prefix}store_reset``; every worker exposes
  ``salespulse_kpi_store_reset_pending`` (1 while that key exists), alert KpiStoreReset,
  until `salespulse rebuild` replaces the store and deletes the key.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics

logger = logging.getLogger(__name__)

# Drop a watermark only if it still holds the value judged stale.
_DROP_WATERMARK = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""
# How often a consuming worker checks that the store still holds its watermarks
# (one HMGET + one EXISTS): a wipe is noticed within this, at no cost per batch.
STORE_CHECK_INTERVAL_S = 1.0
# How long a log must look shorter than what was applied before it is judged lost.
LOST_LOG_CONFIRM_S = 5.0


def tp_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class StoreGuard:
    """One per consumer stage: its offsets hash and the shared reset marker."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: KpiKeys,
        *,
        group: str,
        stage: str,
        metrics: PipelineMetrics,
    ) -> None:
        self._client = client
        self._keys = keys
        self._offsets_key = keys.offsets(group)
        self._group = group
        self._stage = stage
        self._metrics = metrics
        self._drop = client.register_script(_DROP_WATERMARK)
        self._next_check = 0.0
        self._epoch: bytes | None = None  # the store epoch this worker has applied to
        self._suspected: dict[TopicPartition, float] = {}  # looked lost since (monotonic)

    async def on_assignment(
        self, consumer: AIOKafkaConsumer, by_name: dict[str, TopicPartition], stored: dict[str, int]
    ) -> None:
        """A partition with committed offsets but no watermark: the store lost its keys.

        (A lost log is judged on the first fetch, not here: Tansu's ListOffsets answers
        the last record batch's base offset + 1, not the log's end, so ``end_offsets``
        would call a healthy partition lost; a fetch's high-water mark is exact.)
        """
        for name, tp in by_name.items():
            if name in stored:
                continue
            committed = await _committed(consumer, tp)
            if committed:
                await self.flag_store_reset(f"{name} committed up to offset {committed}")
                return

    def lost_logs(
        self, consumer: AIOKafkaConsumer, watermarks: dict[TopicPartition, int]
    ) -> list[TopicPartition]:
        """Partitions whose high-water mark (of the last fetch, even an empty one: a
        broker may answer a fetch beyond a new log's end with no records and no error)
        has stayed at or below what was applied for LOST_LOG_CONFIRM_S. A healthy log's
        high-water mark only grows and lies beyond every offset it ever served; the wait
        keeps a new partition leader's briefly stale high-water mark from re-reading a
        healthy partition (records at or below the watermark are not applied meanwhile)."""
        now = time.monotonic()
        for gone in [tp for tp in self._suspected if tp not in watermarks]:
            del self._suspected[gone]  # revoked, or forgotten: judged afresh if it returns
        lost = []
        for tp, watermark in watermarks.items():
            high = consumer.highwater(tp)
            if high is None or high > watermark:
                self._suspected.pop(tp, None)
                continue
            if now - self._suspected.setdefault(tp, now) >= LOST_LOG_CONFIRM_S:
                del self._suspected[tp]
                lost.append(tp)
        return lost

    async def forget_lost_log(self, name: str, watermark: int, end: int) -> None:
        logger.error(
            "%s stage: partition %s ends at offset %d but offset %d was applied: the broker "
            "lost its log or the topic was recreated; reading it again from the earliest "
            "offset (events the old log held and nobody applied are lost)",
            self._stage,
            name,
            end,
            watermark,
        )
        try:
            await self._drop(keys=[self._offsets_key], args=[name, str(watermark)])
        except RedisError as exc:
            raise KpiStoreError(f"cannot drop the stale watermark of {name}: {exc}") from exc
        self._metrics.offset_resets.labels(stage=self._stage).inc()

    async def flag_store_reset(self, evidence: str) -> None:
        logger.error(
            "%s stage (group %s): the KPI store holds no watermark although history was "
            "applied (%s): Redis was wiped or restarted empty. KPIs restart from zero until "
            "`salespulse rebuild` is run (RUNBOOK: KPI store lost)",
            self._stage,
            self._group,
            evidence,
        )
        try:
            await self._client.set(
                self._keys.store_reset, f"{self._stage}: {evidence} at {time.time():.0f}", nx=True
            )
        except RedisError as exc:
            raise KpiStoreError(f"cannot mark the store reset: {exc}") from exc
        self._metrics.store_reset_pending.set(1)

    async def check_store(self, watermarks: dict[TopicPartition, int]) -> None:
        """At most every STORE_CHECK_INTERVAL_S: is this still the store we applied to?

        The store's epoch key (a random id, created once, never written by a batch) is
        gone or different after a wipe even when batches applied since then rewrote the
        watermarks, which is why the watermarks themselves are not the test."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + STORE_CHECK_INTERVAL_S
        epoch_key = self._keys.store_epoch
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(epoch_key)
            pipe.exists(self._keys.store_reset)
            epoch, flagged = await pipe.execute()
            if epoch is None:  # a new store, or a wiped one: whoever comes first names it
                pipe = self._client.pipeline(transaction=False)
                pipe.set(epoch_key, uuid.uuid4().hex, nx=True)
                pipe.get(epoch_key)
                _, epoch = await pipe.execute()
        except RedisError as exc:
            logger.warning("cannot check the KPI store: %s", exc)
            return
        known, self._epoch = self._epoch, epoch
        if known is not None and epoch != known and watermarks and not flagged:
            await self.flag_store_reset("its epoch key vanished while this worker was applying")
            flagged = True
        self._metrics.store_reset_pending.set(1 if flagged else 0)


async def _committed(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    try:
        offset = await consumer.committed(tp)
    except KafkaError as exc:
        logger.warning("cannot read the committed offset of %s: %r", tp_name(tp), exc)
        return None
    return int(offset) if offset is not None else None
