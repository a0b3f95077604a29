"""Redis Cluster (`SALESPULSE_REDIS_MODE=cluster`): what a batch writes outside its
tenants' slots, and the split of a batch per tenant.

On a cluster one script call may touch one slot only. Each tenant's keys share the slot
of its hash tag (`KpiKeys.tenant_slots`), so a batch is applied as one call of
streams/apply_batch.lua per tenant (`tenant_groups`, `split_sla_fold`), each exactly
once by the checks it makes on the tenant's own keys (the KPI stage's event-id sets and
entity versions, the SLA stage's conversation joins). The keys that belong to no tenant,
`{p}tenants`, `{p}lastseen` and the watermarks `{p}offsets:{group}`, each in a slot of
their own, are written here after every tenant part of the batch is in, watermarks last:

* the tenants set takes SADD, and `lastseen` and the watermarks only ever rise, so a
  write repeated after a crash changes nothing;
* a watermark covers a batch only once all its tenant parts are in: a worker that dies
  between parts leaves the watermark below the batch, the batch is delivered again,
  each part already written is refused as counted (or contributes nothing, a join) and
  the refold writes the rest exactly once. A consumer that resumes after the watermark
  therefore never skips a part that is not in Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from streams.sla_fold import SlaFold

# KEYS[1] a hash; ARGV field, value pairs: a field is set only to a larger number (a
# watermark or a receipt time never goes back, whatever order two workers write in).
_RAISE_FIELDS = """
for i = 1, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > held then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def tenant_groups(events: Sequence[CrmEvent]) -> list[Sequence[CrmEvent]]:
    """The batch's events by tenant, each tenant's in batch order (tenants share no key,
    so applying one tenant's before another's changes no result)."""
    groups: dict[str, list[CrmEvent]] = {}
    for event in events:
        groups.setdefault(event.tenant, []).append(event)
    if len(groups) < 2:
        return [events]
    return list(groups.values())


def split_sla_fold(keys: KpiKeys, fold: SlaFold) -> dict[str, SlaFold]:
    """The SLA fold's writes of each tenant's slot (its `last_received` is written apart)."""
    parts: dict[str, SlaFold] = {}

    def part(tenant: str) -> SlaFold:
        found = parts.get(tenant)
        if found is None:
            found = parts[tenant] = SlaFold()
        return found

    for bucket, fields in fold.increments.items():
        part(bucket[0]).increments[bucket] = fields
    for key, write in fold.entity_writes.items():
        part(keys.tagged_tenant(key)).entity_writes[key] = write
    for move in fold.waiting_moves:
        part(move[0]).waiting_moves.append(move)
    for (tenant, day), ids in fold.marked.items():
        part(tenant).marked[(tenant, day)] = ids
    return parts


class OutsideSlots:
    """Writes a batch's keys that belong to no tenant, after its tenant parts."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys, *, group: str) -> None:
        self._client = client
        self._keys = keys
        self._offsets_key = keys.offsets(group)
        self._raise = client.register_script(_RAISE_FIELDS)

    async def write(
        self,
        *,
        tenants: Iterable[str] = (),
        last_received: Mapping[str, int] | None = None,
        marks: Mapping[str, int] | None = None,
    ) -> None:
        try:
            names = sorted(set(tenants))
            if names:
                await self._client.sadd(self._keys.tenants, *names)
            if last_received:
                await self._raise_fields(self._keys.last_received, last_received)
            if marks:  # last: the batch is covered only once all of it is in
                await self._raise_fields(self._offsets_key, marks)
        except RedisError as exc:
            raise KpiStoreError(f"cannot write the batch's tenants and watermarks: {exc}") from exc

    async def _raise_fields(self, key: str, values: Mapping[str, int]) -> None:
        args = [item for field, value in sorted(values.items()) for item in (field, value)]
        await self._raise(keys=[key], args=args)
