"""Every kind of worker state leaves Redis after its retention (set to seconds here),
and the worker's entity cache stays within its byte budget. Real redis-server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests.helpers import eventually, make_event
from tests.histories import TENANTS

pytestmark = pytest.mark.integration

RETENTION_S = 2


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


async def wait_gone(client: aioredis.Redis, key: str) -> None:
    async def gone() -> bool:
        return not await client.exists(key)

    await eventually(gone, 30, f"{key} to expire")


async def test_closed_deals_and_leads_expire_and_open_deals_stay(
    keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    sink = RedisKpiSink(
        redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200,
        entity_ttl_s=RETENTION_S,
    )  # fmt: skip
    applier = KpiApplier(sink, TENANTS, keys)
    open_stage = {"stage_to": "proposal", "stage_kind": "open", "amount": None, "currency": None}
    events = [
        make_event("c1", "deal_created", entity_id="d-open"),
        make_event("s1", "deal_stage_changed", entity_id="d-open", **open_stage),
        make_event("c2", "deal_created", entity_id="d-won"),
        make_event("s2", "deal_stage_changed", entity_id="d-won"),
        make_event("c3", "deal_created", entity_id="d-lost"),
        make_event("s3", "deal_stage_changed", entity_id="d-lost", stage_to="lost",
                   stage_kind="lost", amount=None, currency=None),
        make_event("c4", "deal_created", entity_id="d-new"),  # no stage yet: open
        make_event("l1", "lead_created", entity_id="lead-1"),
    ]  # fmt: skip
    await applier.apply(events, {"t:0": 1})

    def deal(name: str) -> str:
        return keys.entity("acme", "deal", name)

    lead = keys.entity("acme", "lead", "lead-1")
    assert await redis_client.ttl(deal("d-open")) == -1
    assert await redis_client.ttl(deal("d-new")) == -1
    for key in (deal("d-won"), deal("d-lost"), lead):
        assert 0 < await redis_client.ttl(key) <= RETENTION_S, key
    for key in (deal("d-won"), deal("d-lost"), lead):
        await wait_gone(redis_client, key)
    assert await redis_client.exists(deal("d-open"), deal("d-new")) == 2
    # A deal that reopens is kept again (its TTL cleared by the next write).
    await applier.apply([make_event("s4", "deal_stage_changed", entity_id="d-open2",
                                    **open_stage)], {"t:0": 2})  # fmt: skip
    assert await redis_client.ttl(deal("d-open2")) == -1


async def test_the_entity_cache_stays_within_its_byte_budget(
    keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)
    budget = 4000
    applier = KpiApplier(sink, TENANTS, keys, cache_bytes=budget)
    for batch in range(10):
        events = [
            make_event(f"c{batch}-{i}", "deal_created", entity_id=f"d{batch}-{i}")
            for i in range(20)
        ]
        await applier.apply(events, {"t:0": batch})
        assert 0 < applier.cached_bytes <= budget
    won_again = [make_event("w", "deal_stage_changed", entity_id="d0-0")]
    fold = await applier.apply(won_again, {"t:0": 10})  # d0-0 was evicted: read from Redis
    assert fold.entity_writes[keys.entity("acme", "deal", "d0-0")][0] == 1


async def test_conversations_expire_and_waits_past_the_maximum_age_leave_the_list(
    keys: KpiKeys, redis_client: aioredis.Redis
) -> None:
    store = SlaStore(redis_client, keys, group="g", day_ttl_s=7200, conversation_ttl_s=RETENTION_S)
    expired: list[int] = []
    applier = SlaApplier(store, TENANTS, keys, wait_max_age_s=3600, on_waits_expired=expired.append)
    now = datetime.now(UTC)

    def message(event_id: str, conversation: str, ago: timedelta, direction: str = "in"):
        return make_event(event_id, "message", conversation_id=conversation,
                          direction=direction, occurred_at=now - ago)  # fmt: skip

    events = [
        message("old-in", "old", timedelta(hours=2)),
        message("new-in", "new", timedelta(minutes=1)),
        message("ans-in", "ans", timedelta(minutes=3)),
        message("ans-out", "ans", timedelta(minutes=2), direction="out"),
    ]
    await applier.commit(await applier.prepare(events), {"t:0": 1})
    waiting = await redis_client.zrange(keys.waiting("acme"), 0, -1)
    [still_waiting] = waiting
    assert isinstance(still_waiting, bytes)
    assert json.loads(still_waiting)[0] == "c\x1fnew"  # the conversation of the recent contact
    assert expired == [1]
    conversations = [keys.entity("acme", "conv", f"c\x1f{name}") for name in ("old", "new", "ans")]
    for key in conversations:
        assert 0 < await redis_client.ttl(key) <= RETENTION_S, key
    for key in conversations:
        await wait_gone(redis_client, key)
