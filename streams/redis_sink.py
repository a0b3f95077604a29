"""The Redis edge of the KPI pipeline: load entity states, apply a folded batch once.

Idempotency uses three mechanisms, all inside the batch's first Lua call (atomic, one
round trip; a big batch's hash fields past its share follow as journal parts that
later calls apply exactly once, streams/journal.py):

* a permanent mark per event-additive event (a call, a message, a payment ...), by tenant
  and event day (streams/event_marks.py): a CRM retry, a replayed Kafka record or a
  history replayed years later is recognised wherever and whenever it shows up, even on
  another partition; this is what makes event-additive counts exact.
* an event-id set per tenant and event day for the other events, kept
  `SALESPULSE_DEDUPE_RETENTION_DAYS`: their counts follow from the entity's state, so a
  repeat would change nothing; the set only spares its refold.
* the last applied offset per partition, kept as a watermark: after a crash between the
  Redis write and the Kafka commit, the consumer seeks past what Redis already holds
  instead of re-sending whole batches that would only be rejected as duplicates.

Entity states carry a version; the script refuses a batch whose entities changed since
they were read (another worker on a partition during a rebalance), and the applier
rereads and refolds. Why Redis and not Faust tables for this state: the state must
change in the same atomic step as the KPI increments derived from it, and Redis is
already the store of those; it survives restarts and rebalances with no changelog replay.

On a Redis Cluster each call holds one tenant's keys only; the tenants set and the
watermarks follow it, outside the script (streams/outside_slots.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError, TotalOverflowError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.codecs import frame_state, split_state, stage_member
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.redis_clients import mget_many
from streams.entity_state import DealState
from streams.event_marks import by_field, msgpack_str
from streams.fold import BatchFold, States, decode_state
from streams.journal import (
    NOTHING_PENDING,
    PART_FIELDS,
    Journal,
    Pending,
    exact_increments,
    hash_writes,
)
from streams.off_loop import OffLoop
from streams.outside_slots import OutsideSlots

_packer = msgspec.msgpack.Encoder()
_MGET_CHUNK = 1000
# Minute and hour buckets only serve the 15m / 1h / 24h windows.
_SHORT_TTL_S = {"m": 2 * 3600, "h": 2 * 86_400}


def refused_overflow(reply: list[bytes]) -> TotalOverflowError | None:
    """The script's {3, key, field}: a total that an increment would overflow."""
    if int(reply[0]) != 3:
        return None
    key, field = (_text(part) for part in reply[1:3])
    return TotalOverflowError(f"an increment would overflow {key} field {field}")


@cache
def apply_script() -> str:
    return resources.files("streams").joinpath("apply_batch.lua").read_text(encoding="utf-8")


class ScriptKeys:
    """The KEYS of one apply_batch.lua call: every key the batch touches, once, named in
    the batch by its position (1-based, as Lua counts). A script that declares its keys
    is one Redis Cluster can route."""

    __slots__ = ("_index", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def at(self, key: str) -> int:
        index = self._index.get(key)
        if index is None:
            self.names.append(key)
            index = self._index[key] = len(self.names)
        return index

    def extend(self, unique: list[str]) -> int:
        """Declares keys that the batch names once each (entity states, buckets, dedupe
        sets: no lookup per key, they are most of a batch's keys); returns the position
        of the first."""
        first = len(self.names) + 1
        self.names += unique
        return first


@dataclass(frozen=True)
class ScriptCall:
    """One apply_batch.lua call: the KEYS it declares and the batch, one MessagePack
    argument (which may carry every key, see apply_batch.lua); and the journal parts it
    leaves, drained once it is applied."""

    keys: list[str]
    batch: bytes
    pending: Pending = NOTHING_PENDING

    def named_keys(self) -> list[str]:
        """Every key the call names: declared, or in the batch (one Redis)."""
        carried = _CARRIED_KEYS.decode(self.batch).keys
        return self.keys + carried[len(self.keys) :]


class _CarriedKeys(msgspec.Struct):
    keys: list[str] = []


# Only `keys` is read: the rest of a batch holds binary marks, not UTF-8.
_CARRIED_KEYS = msgspec.msgpack.Decoder(_CarriedKeys)


def script_call(
    names: list[str], batch: dict[str, Any], *, cluster: bool, pending: Pending = NOTHING_PENDING
) -> ScriptCall:
    """The call of apply_batch.lua that names ``names`` (ScriptKeys.names) for ``batch``.

    One Redis: every key inside the one MessagePack argument, the first declared. redis-py
    packs each argument of a command in Python (~1.4 µs a key), and a replayed history's
    batch of 2,500 events names ~6,000 keys: 12 µs an event of the worker's CPU, more
    than its fold. A cluster gets every key declared: while a slot migrates, a key the
    script was not given could be read as missing and written on the wrong node.
    """
    if cluster:
        return ScriptCall(names, _packer.encode(batch), pending)
    return ScriptCall(names[:1], _packer.encode({**batch, "keys": names}), pending)


@dataclass(frozen=True)
class ApplyOutcome:
    applied: bool
    # (tenant, event_id) pairs the store had already counted
    already_counted: frozenset[tuple[str, str]] = frozenset()
    # entity keys that changed since they were read
    conflicts: tuple[str, ...] = ()


async def mget_chunked(client: aioredis.Redis, keys: list[str], what: str) -> list[bytes | None]:
    """MGET in chunks, pipelined (one round trip), so that a huge batch never blocks Redis."""
    try:
        return await mget_many(client, keys, _MGET_CHUNK)
    except RedisError as exc:
        raise KpiStoreError(f"cannot read {what}: {exc}") from exc


async def read_watermarks(
    client: aioredis.Redis, offsets_key: str, partitions: list[str]
) -> dict[str, int]:
    """Last applied offset per "topic:partition" (absent when nothing was applied)."""
    if not partitions:
        return {}
    try:
        values = await client.hmget(offsets_key, partitions)
    except RedisError as exc:
        raise KpiStoreError(f"cannot read offset watermarks of {offsets_key}: {exc}") from exc
    return {tp: int(value) for tp, value in zip(partitions, values, strict=True) if value}


def retention_days(day_ttl_s: int) -> int:
    """Whole days a day bucket is kept (its TTL rounded up)."""
    return -(-day_ttl_s // 86_400)


def bucket_ttls(day_ttl_s: int, month_ttl_s: int | None = None) -> dict[str, int]:
    """Expiry of a KPI bucket hash by granularity (0: kept); months default to days'."""
    month = day_ttl_s if month_ttl_s is None else month_ttl_s
    return {**_SHORT_TTL_S, "d": day_ttl_s, "w": day_ttl_s, "mo": month, "all": 0}


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
        month_ttl_s: int | None = None,
        entity_ttl_s: int = 0,
        part_fields: int = PART_FIELDS,
    ) -> None:
        self._client = client
        self._part_fields = part_fields
        # won/lost deals and leads expire this long after their last write (0: kept)
        self._entity_ttl_s = entity_ttl_s
        self._keys = keys
        self._group = group
        self._dedupe_ttl_s = dedupe_ttl_s
        self._ttl = bucket_ttls(day_ttl_s, month_ttl_s)
        self.day_retention_days = retention_days(day_ttl_s)
        self._script = client.register_script(apply_script())
        self.journal = Journal(client, self._script, keys)
        self._off_loop = OffLoop("salespulse-kpi-pack")
        # Redis Cluster: the tenants set and the watermarks are written after the script
        self._outside = OutsideSlots(client, keys, group=group) if keys.tenant_slots else None

    async def load_states(self, refs: dict[str, str]) -> States:
        """Stored (version, state) of each entity key (→ kind) that has one."""
        if not refs:
            return {}
        keys = list(refs)
        replies = await mget_chunked(self._client, keys, "entity states")
        states: States = {}
        for key, held in zip(keys, replies, strict=True):
            if held is not None:
                version, blob = split_state(held)
                states[key] = (version, decode_state(refs[key], blob))
        return states

    async def apply(self, fold: BatchFold, offsets: dict[str, int]) -> ApplyOutcome:
        """Apply the fold and advance the watermarks, unless the checks refuse it."""
        # off the loop: a replayed history's batch names ~11,000 hashes (tens of ms)
        marks = {} if self._outside else offsets  # cluster: written apart, after the script
        call, seen_owner = await self._off_loop.run(self.arguments, fold, marks)
        await self.journal.stage(call.pending)
        try:
            reply = await self._script(keys=call.keys, args=[call.batch])
        except RedisError as exc:
            raise KpiStoreError(f"redis rejected the batch: {exc}") from exc
        status = int(reply[0])
        await self.journal.settle(reply, call.pending)
        if (overflow := refused_overflow(reply)) is not None:
            raise overflow
        if status == 1:
            if self._outside is not None:
                tenants = {tenant for tenant, _ in fold.event_ids} | {t for t, _ in fold.marked}
                await self._outside.write(tenants=tenants, marks=offsets)
            await self.journal.drain(call.pending)
            return ApplyOutcome(applied=True)
        if status == 2:
            return ApplyOutcome(applied=False, conflicts=tuple(_text(k) for k in reply[1:]))
        counted = {
            (seen_owner[_text(reply[i])], _text(reply[i + 1])) for i in range(1, len(reply), 2)
        }
        return ApplyOutcome(applied=False, already_counted=frozenset(counted))

    async def watermarks(self, partitions: list[str]) -> dict[str, int]:
        return await read_watermarks(self._client, self._keys.offsets(self._group), partitions)

    async def finish_journals(self) -> int:
        """Apply the journal parts a stopped worker left (streams/journal.py)."""
        return await self.journal.recover()

    async def mark_late(self, events: Sequence[CrmEvent]) -> int:
        """Add too-late events to the tenant-day late sets; how many were not there yet."""
        by_key: dict[str, set[str]] = {}
        for event in events:
            day = event.occurred_at.astimezone(UTC).date().isoformat()
            by_key.setdefault(self._keys.late(event.tenant, day), set()).add(event.event_id)
        if not by_key:
            return 0
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, ids in by_key.items():
                pipe.sadd(key, *sorted(ids))
                pipe.expire(key, self._dedupe_ttl_s)
            replies = await pipe.execute()
        except RedisError as exc:
            raise KpiStoreError(f"cannot mark too-late events: {exc}") from exc
        return sum(int(added) for added in replies[::2])

    def _entity_ttl(self, fold: BatchFold, key: str) -> int:
        """An open deal (in a stage, or none yet) is kept; a closed one and a lead expire."""
        state = fold.new_states[key]
        if isinstance(state, DealState) and (
            state.current is None or fold.new_derived[key].open is not None
        ):
            return 0
        return self._entity_ttl_s

    def arguments(
        self, fold: BatchFold, offsets: dict[str, int]
    ) -> tuple[ScriptCall, dict[str, str]]:
        """The script call (see apply_batch.lua for the batch's layout), and the tenant of
        each dedupe set and mark key (the script names a counted id by its key)."""
        keys = self._keys
        slots = ScriptKeys()
        at = slots.at
        # declared only when written: in cluster mode the key is in another slot
        offsets_at = at(keys.offsets(self._group)) if offsets else 0
        owner: dict[str, str] = {}
        deduped: list[tuple[str, list[str]]] = []
        for (tenant, day), ids in fold.event_ids.items():
            if ids:  # a day whose events all carry marks has none to dedupe
                deduped.append((keys.seen(tenant, day), ids))
                owner[deduped[-1][0]] = tenant
        seen_at = slots.extend([key for key, _ in deduped])
        seen = [(seen_at + i, ids) for i, (_, ids) in enumerate(deduped)]
        seen_index = {key: seen_at + i for i, (key, _) in enumerate(deduped)}
        marks = []
        for (tenant, day), ids in fold.marked.items():
            if ids:
                key, day_ids = keys.mark(tenant, day), keys.seen(tenant, day)
                owner[key] = owner[day_ids] = tenant
                shards = by_field(ids)
                marks.append(
                    (
                        at(key),
                        [
                            (name, msgpack_str(b"".join(remainders)), shard_ids)
                            for name, (remainders, shard_ids) in shards.items()
                        ],
                        seen_index.get(day_ids) or at(day_ids),
                    )
                )
        writes = fold.entity_writes
        entities_at = slots.extend(list(writes))
        # Redis's cmsgpack reads no binary type: every value goes as text (all are JSON).
        entities = [
            (entities_at + i, version, frame_state(version + 1, blob), self._entity_ttl(fold, key))
            for i, (key, (version, blob)) in enumerate(writes.items())
        ]
        zsets: list[tuple[str, int, str, int]] = []
        members: list[tuple[int, str]] = []
        for tenant, deal, before, after in fold.open_moves:
            if before is not None:
                zsets.append(("r", at(keys.open_stage(tenant, before[0], before[1])), deal, 0))
            if after is not None:
                stage_key = at(keys.open_stage(tenant, after[0], after[1]))
                zsets.append(("a", stage_key, deal, after[2]))
                members.append((at(keys.open_keys(tenant)), stage_member(after[0], after[1])))
        fields = [
            ("s" if record else "d", at(keys.won(tenant)), deal, record.decode() if record else "")
            for tenant, deal, record in fold.won_changes
        ]
        if not keys.tenant_slots:  # cluster mode: OutsideSlots adds them after the script
            tenants_at = at(keys.tenants)
            counted = {t for t, _ in fold.event_ids} | {t for t, _ in fold.marked}
            members += [(tenants_at, tenant) for tenant in sorted(counted)]
        hashes, pending = hash_writes(
            slots,
            [
                (keys.bucket(*bucket), self._ttl[bucket[1]], *exact_increments(by_field))
                for bucket, by_field in fold.increments.items()
            ],
            keys.journal(next(iter(fold.increments))[0] if fold.increments else ""),
            self._part_fields,
        )
        batch = {
            "ttl": self._dedupe_ttl_s,
            "offsets": offsets_at,
            "seen": seen,
            "marked": marks,
            "entities": entities,
            **hashes,
            "zsets": zsets,
            "fields": fields,
            "members": members,
            "marks": list(offsets.items()),
        }
        call = script_call(slots.names, batch, cluster=keys.tenant_slots, pending=pending)
        return call, owner
