"""A batch's hash writes cut into journal parts (streams/journal.py) on a real
redis-server and a real three-master Redis Cluster: the parts leave exactly what one call
leaves, a worker that dies after the first call leaves parts that the next worker
applies once (however many drain them at the same time), and a part that would take a
total past Redis's 64-bit limit stays in the journal, the rest applied."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import pytest
import redis.asyncio as aioredis

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.applier import KpiApplier
from streams.journal import ORPHAN_AFTER_S, STAGED, JournalPart, Pending
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests.redis_dump import dump, text

pytestmark = pytest.mark.integration

OFFSETS = {"crm.events:0": 2_999}
PART_FIELDS = 400
ONE_CALL = 10**9
TENANTS = ("acme", "globex", "hooli", "umbrella")
DIRECTORY = TenantDirectory(
    TenantsFile(tenants={name: BENCH_TENANTS.get("acme") for name in TENANTS})
)


class DrainRecorder:
    """Wraps a sink's drain: records the parts each first call left, and can die
    instead of draining them (the worker stopped between its calls)."""

    def __init__(self, sink: RedisKpiSink | SlaStore, *, die: bool = False) -> None:
        self.parts: list[str] = []
        self._drain = sink.journal.drain
        self._die = die
        sink.journal.drain = self  # type: ignore[method-assign]

    async def __call__(self, pending: Pending) -> None:
        self.parts += [part.part_id for part in pending.parts]
        if self._die and pending.parts:
            raise SystemExit("the worker died after the batch's first call")
        await self._drain(pending)


def kpi_sink(client: aioredis.Redis, keys: KpiKeys, part_fields: int) -> RedisKpiSink:
    return RedisKpiSink(
        client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200, part_fields=part_fields
    )


async def die_after_first_call(
    client: aioredis.Redis, keys: KpiKeys, batch: list[CrmEvent]
) -> tuple[RedisKpiSink, DrainRecorder]:
    """A worker that applies the batch's first call and dies before its parts."""
    dying = kpi_sink(client, keys, PART_FIELDS)
    recorder = DrainRecorder(dying, die=True)
    with pytest.raises(SystemExit):
        await KpiApplier(dying, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(batch, OFFSETS)
    return dying, recorder


def events(tenants: tuple[str, ...] = ("acme",)) -> list[CrmEvent]:
    # three days of two offices' traffic: thousands of hash fields in one batch
    return [
        msgspec.structs.replace(event, tenant=tenants[i % len(tenants)])
        for i, event in enumerate(synthetic_events(3_000, 7, "journal"))
    ]


async def one_call(client: aioredis.Redis, prefix: str, batch: list[CrmEvent]) -> dict[str, object]:
    keys = KpiKeys(prefix)
    sink = kpi_sink(client, keys, ONE_CALL)
    recorder = DrainRecorder(sink)
    await KpiApplier(sink, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(batch, OFFSETS)
    assert recorder.parts == []
    return await dump(client, keys.prefix)


async def test_journal_parts_leave_what_one_call_leaves(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await one_call(redis_client, f"{settings.redis_key_prefix}one:", batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}parts:")
    sink = kpi_sink(redis_client, keys, PART_FIELDS)
    recorder = DrainRecorder(sink)
    await KpiApplier(sink, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(batch, OFFSETS)

    assert len(recorder.parts) >= 10  # really cut up
    assert await dump(redis_client, keys.prefix) == expected  # the journal is gone too
    assert await sink.watermarks(list(OFFSETS)) == OFFSETS


async def test_parts_a_dead_worker_left_are_applied_once_by_the_next(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await one_call(redis_client, f"{settings.redis_key_prefix}one:", batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}dead:")
    dying, recorder = await die_after_first_call(redis_client, keys, batch)

    # the first call is in: ids, states and the watermark (Kafka will not redeliver)
    assert await dying.watermarks(list(OFFSETS)) == OFFSETS
    held = {text(part) for part in await redis_client.hkeys(keys.journal(""))}
    left = {part for part in held if not part.startswith(STAGED)}
    # each part committed (its mark) and staged beside it (its increments)
    assert left == set(recorder.parts)
    assert held - left == {f"{STAGED}{part}" for part in left}
    assert len(left) >= 10
    assert await dump(redis_client, keys.prefix) != expected

    # two workers assigned partitions at once both find the parts: each applied once
    first, second = kpi_sink(redis_client, keys, PART_FIELDS), kpi_sink(redis_client, keys, 1)
    applied = await asyncio.gather(first.finish_journals(), second.finish_journals())
    assert sum(applied) == len(left)
    assert await dump(redis_client, keys.prefix) == expected
    assert await first.finish_journals() == 0


async def test_parts_a_redis_error_left_are_applied_when_the_batch_is_retried(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await one_call(redis_client, f"{settings.redis_key_prefix}one:", batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}owed:")
    sink = kpi_sink(redis_client, keys, PART_FIELDS)
    drain_part = sink.journal._drain_part
    failures = iter([True])

    async def flaky(journal: str, part: JournalPart) -> bool:
        if next(failures, False):
            raise KpiStoreError("the connection to Redis was lost")
        return await drain_part(journal, part)

    sink.journal._drain_part = flaky  # type: ignore[method-assign]
    applier = KpiApplier(sink, DIRECTORY, keys, max_part_writes=ONE_CALL)
    with pytest.raises(KpiStoreError):
        await applier.apply(batch, OFFSETS)
    assert await redis_client.hlen(keys.journal("")) >= 10

    # the stage retries the batch: its first call is refused as counted, the refold
    # counts nothing, and the parts the worker still owes are applied
    await applier.apply(batch, OFFSETS)
    assert await dump(redis_client, keys.prefix) == expected


async def test_a_part_that_would_pass_the_64_bit_limit_stays_and_the_rest_apply(
    redis_client: aioredis.Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    batch = events()
    keys = KpiKeys(f"{settings.redis_key_prefix}limit:")
    await die_after_first_call(redis_client, keys, batch)
    journal = keys.journal("")
    held = {text(k): v for k, v in (await redis_client.hgetall(journal)).items()}
    parts = {k.removeprefix(STAGED): v for k, v in held.items() if k.startswith(STAGED)}
    # a field a part raises, its total already within 2^53 of 2^63 (only increments
    # sent as text could have taken it there)
    part_id, blob = next(iter(parts.items()))
    assert isinstance(blob, bytes)
    part = msgspec.msgpack.decode(blob)
    _, _, names, amounts = next(h for h in part["hashes"] if any(a > 0 for a in h[3]))
    key = part["keys"][next(i for i, h in enumerate(part["hashes"]) if h[2] is names)]
    name = next(n for n, a in zip(names, amounts, strict=True) if a > 0)
    near_limit = 9_000_000_000_000_000_000 - 1
    await redis_client.hset(key, name, near_limit)

    with caplog.at_level(logging.ERROR, logger="streams.journal"):
        assert await kpi_sink(redis_client, keys, PART_FIELDS).finish_journals() == len(parts) - 1
    assert {text(k) for k in await redis_client.hkeys(journal)} == {part_id, f"{STAGED}{part_id}"}
    assert int(await redis_client.hget(key, name) or 0) == near_limit
    assert f"{key} field {name}" in caplog.text


async def test_a_refused_first_call_leaves_no_staged_parts(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    keys = KpiKeys(f"{settings.redis_key_prefix}refused:")
    for _ in range(2):  # the second worker's first call is refused: all counted
        sink = kpi_sink(redis_client, keys, PART_FIELDS)
        recorder = DrainRecorder(sink)
        await KpiApplier(sink, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(batch, OFFSETS)
    assert recorder.parts == []  # nothing committed the second time ...
    assert await redis_client.hlen(keys.journal("")) == 0  # ... and nothing left staged


async def test_a_part_that_was_not_staged_refuses_the_batch(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    keys = KpiKeys(f"{settings.redis_key_prefix}unstaged:")
    sink = kpi_sink(redis_client, keys, PART_FIELDS)

    async def lost(pending: Pending) -> None:  # as if deleted as an orphan meanwhile
        return None

    sink.journal.stage = lost  # type: ignore[method-assign]
    with pytest.raises(KpiStoreError, match="was not staged"):
        await KpiApplier(sink, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(events(), OFFSETS)
    assert await sink.watermarks(list(OFFSETS)) == {}
    assert await dump(redis_client, keys.prefix) == {}


async def test_recovery_deletes_old_orphans_and_applies_the_version_befores_parts(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    expected = await one_call(redis_client, f"{settings.redis_key_prefix}one:", batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}older:")
    await die_after_first_call(redis_client, keys, batch)
    journal = keys.journal("")
    held = {text(k): v for k, v in (await redis_client.hgetall(journal)).items()}
    # the version before kept a whole part under its id, with no staged field
    for name, value in held.items():
        if name.startswith(STAGED):
            await redis_client.hset(journal, name.removeprefix(STAGED), value)
            await redis_client.hdel(journal, name)
    # staged parts no first call committed: one old, one young
    old = f"{int(time.time()) - ORPHAN_AFTER_S - 60}.0ld:0"
    young = f"{int(time.time())}.y0ung:0"
    for orphan in (old, young):
        await redis_client.hset(journal, f"{STAGED}{orphan}", next(iter(held.values())))

    assert await kpi_sink(redis_client, keys, PART_FIELDS).finish_journals() == len(held) // 2
    assert {text(k) for k in await redis_client.hkeys(journal)} == {f"{STAGED}{young}"}
    await redis_client.hdel(journal, f"{STAGED}{young}")
    assert await dump(redis_client, keys.prefix) == expected


async def test_the_sla_stage_cuts_its_hash_writes_too(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events()
    dumps = []
    drained = []
    for name, part_fields in (("one", ONE_CALL), ("parts", 20)):
        keys = KpiKeys(f"{settings.redis_key_prefix}sla-{name}:")
        store = SlaStore(redis_client, keys, group="g", day_ttl_s=7200, part_fields=part_fields)
        recorder = DrainRecorder(store)
        applier = SlaApplier(store, DIRECTORY, keys)
        await applier.commit(await applier.prepare(batch), OFFSETS)
        dumps.append(await dump(redis_client, keys.prefix))
        drained.append(len(recorder.parts))
    assert drained[0] == 0
    assert drained[1] >= 3
    assert dumps[1] == dumps[0]


async def test_on_a_cluster_each_tenant_slot_keeps_its_parts_and_the_next_worker_finds_them(
    redis_client: aioredis.Redis, cluster_client: aioredis.Redis, settings: Settings
) -> None:
    batch = events(TENANTS)
    expected = await one_call(redis_client, f"{settings.redis_key_prefix}one:", batch)
    keys = KpiKeys(f"{settings.redis_key_prefix}cl:", tenant_slots=True)
    await die_after_first_call(cluster_client, keys, batch)
    # the first tenant's call is in and left its parts in its own slot's journal
    journals = [
        text(key)
        async for key in cluster_client.scan_iter(match=f"{keys.prefix}journal:*", count=1000)
    ]
    assert len(journals) == 1

    # redelivered (the watermark waits for every tenant): the written tenant's events
    # are refused as counted, the others written; the new worker drains every part
    restarted = kpi_sink(cluster_client, keys, PART_FIELDS)
    await KpiApplier(restarted, DIRECTORY, keys, max_part_writes=ONE_CALL).apply(batch, OFFSETS)
    assert await restarted.finish_journals() >= 1
    assert await dump(cluster_client, keys.prefix) == expected
