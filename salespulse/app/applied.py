"""``GET /v1/applied``: how far the worker's stages have applied ``crm.events``.

    {"topic": "crm.events",
     "end": {"crm.events:0": 1200, …},                 # the offset after each partition's
                                                        # last record, now
     "applied": {"kpi": {"crm.events:0": 1200, …},     # the offset after the last record
                 "sla": {"crm.events:0": 1100, …}},    # each stage wrote to Redis
     "complete": false}

A sender waits until every stage's ``applied`` reaches the offsets its backfill's 202
answers named (``salespulse replay --wait``): the KPIs then include everything it sent.
``end`` and ``complete`` are as the broker reports its end offsets, which may trail the
newest records briefly (Tansu's did by a few dozen), so a sender waits on its own
offsets, not on ``complete``. Offsets only: no tenant, id or count of anyone's
events, so it is served without a token, like /healthz. The applied offsets are the
watermarks the stages write with each batch (docs/redis-layout.md, ``offsets:``).
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from salespulse.core.kpi.redis_layout import KpiKeys

logger = logging.getLogger(__name__)


class AppliedOffsets:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        redis_client: aioredis.Redis,
        keys: KpiKeys,
        groups: dict[str, str],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        """``groups``: stage name → its consumer group."""
        self._bootstrap = bootstrap
        self._topic = topic
        self._redis = redis_client
        self._keys = keys
        self._groups = groups
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/applied", self.get_applied)]

    async def get_applied(self, _: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self._timeout_s):
                end = await self._topic_end()
                applied = {
                    stage: await self._applied(group) for stage, group in self._groups.items()
                }
        except (KafkaError, RedisError, OSError, TimeoutError) as exc:
            logger.warning("cannot tell the applied offsets: %r", exc)
            await self._drop_consumer()
            return web.json_response(
                {"error": "unavailable", "problem": "the broker or Redis did not answer"},
                status=503,
                headers={"Retry-After": "1"},
            )
        complete = all(
            offsets.get(partition, 0) >= last
            for offsets in applied.values()
            for partition, last in end.items()
        )
        return web.json_response(
            {"topic": self._topic, "end": end, "applied": applied, "complete": complete}
        )

    async def close(self) -> None:
        await self._drop_consumer()

    async def _applied(self, group: str) -> dict[str, int]:
        stored = await self._redis.hgetall(self._keys.offsets(group))
        return {_text(name): int(offset) + 1 for name, offset in stored.items()}

    async def _topic_end(self) -> dict[str, int]:
        async with self._lock:
            if self._consumer is None:
                # No group: it only asks for end offsets, it never reads or commits.
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self._bootstrap, enable_auto_commit=False
                )
                await consumer.start()
                self._consumer = consumer
            consumer = self._consumer
        await consumer.topics()  # fresh metadata: partitions added since are seen
        numbers = consumer.partitions_for_topic(self._topic) or set()
        ends = await consumer.end_offsets([TopicPartition(self._topic, n) for n in numbers])
        return {f"{tp.topic}:{tp.partition}": int(offset) for tp, offset in ends.items()}

    async def _drop_consumer(self) -> None:
        async with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except (KafkaError, OSError) as exc:
                logger.debug("ignoring error while dropping a consumer: %r", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
