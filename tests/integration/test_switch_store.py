"""The rebuild's switch script on the real Redis: what it replaces, what it leaves alone."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from salespulse.core.kpi.redis_layout import STORE_FAMILIES, KpiKeys
from streams.rebuild import _glob_escape, switch_script

pytestmark = pytest.mark.integration


async def switch(client: aioredis.Redis, keys: KpiKeys, groups: list[str]) -> list[object]:
    script = client.register_script(switch_script())
    pattern = _glob_escape(keys.prefix) + "*"
    args = [keys.prefix, keys.staging().prefix, pattern, " ".join(STORE_FAMILIES), *groups]
    return list(await script(args=args))


async def test_the_switch_replaces_the_store_and_leaves_other_keys_alone(
    redis_client: aioredis.Redis, unique: str
) -> None:
    # A prefix with glob characters: the KEYS pattern must match it literally.
    keys = KpiKeys(f"t-{unique}[*]:")
    other = KpiKeys(f"t-{unique}x:")  # another deployment on the same Redis
    staging = keys.staging()
    old_only = keys.bucket("acme", "d", "2026-11-19")
    await redis_client.hset(old_only, "calls", 1)
    # marks of events the rebuilt set never counted: if kept, those events never would be
    old_marks = [keys.mark("acme", "2026-11-19"), keys.sla_mark("acme", "2026-11-19")]
    for marks in old_marks:
        await redis_client.hset(marks, "00", b"\x01" * 7)
    await redis_client.hset(keys.bucket("acme", "all", "all"), "calls", 2)
    await redis_client.set(keys.entity("acme", "deal", "d-1"), "3:{}")
    await redis_client.hset(keys.offsets("kpi"), "crm.events:0", 10)
    await redis_client.set(keys.store_reset, "kpi: wiped")
    await redis_client.set(keys.store_epoch, "e1")
    crm_state = f"{keys.prefix}crmstate:acme:bitrix24:deal:7"  # the enrichment's, not ours
    await redis_client.set(crm_state, "{}")
    await redis_client.hset(other.bucket("acme", "all", "all"), "calls", 5)

    await redis_client.hset(staging.bucket("acme", "all", "all"), "calls", 7)
    await redis_client.set(staging.entity("acme", "deal", "d-1"), '2:{"stage":"won"}')
    await redis_client.expire(staging.entity("acme", "deal", "d-1"), 3600)
    await redis_client.hset(staging.offsets("kpi"), "crm.events:0", 9)

    # Staging behind a live worker: refused, nothing changed.
    refused = await switch(redis_client, keys, ["kpi"])
    assert refused[0] == 0
    assert await redis_client.hget(keys.bucket("acme", "all", "all"), "calls") == b"2"

    await redis_client.hset(staging.offsets("kpi"), "crm.events:0", 12)
    done = await switch(redis_client, keys, ["kpi"])
    assert done[0] == 1
    assert await redis_client.hget(keys.bucket("acme", "all", "all"), "calls") == b"7"
    assert await redis_client.exists(old_only, keys.store_reset, *old_marks) == 0
    assert await redis_client.hget(keys.offsets("kpi"), "crm.events:0") == b"12"
    held = await redis_client.get(keys.entity("acme", "deal", "d-1"))
    assert isinstance(held, bytes)
    version, _, state = held.partition(b":")
    assert int(version) > 10**15
    assert state == b'{"stage":"won"}'
    assert 0 < await redis_client.ttl(keys.entity("acme", "deal", "d-1")) <= 3600
    assert await redis_client.get(crm_state) == b"{}"
    assert await redis_client.get(keys.store_epoch) == b"e1"
    assert await redis_client.hget(other.bucket("acme", "all", "all"), "calls") == b"5"
    left = _glob_escape(staging.prefix) + "*"
    assert [k async for k in redis_client.scan_iter(match=left)] == []
