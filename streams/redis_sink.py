"""The Redis edge of the KPI pipeline: apply a folded batch exactly once.

Idempotency uses two mechanisms, both inside one Lua call (atomic, one round trip):

* an event-id set per tenant and event day: a CRM retry or a replayed Kafka record is
  recognised by id wherever and whenever it shows up, even on another partition after a
  repartition; this is what makes counting exact.
* the last applied offset per partition, kept as a watermark: after a crash between the
  Redis write and the Kafka commit, the consumer seeks past what Redis already holds
  instead of re-sending whole batches that would only be rejected as duplicates.

When the script finds ids counted before, it writes nothing and names them; the caller
refolds without them and tries again (rare: only CRM retries and crash replays).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.errors import KpiStoreError
from salespulse.kpi_keys import KpiKeys, encode_field
from streams.fold import BatchFold


@cache
def _apply_script() -> str:
    return resources.files("streams").joinpath("apply_batch.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ApplyOutcome:
    applied: bool
    # (tenant, event_id) pairs the store had already counted; empty when applied.
    already_counted: frozenset[tuple[str, str]]


class RedisKpiSink:
    """Writes BatchFolds; one instance per consumer."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: KpiKeys,
        *,
        group: str,
        dedupe_ttl_s: int,
        day_ttl_s: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._group = group
        self._dedupe_ttl_s = dedupe_ttl_s
        self._day_ttl_s = day_ttl_s
        self._script = client.register_script(_apply_script())

    async def apply(self, fold: BatchFold, offsets: dict[str, int]) -> ApplyOutcome:
        """Apply the fold and advance the watermarks, unless some ids were counted before."""
        args, seen_key_owner = self._arguments(fold, offsets)
        try:
            reply = await self._script(args=args)
        except RedisError as exc:
            raise KpiStoreError(f"redis rejected the batch: {exc}") from exc
        if int(reply[0]) == 1:
            return ApplyOutcome(applied=True, already_counted=frozenset())
        counted = set()
        for index in range(1, len(reply), 2):
            seen_key = reply[index].decode() if isinstance(reply[index], bytes) else reply[index]
            event_id = reply[index + 1]
            event_id = event_id.decode() if isinstance(event_id, bytes) else event_id
            counted.add((seen_key_owner[seen_key], event_id))
        return ApplyOutcome(applied=False, already_counted=frozenset(counted))

    async def watermarks(self, partitions: list[str]) -> dict[str, int]:
        """Last applied offset per "topic:partition" (absent when nothing was applied)."""
        if not partitions:
            return {}
        try:
            values = await self._client.hmget(self._keys.offsets(self._group), partitions)
        except RedisError as exc:
            raise KpiStoreError(f"cannot read offset watermarks: {exc}") from exc
        return {tp: int(value) for tp, value in zip(partitions, values, strict=True) if value}

    def _arguments(
        self, fold: BatchFold, offsets: dict[str, int]
    ) -> tuple[list[str | bytes | int], dict[str, str]]:
        keys = self._keys
        args: list[str | bytes | int] = [
            self._dedupe_ttl_s,
            self._day_ttl_s,
            keys.tenants,
            keys.offsets(self._group),
        ]
        owner: dict[str, str] = {}
        args.append(len(fold.event_ids))
        for (tenant, day), ids in fold.event_ids.items():
            seen_key = keys.seen(tenant, day)
            owner[seen_key] = tenant
            args.extend((seen_key, len(ids)))
            args.extend(ids)

        hashes: dict[tuple[str, bool], list[bytes | int]] = {}
        for (tenant, kpi_field), amount in fold.all_time.items():
            pairs = hashes.setdefault((keys.all_time(tenant), False), [])
            pairs.extend((encode_field(kpi_field), amount))
        for (tenant, day, kpi_field), amount in fold.by_day.items():
            pairs = hashes.setdefault((keys.day(tenant, day), True), [])
            pairs.extend((encode_field(kpi_field), amount))
        args.append(len(hashes))
        for (key, is_day), pairs in hashes.items():
            args.extend((key, 1 if is_day else 0, len(pairs) // 2))
            args.extend(pairs)

        args.append(len(offsets))
        for tp, offset in offsets.items():
            args.extend((tp, offset))

        tenants = {tenant for tenant, _ in fold.event_ids}
        args.append(len(tenants))
        args.extend(sorted(tenants))
        return args, owner
