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
  ``PART_FIELDS`` writes, and commits the remaining hash increments as parts of a
  journal hash (`KpiKeys.journal`), all in one atomic step;
* each later call applies one part and deletes it, again in one step, so a part is
  applied once whoever drains it: the worker that wrote it, right after, or, when that
  worker died in between, the next one that is assigned partitions (``recover``).

A part's increments do not pass through the first call. The worker stores each packed
part (field ``part:<id>``) with a plain HSET just before it, and the first call only
checks that they are there and writes a one-byte commit mark under ``<id>``; the drain
gets the part from the worker (who still holds it, or read it back) and applies it if
the mark is there. Every string handed to Redis's Lua is copied and hashed (an
argument, a string inside it, a reply): a part carried in the first call's argument
went through Lua three times more than its drain needs, ~900 KB a 5,000-event batch at
400 managers. Staged, the first call is that much shorter and Redis does 3.6 % fewer
instructions per event (callgrind on redis-server). A part whose first call was refused
(or never ran) has no mark: the worker deletes it, or ``recover`` does once it is
``ORPHAN_AFTER_S`` old, checking the mark in the same script step.

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
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.kpi.redis_layout import KpiKeys

logger = logging.getLogger(__name__)

# Hash writes per call (a field, or a hash's HMGET and EXPIRE). Redis writes a field in
# ~1-4 µs (its share of the HMGET and the HSET, the MessagePack decode of its name):
# 2,000 are ~2-8 ms. Since parts are staged outside the first call, a smaller share
# costs little: parts of 2,000 rather than 4,000 took 1.0 % more of Redis's
# instructions per event at 400 managers and 1.5 % at 4,000 (callgrind on
# redis-server), for a first call of a 5,000-event batch ~2.5 ms shorter (~18 ms on a
# fast 2-core VM, where the rest is its per-event checks and writes).
PART_FIELDS = 2_000
# The HMGET and the EXPIRE of a hash, counted as writes beside its fields.
HASH_COST = 2

# A part staged without a commit mark this long ago is one whose first call was refused
# or never ran (the worker stages a part just before its first call).
ORPHAN_AFTER_S = 3600
# The field prefix of a staged part; the bare id is its commit mark.
STAGED = "part:"
# The value of a commit mark. A journal written by the version before holds the whole
# packed part under its id (no staged field): drained by the script reading it.
COMMITTED = b"1"

_packer = msgspec.msgpack.Encoder()


class _Part(msgspec.Struct):
    keys: list[str]


_PART_KEYS = msgspec.msgpack.Decoder(_Part)

# key, TTL (s, 0 = keep), field names, increments (int, or decimal text past 2^53)
HashIncrements = tuple[str, int, list[str], Sequence[int | str]]


class JournalPart(NamedTuple):
    """One part of a batch's hash increments: its id, the keys it writes (a cluster
    routes a call by them), and the part packed as the script reads it."""

    part_id: str
    keys: list[str]
    packed: bytes


@dataclass(frozen=True)
class Pending:
    """The parts a batch's first call commits, staged before it and drained after it."""

    journal: str = ""
    parts: tuple[JournalPart, ...] = ()


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


def packed_parts(journal: str, later: list[list[HashIncrements]]) -> tuple[list[str], Pending]:
    """The ids the first call commits (its `parts`) and the parts, packed as the script
    reads them, to stage before it and drain after it. Ids are random, after the time
    they were made (whole seconds): two workers' parts never share one, and ``recover``
    tells an orphan's age."""
    batch_id = f"{int(time.time())}.{secrets.token_hex(6)}"
    parts: list[JournalPart] = []
    for index, hashes in enumerate(later):
        keys = [key for key, *_ in hashes]
        packed = _packer.encode(
            {
                "keys": keys,
                "hashes": [(i + 1, ttl, f, a) for i, (_, ttl, f, a) in enumerate(hashes)],
            }
        )
        parts.append(JournalPart(f"{batch_id}:{index}", keys, packed))
    return [part.part_id for part in parts], Pending(journal, tuple(parts))


class Journal:
    """Stages, drains and recovers journal parts through apply_batch.lua."""

    def __init__(self, client: aioredis.Redis, script: AsyncScript, keys: KpiKeys) -> None:
        self._client = client
        self._script = script
        self._keys = keys
        # parts of batches already written that this worker has still to apply: a Redis
        # error between two of them leaves the rest here for the next batch's drain (the
        # stage retries the batch, whose first call is then refused as already counted)
        self._owed: deque[tuple[str, JournalPart]] = deque()

    async def stage(self, pending: Pending) -> None:
        """Store the parts before the first call that commits them."""
        if not pending.parts:
            return
        staged = {f"{STAGED}{part.part_id}": part.packed for part in pending.parts}
        try:
            await self._client.hset(pending.journal, mapping=staged)  # type: ignore[arg-type]
        except RedisError as exc:
            raise KpiStoreError(f"cannot stage journal parts in {pending.journal}: {exc}") from exc

    async def settle(self, reply: list[bytes], pending: Pending) -> None:
        """After a batch's first call: a refused one committed none of its staged parts,
        which are deleted; {5, id} (a part was not staged: deleted as an orphan while the
        worker stood still for ``ORPHAN_AFTER_S``; nothing written) raises, to retry."""
        status = int(reply[0])
        if status == 1:
            return
        await self.discard(pending)
        if status == 5:
            part_id = _text(reply[1])
            raise KpiStoreError(f"journal part {part_id} was not staged; the batch is retried")

    async def discard(self, pending: Pending) -> None:
        """Delete the staged parts of a first call that was refused (nothing committed
        them). An error leaves them to ``recover``."""
        if not pending.parts:
            return
        staged = [f"{STAGED}{part.part_id}" for part in pending.parts]
        try:
            await self._client.hdel(pending.journal, *staged)
        except RedisError as exc:
            logger.warning("refused batch's journal parts left for later: %s", exc)

    async def drain(self, pending: Pending) -> None:
        """Apply the parts a batch's first call committed, and any owed from before."""
        self._owed.extend((pending.journal, part) for part in pending.parts)
        while self._owed:
            await self._drain_part(*self._owed[0])
            self._owed.popleft()

    async def recover(self) -> int:
        """Apply every part a worker left (it died between its calls); how many. Staged
        parts that no first call committed are deleted once ``ORPHAN_AFTER_S`` old."""
        applied = 0
        for journal in await self._journals():
            committed, orphans = await self._parts(journal)
            for part in committed:
                if await self._drain_part(journal, part):
                    applied += 1
            for part_id in orphans:
                await self._call(journal, {"journal": 1, "forget": part_id}, [])
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

    async def _parts(self, journal: str) -> tuple[list[JournalPart], list[str]]:
        """The committed parts in a journal, and the ids of old staged parts nothing
        committed."""
        try:
            fields = await self._client.hgetall(journal)
            held = {_text(name): _bytes(value) for name, value in fields.items()}
        except RedisError as exc:
            raise KpiStoreError(f"cannot read the journal {journal}: {exc}") from exc
        committed: list[JournalPart] = []
        orphans: list[str] = []
        for name, value in held.items():
            if name.startswith(STAGED):
                part_id = name.removeprefix(STAGED)
                if part_id not in held and _age_s(part_id) > ORPHAN_AFTER_S:
                    orphans.append(part_id)
                continue
            # b"1": committed, staged beside it; else the version before's whole part
            packed = held.get(f"{STAGED}{name}", b"") if value == COMMITTED else value
            if packed:
                committed.append(JournalPart(name, _PART_KEYS.decode(packed).keys, packed))
            else:
                logger.error("journal part %s in %s was committed, never staged", name, journal)
        return committed, orphans

    async def _drain_part(self, journal: str, part: JournalPart) -> bool:
        # the part inline: the script decodes it with the call, not from a reply
        batch = {"journal": 1, "drain": part.part_id, "part": msgspec.Raw(part.packed)}
        reply = await self._call(journal, batch, part.keys)
        status = int(reply[0])
        if status == 3:
            key, name = (_text(value) for value in reply[1:3])
            logger.error(
                "journal part %s stays in %s: an increment would take %s field %s past "
                "Redis's 64-bit limit",
                part.part_id, journal, key, name,
            )  # fmt: skip
            return False
        return status == 1  # else 4: someone else applied it

    async def _call(self, journal: str, batch: dict[str, object], keys: list[str]) -> list[bytes]:
        declared = [journal]
        if self._keys.tenant_slots:
            declared += keys  # a cluster routes by declared keys
        else:
            batch["keys"] = declared
        try:
            reply: list[bytes] = await self._script(keys=declared, args=[_packer.encode(batch)])
        except RedisError as exc:
            what = batch.get("drain") or batch.get("forget")
            raise KpiStoreError(f"redis rejected journal part {what}: {exc}") from exc
        return reply


def _age_s(part_id: str) -> float:
    """Seconds since a part was made (its id starts with the time); a part of the version
    before has no time in its id and is never staged."""
    made, dot, _ = part_id.partition(".")
    return time.time() - int(made) if dot and made.isdigit() else 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
