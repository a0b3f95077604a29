"""Last known stage per CRM deal (and lead) in Redis, for ``stage_from`` and change detection.

Key: ``{prefix}crmstate:{tenant}:{crm}:{entity}:{id}``, a JSON EntityState with a TTL.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from handlers.crm.common import EntityState
from salespulse.core.errors import KpiStoreError

_decoder = msgspec.json.Decoder(EntityState)
_encoder = msgspec.json.Encoder()


class CrmStateStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    def key(self, tenant: str, crm: str, entity: str, entity_id: str) -> str:
        return f"{self._prefix}crmstate:{tenant}:{crm}:{entity}:{entity_id}"

    async def get(self, tenant: str, crm: str, entity: str, entity_id: str) -> EntityState | None:
        try:
            raw = await self._redis.get(self.key(tenant, crm, entity, entity_id))
        except RedisError as exc:
            raise KpiStoreError(f"reading CRM state failed: {exc!r}") from exc
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return None  # an unreadable state is no state: the record is judged afresh

    async def put(
        self, tenant: str, crm: str, entity: str, entity_id: str, state: EntityState
    ) -> None:
        key = self.key(tenant, crm, entity, entity_id)
        try:
            await self._redis.set(key, _encoder.encode(state), ex=self._ttl_s)
        except RedisError as exc:
            raise KpiStoreError(f"writing CRM state failed: {exc!r}") from exc
