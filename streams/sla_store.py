"""The Redis edge of the SLA pipeline: conversation states in, SlaFolds out, exactly once.

It writes through the KPI pipeline's batch script (streams/apply_batch.lua), so a
batch's states, response-time increments, waiting-index moves, "last event received"
marks and partition watermarks land in one atomic step (bucket fields past the first
call's share follow as journal parts, streams/journal.py). A conversation state is a join,
so a repeated event changes nothing while the state is kept; the state is forgotten
after SALESPULSE_CONVERSATION_RETENTION_DAYS, so each event joined also gets a
permanent mark (`smark:`, streams/event_marks.py), checked and appended in the same
call: the script refuses a batch with marked events, and the applier refolds without
them (streams/sla_fold.py), so a replay at any later time counts no response twice.
Concurrent writers (one conversation's events may sit on two partitions, keyed by
conversation and by deal) are caught by the state versions: a refused batch is
refolded on fresh states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import day_horizon_us
from salespulse.core.kpi.codecs import (
    WaitingMember,
    conversation_ref,
    decode_waiting_member,
    encode_received_ms,
    frame_state,
    split_state,
)
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory
from streams.event_marks import by_field, msgpack_str
from streams.journal import (
    PART_FIELDS,
    Journal,
    exact_increments,
    hash_writes,
)
from streams.off_loop import OffLoop
from streams.outside_slots import OutsideSlots, split_sla_fold
from streams.redis_sink import (
    ApplyOutcome,
    ScriptCall,
    ScriptKeys,
    apply_script,
    bucket_ttls,
    mget_chunked,
    read_watermarks,
    refused_overflow,
    retention_days,
    script_call,
)
from streams.sla_fold import (
    ConversationStates,
    SlaFold,
    WaitLimit,
    decode_conversation,
    expired,
    fold_conversations,
    max_wait_s,
)

MAX_REFOLDS = 8


class SlaStore:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KpiKeys,
        *,
        group: str,
        day_ttl_s: int,
        month_ttl_s: int | None = None,
        conversation_ttl_s: int = 0,
        part_fields: int = PART_FIELDS,
    ) -> None:
        self._client = client
        self._part_fields = part_fields
        # a conversation state expires this long after its last event (0: kept)
        self._conversation_ttl_s = conversation_ttl_s
        self._keys = keys
        self._group = group
        self._ttl = bucket_ttls(day_ttl_s, month_ttl_s)
        self.day_retention_days = retention_days(day_ttl_s)
        self._script = client.register_script(apply_script())
        self.journal = Journal(client, self._script, keys)
        self._off_loop = OffLoop("salespulse-sla-pack")
        # Redis Cluster: one script call per tenant, the rest written after them
        self._outside = OutsideSlots(client, keys, group=group) if keys.tenant_slots else None

    async def load(self, keys: Sequence[str]) -> ConversationStates:
        if not keys:
            return {}
        replies = await mget_chunked(self._client, list(keys), "conversation states")
        states: ConversationStates = {}
        for key, held in zip(keys, replies, strict=True):
            if held is not None:
                version, blob = split_state(held)
                states[key] = (version, decode_conversation(blob))
        return states

    async def apply(self, fold: SlaFold, offsets: dict[str, int]) -> ApplyOutcome:
        """Write the fold, unless events were marked before or states changed since they
        were read (nothing written then)."""
        if self._outside is not None:
            return await self._apply_by_tenant(self._outside, fold, offsets)
        return await self.apply_part(fold, offsets)

    async def apply_part(self, fold: SlaFold, offsets: dict[str, int]) -> ApplyOutcome:
        """One script call: the whole fold on one Redis, a tenant's part on a cluster."""
        call = await self._off_loop.run(self.arguments, fold, offsets)
        await self.journal.stage(call.pending)
        try:
            reply = await self._script(keys=call.keys, args=[call.batch])
        except RedisError as exc:
            raise KpiStoreError(f"redis rejected the SLA batch: {exc}") from exc
        status = int(reply[0])
        await self.journal.settle(reply, call.pending)
        if (overflow := refused_overflow(reply)) is not None:
            raise overflow
        named = [k.decode() if isinstance(k, bytes) else k for k in reply[1:]]
        if status == 1:
            await self.journal.drain(call.pending)
            return ApplyOutcome(applied=True)
        if status == 2:
            return ApplyOutcome(applied=False, conflicts=tuple(named))
        # {0, mark key, id, ...}: the tenant of each mark key, as the fold named them
        owner = {self._keys.sla_mark(tenant, day): tenant for tenant, day in fold.marked}
        counted = {(owner[named[i]], named[i + 1]) for i in range(0, len(named), 2)}
        return ApplyOutcome(applied=False, already_counted=frozenset(counted))

    async def _apply_by_tenant(
        self, outside: OutsideSlots, fold: SlaFold, offsets: dict[str, int]
    ) -> ApplyOutcome:
        """Cluster mode: one script call per tenant's slot, then the keys of no tenant.
        A conflict stops here (the tenants before it are written): the refold on fresh
        states finds their events already joined, and they contribute nothing again."""
        for part in split_sla_fold(self._keys, fold).values():
            outcome = await self.apply_part(part, {})
            if not outcome.applied:
                return outcome
        tenants = fold.last_received
        await outside.write(tenants=tenants, last_received=tenants, marks=offsets)
        return ApplyOutcome(applied=True)

    def arguments(self, fold: SlaFold, offsets: dict[str, int]) -> ScriptCall:
        """The script call (see apply_batch.lua for the batch's layout)."""
        keys = self._keys
        slots = ScriptKeys()
        at = slots.at
        zsets: list[tuple[str, int, str, int]] = []
        for tenant, removed, added, score in fold.waiting_moves:
            if removed is not None:
                zsets.append(("r", at(keys.waiting(tenant)), removed, 0))
            if added is not None:
                zsets.append(("a", at(keys.waiting(tenant)), added, score))
        marks = [
            (
                at(keys.sla_mark(tenant, day)),
                [
                    (name, msgpack_str(b"".join(remainders)), shard_ids)
                    for name, (remainders, shard_ids) in by_field(ids).items()
                ],
            )  # no dedupe set to look in: the SLA stage never kept one
            for (tenant, day), ids in fold.marked.items()
            if ids
        ]
        entities_at = slots.extend(list(fold.entity_writes))
        hashes, pending = hash_writes(
            slots,
            [
                (keys.bucket(*bucket), self._ttl[bucket[1]], *exact_increments(fields))
                for bucket, fields in fold.increments.items()
            ],
            keys.journal(next(iter(fold.increments))[0] if fold.increments else ""),
            self._part_fields,
        )
        ttl = self._conversation_ttl_s
        batch = {
            "ttl": 0,
            # declared only when written: in cluster mode these are in other slots
            "offsets": at(keys.offsets(self._group)) if offsets else 0,
            "seen": [],
            "marked": marks,
            "entities": [
                (entities_at + i, version, frame_state(version + 1, blob), ttl)
                for i, (version, blob) in enumerate(fold.entity_writes.values())
            ],
            **hashes,
            "zsets": zsets,
            "fields": [
                ("m", at(keys.last_received), tenant, encode_received_ms(ms))
                for tenant, ms in fold.last_received.items()
            ],
            "members": [(at(keys.tenants), tenant) for tenant in sorted(fold.last_received)],
            "marks": list(offsets.items()),
        }
        return script_call(slots.names, batch, cluster=keys.tenant_slots, pending=pending)

    async def expire_waits(
        self, cutoffs: dict[str, int], expired: Callable[[str, WaitingMember, int], bool]
    ) -> int:
        """Drop each tenant's waits opened before its cutoff (µs; the shortest maximum of
        its policies) that ``expired(tenant, member, opened µs)`` says are past their own
        maximum; returns how many left.

        Outside the batch script: a wait is only ever removed, so a concurrent batch
        cannot be contradicted (it re-adds a wait only if a late contact reopens it, and
        then with its opening instant, which the next expiry sees again)."""
        names = sorted(cutoffs)
        if not names:
            return 0
        try:
            pipe = self._client.pipeline(transaction=False)
            for tenant in names:
                pipe.zrangebyscore(
                    self._keys.waiting(tenant), "-inf", f"({cutoffs[tenant]}", withscores=True
                )
            found = await pipe.execute()
            for tenant, candidates in zip(names, found, strict=True):
                leaving = [
                    raw
                    for raw, score in candidates
                    if expired(tenant, decode_waiting_member(raw), int(score))
                ]
                if leaving:
                    pipe.zrem(self._keys.waiting(tenant), *leaving)
            return sum(int(removed) for removed in await pipe.execute())
        except RedisError as exc:
            raise KpiStoreError(f"cannot expire waits: {exc}") from exc

    async def watermarks(self, partitions: list[str]) -> dict[str, int]:
        return await read_watermarks(self._client, self._keys.offsets(self._group), partitions)

    async def finish_journals(self) -> int:
        """Apply the journal parts a stopped worker left (streams/journal.py)."""
        return await self.journal.recover()


def conversation_keys(keys: KpiKeys, events: Sequence[CrmEvent]) -> list[str]:
    """The state keys of the conversations the events belong to, sorted."""
    refs = {
        keys.entity(event.tenant, "conv", ref)
        for event in events
        if (ref := conversation_ref(event)) is not None
    }
    return sorted(refs)


@dataclass
class PreparedSla:
    events: Sequence[CrmEvent]
    keys: list[str]
    fold: SlaFold
    limit: WaitLimit | None
    # SlaApplier's generation when folded: an older one is refolded from Redis
    generation: int = 0


def _written_states(fold: SlaFold) -> ConversationStates:
    return {
        key: (version + 1, fold.new_states[key]) for key, (version, _) in fold.entity_writes.items()
    }


class SlaApplier:
    """Load → fold → apply, refolded on fresh states until the store accepts the batch;
    then the batch's tenants' waits older than the maximum age leave the waiting list.

    The stage folds batch N+1 while batch N is written (streams/store_stage.py), so N+1
    is folded on the states N leaves (``_pending``), not on Redis's, which N has not
    changed yet: a conversation spans batches, and read from Redis every such batch was
    refused on its versions and folded twice (a history replay of 100,000 events, old and
    new code alternated: the SLA worker's CPU 40 → 21 µs an event, Redis's 11.3 → 7).
    Redis still judges: the versions N writes are the ones N+1 expects. When N is
    written other than as folded (refolded, or failed), batches folded on its states are
    folded again from Redis before they are written (a new generation), as the KPI
    applier does (streams/applier.py).
    """

    def __init__(
        self,
        store: SlaStore,
        tenants: TenantDirectory,
        keys: KpiKeys,
        *,
        wait_max_age_s: float | None = None,
        on_waits_expired: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._tenants = tenants
        self._keys = keys
        self._wait_max_age_s = wait_max_age_s
        self._on_waits_expired = on_waits_expired
        # the fold costs more than the KPI one (30-37 µs an event): never on the loop
        self._off_loop = OffLoop("salespulse-sla-fold")
        # the states the last batch folded writes, at the versions it writes them
        self._pending: ConversationStates = {}
        self._generation = 0
        self._day_horizon = day_horizon_us(store.day_retention_days)

    async def prepare(self, events: Sequence[CrmEvent]) -> PreparedSla:
        generation = self._generation  # before any await: a commit may deviate meanwhile
        keys = await self._off_loop.run(conversation_keys, self._keys, events)
        pending = self._pending
        states = await self._store.load([key for key in keys if key not in pending])
        for key in keys:
            held = pending.get(key)
            if held is not None:
                states[key] = held
        limit = self._limit()
        fold = await self._fold(events, states, limit)
        if generation == self._generation:
            self._pending = _written_states(fold)
        return PreparedSla(events, keys, fold, limit, generation)

    async def commit(self, prepared: PreparedSla, offsets: dict[str, int]) -> SlaFold:
        """Write the batch; events the store reports marked (a redelivery, a replay) are
        refolded as counted before, on fresh states."""
        fold = prepared.fold
        if prepared.generation != self._generation:  # folded on states never written
            states = await self._store.load(prepared.keys)
            fold = await self._fold(prepared.events, states, prepared.limit)
        skip: frozenset[tuple[str, str]] = frozenset()
        for _ in range(MAX_REFOLDS):
            try:
                outcome = await self._store.apply(fold, offsets)
            except BaseException:
                self._new_generation()  # unknown whether it was written: trust Redis only
                raise
            if outcome.applied:
                if fold is not prepared.fold:
                    self._new_generation()
                await self._expire_waits(prepared.events, fold.waits_expired)
                return fold
            skip |= outcome.already_counted
            states = await self._store.load(prepared.keys)
            fold = await self._fold(prepared.events, states, prepared.limit, skip)
        self._new_generation()
        raise KpiStoreError("SLA batch kept meeting concurrent changes; refusing to loop")

    def _new_generation(self) -> None:
        self._generation += 1
        self._pending = {}

    async def _fold(
        self,
        events: Sequence[CrmEvent],
        states: ConversationStates,
        limit: WaitLimit | None,
        skip: frozenset[tuple[str, str]] = frozenset(),
    ) -> SlaFold:
        return await self._off_loop.run(
            fold_conversations, events, self._tenants, self._keys, states, limit, skip,
            self._day_horizon,
        )  # fmt: skip

    def _limit(self) -> WaitLimit | None:
        if self._wait_max_age_s is None:
            return None
        return WaitLimit(round(time.time() * 1_000_000), self._wait_max_age_s)

    async def _expire_waits(self, events: Sequence[CrmEvent], kept_off: int) -> None:
        """Waits past their maximum leave the list; with those the fold kept off it, they
        are counted as expired."""
        limit = self._limit()
        if limit is None:
            return
        cutoffs: dict[str, int] = {}
        for tenant in {e.tenant for e in events}:
            sla = self._tenants.get(tenant).sla
            shortest = min(
                m
                for m in (
                    limit.default_max_wait_s,
                    sla.max_wait,
                    *(p.max_wait for p in sla.policies),
                )
                if m is not None
            )
            cutoffs[tenant] = limit.now_us - round(shortest * 1_000_000)

        def past_maximum(tenant: str, member: WaitingMember, opened_us: int) -> bool:
            config = self._tenants.get(tenant)
            pipeline = member.pipeline or None
            longest = max_wait_s(config, member.channel, pipeline, limit.default_max_wait_s)
            return expired(opened_us, limit.now_us, longest)

        left = await self._store.expire_waits(cutoffs, past_maximum)
        if left + kept_off and self._on_waits_expired is not None:
            self._on_waits_expired(left + kept_off)
