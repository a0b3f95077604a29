"""The Redis clients of one deployment: a plain client for a single Redis (the default),
a cluster client for a Redis Cluster (`SALESPULSE_REDIS_MODE=cluster`, docs/redis-cluster.md).

The cluster clients learn the slot map from the node the URL names and route every
command, script call and pipelined command to the master of its key's slot. They offer
the commands SalesPulse uses under the same names and signatures as the plain clients
(GET, MGET within one slot, HINCRBY, EVALSHA through `register_script`, non-transaction
pipelines, SCAN), but are not subclasses of them: they are handed out typed as the plain
client, so the sides keep one type. What differs in cluster mode (a batch's script call
per tenant, the global keys written apart) is decided by `KpiKeys.tenant_slots`. A
cluster pipeline refuses MGET, which goes through `mget_many`, and script calls, which the
KPI reader sends apart from its pipeline on a cluster (metrics/read/kpi_reader.py).
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from salespulse.core.settings import Settings


class ClusterUnavailableError(RedisConnectionError):
    """The cluster cannot serve a slot: not made yet, or a master lost with no replica to
    take over. An outage like a Redis that does not answer (a RedisError, so the stages
    wait it out and never take it for a poison event), where redis-py raises an error of
    its own class."""


class _AsyncCluster(AsyncRedisCluster):
    """The asyncio cluster client whose outages are RedisErrors, as a single Redis's are."""

    async def initialize(self, *args: Any, **kwargs: Any) -> AsyncRedisCluster:
        # Learning the slot map fails only when the cluster is not (yet) whole or reachable.
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnavailableError(f"the Redis Cluster is not serving: {exc}") from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as exc:
            raise ClusterUnavailableError(f"the Redis Cluster is not serving: {exc}") from exc


async def mget_many(client: aioredis.Redis, keys: list[str], chunk: int) -> list[bytes | None]:
    """MGET of many keys: on one Redis in chunks, pipelined (one round trip), so that a
    huge list never blocks it; on a cluster (whose pipelines refuse MGET) one MGET per
    slot, sent to the slots' masters together."""
    if isinstance(client, AsyncRedisCluster):
        values: list[bytes | None] = await client.mget_nonatomic(keys)
        return values
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(keys), chunk):
        pipe.mget(keys[start : start + chunk])
    return [value for part in await pipe.execute() for value in part]


def async_redis(settings: Settings, url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client of `url`: one Redis, or the cluster that node belongs to."""
    if settings.redis_mode == "cluster":
        return cast(aioredis.Redis, _AsyncCluster.from_url(url, **options))
    return aioredis.Redis.from_url(url, **options)


def sync_redis(settings: Settings, url: str, **options: Any) -> redis.Redis:
    """A blocking client of `url` (the exporters' reads): one Redis, or its cluster."""
    if settings.redis_mode == "cluster":
        return cast(redis.Redis, RedisCluster.from_url(url, **options))
    return redis.Redis.from_url(url, **options)
