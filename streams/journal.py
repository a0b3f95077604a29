"""A batch's hash increments past what one Lua call should write, applied in later calls
exactly once.

Redis runs one script at a time: every other client waits while a batch is applied. A
5,000-event batch writes ~17,000 hash fields, which held Redis 60-80 ms in one call on a
2-core VM (issue 19 asks for at most 20 ms). Cutting the batch into parts of fewer
events before folding costs more per event, because each part writes the day, month
and all-time fields again (+30 % worker CPU and +60 % Redis CPU at parts of 6,000
writes, streams/applier.py). So the batch is folded once and only its writes are cut:

* the first call makes every check and every write that later batches are checked
  against (counted ids, marks, entity states, watermarks) and the hash fields up to
  ``PART_FIELDS`` writes, and stores the remaining hash increments as parts in a
  journal hash (`KpiKeys.journal`), all in one atomic step;
* each later call applies one part and deletes it, again in one step, so a part is
  applied once whoever drains it: the worker that wrote it, right after, or, when that
  worker died in between, the next one that is assigned partitions (``recover``).

Hash increments commute, so a part applied late gives the same totals; until it is
applied, a reader sees the batch's events counted in some buckets and not yet in others
(milliseconds, or until a crashed worker's partitions are reassigned).

A hash with an increment sent as text (past 2^53, see apply_batch.lua) stays in the first
call, whose checks refuse the batch before anything is written if a total would pass
Redis's 64-bit limit. A part's totals can pass it only where a total already stands
within 2^53 of that limit; the script then refuses the whole part, which stays in the
journal, and the worker logs an error naming the key and field.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.kpi.redis_layout import KpiKeys
from streams.event_marks import msgpack_str

logger = logging.getLogger(__name__)

# Hash writes per call (a field, or a hash's HMGET and EXPIRE). Redis writes a field in
# ~2-4 µs on a busy 2-core VM (its share of the HMGET and the HSET, the MessagePack
# decode of its name): 4,000 are ~8-15 ms. Smaller parts cost more calls and more cut
# hashes: parts of 2,000 took 7 % more of Redis's instructions per event at 200
# managers than no journal, parts of 4,000 5 % (callgrind on redis-server).
PART_FIELDS = 4_000
# The HMGET and the EXPIRE of a hash, counted as writes beside its fields.
HASH_COST = 2

_packer = msgspec.msgpack.Encoder()


class _Part(msgspec.Struct):
    keys: list[str]


_PART_KEYS = msgspec.msgpack.Decoder(_Part)

# key, TTL (s, 0 = keep), field names, increments (int, or decimal text past 2^53)
HashIncrements = tuple[str, int, list[str], Sequence[int | str]]


@dataclass(frozen=True)
class Pending:
    """The parts a batch's first call stores: their ids and the keys each one writes."""

    journal: str = ""
    parts: tuple[tuple[str, list[str]], ...] = ()


NOTHING_PENDING: Final = Pending()


class KeySlots(Protocol):
    """Where a script call names its keys (streams/redis_sink.py ScriptKeys)."""

    def at(self, key: str) -> int: ...

    def extend(self, unique: list[str]) -> int: ...


# Lua numbers are doubles: an integer past this travels as decimal text (apply_batch.lua).
_EXACT_IN_LUA = 2**53


def exact_increments(by_field: dict[str, int]) -> tuple[list[str], Sequence[int | str]]:
    """A hash's fields and their increments as the script takes them: two arrays, which
    its MessagePack decoder builds faster than a map and which go to HMGET as they are
    (with the script's simpler loop over them, callgrind on redis-server: 13 % fewer
    instructions per event at 200 managers, 15 % at 2,000); an increment too large for a
    Lua double goes as text. Both lists are made in C: flattening the pairs into one list
    in Python cost ~5 % of the worker's CPU.
    """
    amounts = list(by_field.values())
    if amounts and (min(amounts) <= -_EXACT_IN_LUA or max(amounts) >= _EXACT_IN_LUA):
        return list(by_field), [str(a) if abs(a) >= _EXACT_IN_LUA else a for a in amounts]
    return list(by_field), amounts


def hash_writes(
    slots: KeySlots, hashes: list[HashIncrements], journal: str, part_fields: int
) -> tuple[dict[str, Any], Pending]:
    """The batch's `hashes`: the first call's share, named by position in ``slots``,
    and the rest as journal parts (streams/journal.py)."""
    first, later = split_hashes(hashes, part_fields)
    first_at = slots.extend([key for key, *_ in first])
    section: dict[str, Any] = {
        "hashes": [(first_at + i, ttl, f, a) for i, (_, ttl, f, a) in enumerate(first)]
    }
    if not later:
        return section, NOTHING_PENDING
    parts, pending = packed_parts(journal, later)
    section["journal"] = slots.at(journal)
    section["parts"] = parts
    return section, pending


def split_hashes(
    hashes: list[HashIncrements], limit: int = PART_FIELDS
) -> tuple[list[HashIncrements], list[list[HashIncrements]]]:
    """The hashes of the first call (up to ``limit`` writes, plus any hash with an
    increment as text), then each later part's (``limit`` writes at most; a hash with
    more fields is cut across parts, a later part adding to what the earlier wrote). A
    hash costs ``HASH_COST`` writes besides one per field: a replayed history's batch
    touches thousands of new day, week and month hashes of a field or two each."""
    if limit <= HASH_COST:
        raise ValueError(f"a journal part holds at least one field of a hash, not {limit}")
    first: list[HashIncrements] = []
    later: list[list[HashIncrements]] = []
    room = limit
    part: list[HashIncrements] = first
    for key, ttl, names, amounts in hashes:
        if any(isinstance(amount, str) for amount in amounts):
            first.append((key, ttl, names, amounts))
            continue
        start = 0
        while start < len(names):
            if room <= HASH_COST:
                part = []
                later.append(part)
                room = limit
            stop = min(len(names), start + room - HASH_COST)
            if start == 0 and stop == len(names):
                part.append((key, ttl, names, amounts))
            else:
                part.append((key, ttl, names[start:stop], amounts[start:stop]))
            room -= stop - start + HASH_COST
            start = stop
    return first, later


def packed_parts(
    journal: str, later: list[list[HashIncrements]]
) -> tuple[list[tuple[str, msgspec.Raw]], Pending]:
    """The first call's `parts` (each packed as the script stores it) and what the worker
    drains after it. Ids are random: two workers' parts never share one."""
    batch_id = secrets.token_hex(8)
    parts: list[tuple[str, msgspec.Raw]] = []
    drained: list[tuple[str, list[str]]] = []
    for index, hashes in enumerate(later):
        part_id = f"{batch_id}:{index}"
        keys = [key for key, *_ in hashes]
        packed = _packer.encode(
            {
                "keys": keys,
                "hashes": [(i + 1, ttl, f, a) for i, (_, ttl, f, a) in enumerate(hashes)],
            }
        )
        parts.append((part_id, msgpack_str(packed)))
        drained.append((part_id, keys))
    return parts, Pending(journal, tuple(drained))


class Journal:
    """Drains journal parts through apply_batch.lua."""

    def __init__(self, client: aioredis.Redis, script: AsyncScript, keys: KpiKeys) -> None:
        self._client = client
        self._script = script
        self._keys = keys
        # parts of batches already written that this worker has still to apply: a Redis
        # error between two of them leaves the rest here for the next batch's drain (the
        # stage retries the batch, whose first call is then refused as already counted)
        self._owed: deque[tuple[str, str, list[str]]] = deque()

    async def drain(self, pending: Pending) -> None:
        """Apply the parts a batch's first call left, and any owed from before."""
        self._owed.extend((pending.journal, part_id, keys) for part_id, keys in pending.parts)
        while self._owed:
            await self._drain_part(*self._owed[0])
            self._owed.popleft()

    async def recover(self) -> int:
        """Apply every part a worker left (it died between its calls); how many."""
        applied = 0
        for journal in await self._journals():
            for part_id, keys in await self._parts(journal):
                if await self._drain_part(journal, part_id, keys):
                    applied += 1
        if applied:
            logger.info("applied %d journal parts a stopped worker left", applied)
        return applied

    async def _journals(self) -> list[str]:
        if not self._keys.tenant_slots:
            return [self._keys.journal("")]
        # A cluster keeps one per tenant's slot; scanned on each assignment, not per batch.
        pattern = f"{self._keys.prefix}journal:*"
        try:
            return [_text(key) async for key in self._client.scan_iter(match=pattern, count=1000)]
        except RedisError as exc:
            raise KpiStoreError(f"cannot list the journals: {exc}") from exc

    async def _parts(self, journal: str) -> list[tuple[str, list[str]]]:
        """The parts in a journal, with the keys each writes where a cluster must be told
        them (one Redis reads them from the part itself)."""
        try:
            if not self._keys.tenant_slots:
                return [(_text(part_id), []) for part_id in await self._client.hkeys(journal)]
            held = await self._client.hgetall(journal)
        except RedisError as exc:
            raise KpiStoreError(f"cannot read the journal {journal}: {exc}") from exc
        return [
            (_text(part_id), _PART_KEYS.decode(_bytes(blob)).keys) for part_id, blob in held.items()
        ]

    async def _drain_part(self, journal: str, part_id: str, keys: list[str]) -> bool:
        batch: dict[str, Any] = {"journal": 1, "drain": part_id}
        declared = [journal]
        if self._keys.tenant_slots:
            declared += keys  # a cluster routes by declared keys
        else:
            batch["keys"] = declared
        try:
            reply = await self._script(keys=declared, args=[_packer.encode(batch)])
        except RedisError as exc:
            raise KpiStoreError(f"redis rejected journal part {part_id}: {exc}") from exc
        status = int(reply[0])
        if status == 3:
            key, name = (_text(part) for part in reply[1:3])
            logger.error(
                "journal part %s stays in %s: an increment would take %s field %s past "
                "Redis's 64-bit limit",
                part_id, journal, key, name,
            )  # fmt: skip
            return False
        return status == 1  # else 4: someone else applied it


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
