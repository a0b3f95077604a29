"""The SLA stage's permanent marks on a real redis-server: a history replayed again after
its conversations' states expired counts no response, SLA verdict or abandoned call
twice, and a redelivered batch changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from streams.applier import KpiApplier
from streams.event_marks import REMAINDER_BYTES
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests.helpers import T0, make_event

pytestmark = pytest.mark.integration

# a target, so that every response is also an SLA verdict (met or breached)
TENANTS = TenantDirectory(
    TenantsFile(
        tenants={
            "acme": TenantConfig.model_validate({"sla": {"policies": [{"first_response": "5m"}]}})
        }
    )
)


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


def sla(client: aioredis.Redis, keys: KpiKeys) -> SlaApplier:
    """A new worker's applier (no state in memory)."""
    store = SlaStore(client, keys, group="sla", day_ttl_s=7200, conversation_ttl_s=3600)
    return SlaApplier(store, TENANTS, keys)


def at(minutes: int) -> dict[str, Any]:
    return {"occurred_at": T0 + timedelta(minutes=minutes), "backfill": True}


def history(conversations: range) -> list[CrmEvent]:
    """Per conversation: a chat answered in 2 minutes, a second contact answered in 10
    (breached), a missed call never called back (abandoned), and an open contact."""
    events: list[CrmEvent] = []
    for n in conversations:
        chat = {"conversation_id": f"conv-{n}"}
        events += [
            make_event(f"in-{n}", "message", **chat, **at(n)),
            make_event(f"out-{n}", "message", **chat, direction="out", **at(n + 2)),
            make_event(f"in2-{n}", "message", **chat, **at(n + 20)),
            make_event(f"out2-{n}", "message", **chat, direction="out", **at(n + 30)),
            make_event(f"missed-{n}", "call", client_id=f"k-{n}", answered=False, **at(n)),
            make_event(f"open-{n}", "message", conversation_id=f"open-{n}", **at(n)),
        ]
    return events


async def apply(applier: SlaApplier, events: list[CrmEvent]) -> None:
    await applier.commit(await applier.prepare(events), {})


async def buckets(client: aioredis.Redis, keys: KpiKeys) -> dict[bytes, dict[Any, Any]]:
    found = [key async for key in client.scan_iter(f"{keys.prefix}kpi:*")]
    return {key: await client.hgetall(key) for key in found}


def totals(held: dict[bytes, dict[Any, Any]], component: str) -> int:
    """The sum of a component over the `all` bucket's fields (every dimension)."""
    return sum(
        int(value)
        for key, fields in held.items()
        if b":all:" in key
        for field, value in fields.items()
        if f'"{component}"'.encode() in field
    )


async def sla_marks(client: aioredis.Redis, keys: KpiKeys) -> int:
    """How many marks the SLA stage holds (7 bytes each, packed)."""
    found = [key async for key in client.scan_iter(f"{keys.prefix}smark:*")]
    held = [value for key in found for value in (await client.hgetall(key)).values()]
    assert sum(map(len, held)) % REMAINDER_BYTES == 0
    return sum(map(len, held)) // REMAINDER_BYTES


async def forget_conversations(client: aioredis.Redis, keys: KpiKeys) -> int:
    """What SALESPULSE_CONVERSATION_RETENTION_DAYS does to a conversation left alone."""
    states = [key async for key in client.scan_iter(f"{keys.prefix}ent:*:conv:*")]
    if states:
        await client.delete(*states)
    return len(states)


async def test_a_replay_after_the_conversations_expired_counts_no_response_twice(
    redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    events = history(range(3))
    # The KPI stage counts and marks the same events first: its marks are not the SLA's.
    kpi = RedisKpiSink(redis_client, keys, group="kpi", dedupe_ttl_s=3600, day_ttl_s=7200)
    await KpiApplier(kpi, TENANTS, keys).apply(events, {})
    await apply(sla(redis_client, keys), [*events, events[0]])  # a CRM retry within it
    once = await buckets(redis_client, keys)
    assert await sla_marks(redis_client, keys) == len(events)  # each joined event once
    assert totals(once, "resp_n:first:chat") == 3
    assert totals(once, "resp_n:next:chat") == 3
    assert totals(once, "sla_met:first:chat") == 3
    assert totals(once, "sla_breach:next:chat") == 3
    assert totals(once, "calls_abandoned") == 3

    assert await forget_conversations(redis_client, keys) == 9
    await apply(sla(redis_client, keys), events)
    assert await buckets(redis_client, keys) == once

    # Replayed once more beside new conversations: only the new ones count.
    await forget_conversations(redis_client, keys)
    await apply(sla(redis_client, keys), [*events, *history(range(3, 5))])
    more = await buckets(redis_client, keys)
    assert totals(more, "resp_n:first:chat") == 5
    assert totals(more, "sla_breach:next:chat") == 5
    assert totals(more, "calls_abandoned") == 5
    assert await sla_marks(redis_client, keys) == len(events) + 12


async def test_a_redelivered_batch_changes_nothing_and_a_live_copy_still_lists_its_wait(
    redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    events = history(range(2))
    await apply(sla(redis_client, keys), events)
    once = await buckets(redis_client, keys)
    states = {
        key: await redis_client.get(key)
        async for key in redis_client.scan_iter(f"{keys.prefix}ent:*:conv:*")
    }
    # redelivered to a new worker (a crash before the Kafka commit): marked, joined again
    await apply(sla(redis_client, keys), events)
    assert await buckets(redis_client, keys) == once
    assert {key: await redis_client.get(key) for key in states} == states
    assert await redis_client.zcard(keys.waiting("acme")) == 0  # history never waits
    # The open contact's event sent live too, after its backfilled copy: the client is
    # waiting now (docs/sla.md), though its mark says it was taken before.
    live = make_event("open-1", "message", conversation_id="open-1", occurred_at=T0)
    await apply(sla(redis_client, keys), [live])
    assert await redis_client.zcard(keys.waiting("acme")) == 1
    assert await buckets(redis_client, keys) == once
