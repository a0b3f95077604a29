"""The Redis edge of the KPI pipeline: load entity states, apply a folded batch once.

Idempotency uses two mechanisms, both inside one Lua call (atomic, one round trip):

* an event-id set per tenant and event day: a CRM retry or a replayed Kafka record is
  recognised by id wherever and whenever it shows up, even on another partition; this
  is what makes event-additive counts exact.
* the last applied offset per partition, kept as a watermark: after a crash between the
  Redis write and the Kafka commit, the consumer seeks past what Redis already holds
  instead of re-sending whole batches that would only be rejected as duplicates.

Entity states carry a version; the script refuses a batch whose entities changed since
they were read (another worker on a partition during a rebalance), and the applier
rereads and refolds. Why Redis and not Faust tables for this state: the state must
change in the same atomic step as the KPI increments derived from it, and Redis is
already the store of those; it survives restarts and rebalances with no changelog replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.errors import KpiStoreError
from salespulse.kpi_keys import SEP, KpiKeys
from streams.fold import BatchFold, States, decode_state

# Minute and hour buckets only serve the 15m / 1h / 24h windows.
_SHORT_TTL_S = {"m": 2 * 3600, "h": 2 * 86_400}


@cache
def _apply_script() -> str:
    return resources.files("streams").joinpath("apply_batch.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ApplyOutcome:
    applied: bool
    # (tenant, event_id) pairs the store had already counted
    already_counted: frozenset[tuple[str, str]] = frozenset()
    # entity keys that changed since they were read
    conflicts: tuple[str, ...] = ()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisKpiSink:
    """Reads entity states and writes BatchFolds; one instance per consumer."""

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
        self._ttl = {**_SHORT_TTL_S, "d": day_ttl_s, "w": day_ttl_s, "mo": day_ttl_s, "all": 0}
        self._script = client.register_script(_apply_script())

    async def load_states(self, refs: dict[str, str]) -> States:
        """Stored (version, state) of each entity key (→ kind) that has one."""
        if not refs:
            return {}
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in refs:
                pipe.hmget(key, ["v", "s"])
            replies = await pipe.execute()
        except RedisError as exc:
            raise KpiStoreError(f"cannot read entity states: {exc}") from exc
        states: States = {}
        for (key, kind), (version, blob) in zip(refs.items(), replies, strict=True):
            if version is not None and blob is not None:
                states[key] = (int(version), decode_state(kind, blob))
        return states

    async def apply(self, fold: BatchFold, offsets: dict[str, int]) -> ApplyOutcome:
        """Apply the fold and advance the watermarks, unless the checks refuse it."""
        args, seen_owner = self._arguments(fold, offsets)
        try:
            reply = await self._script(args=args)
        except RedisError as exc:
            raise KpiStoreError(f"redis rejected the batch: {exc}") from exc
        status = int(reply[0])
        if status == 1:
            return ApplyOutcome(applied=True)
        if status == 2:
            return ApplyOutcome(applied=False, conflicts=tuple(_text(k) for k in reply[1:]))
        counted = {
            (seen_owner[_text(reply[i])], _text(reply[i + 1])) for i in range(1, len(reply), 2)
        }
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

        args.append(len(fold.entity_writes))
        for key, (version, blob) in fold.entity_writes.items():
            args.extend((key, version, blob))

        hashes: dict[tuple[str, str], list[bytes | int]] = {}
        for (tenant, granularity, bucket, field), amount in fold.increments.items():
            if amount:
                pairs = hashes.setdefault(
                    (keys.bucket(tenant, granularity, bucket), granularity), []
                )
                pairs.extend((field, amount))
        args.append(len(hashes))
        for (key, granularity), pairs in hashes.items():
            args.extend((key, self._ttl[granularity], len(pairs) // 2))
            args.extend(pairs)

        zset_ops: list[str | bytes | int] = []
        members: list[str] = []
        for tenant, deal, before, after in fold.open_moves:
            if before is not None:
                zset_ops.extend(("r", keys.open_stage(tenant, before[0], before[1]), deal, 0))
            if after is not None:
                stage_key = keys.open_stage(tenant, after[0], after[1])
                zset_ops.extend(("a", stage_key, deal, after[2]))
                members.extend((keys.open_keys(tenant), f"{after[0]}{SEP}{after[1]}"))
        args.append(len(zset_ops) // 4)
        args.extend(zset_ops)

        args.append(len(fold.won_changes))
        for tenant, deal, record in fold.won_changes:
            args.extend(("s" if record else "d", keys.won(tenant), deal, record or b""))

        for tenant in sorted({tenant for tenant, _ in fold.event_ids}):
            members.extend((keys.tenants, tenant))
        args.append(len(members) // 2)
        args.extend(members)

        args.append(len(offsets))
        for tp, offset in offsets.items():
            args.extend((tp, offset))
        return args, owner
