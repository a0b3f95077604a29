"""Amounts at the store's limits on a real redis-server: added exactly, or refused whole.

Redis never rolls a script back: a refusal must come before the script's first write,
and the retry of a refused batch must not find its own ids already counted.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from metrics.read.kpi_reader import KpiReader
from salespulse.core.errors import TotalOverflowError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from tests.helpers import T0, make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(settings: Settings) -> KpiKeys:
    return KpiKeys(settings.redis_key_prefix)


@pytest.fixture
def applier(redis_client: aioredis.Redis, keys: KpiKeys, settings: Settings) -> KpiApplier:
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200)
    return KpiApplier(sink, settings.tenant_directory(), keys)


def won_deal(deal: str, amount: str) -> list[CrmEvent]:
    """A deal created and won; built like the worker decodes it (no range checks)."""
    created = make_event(f"{deal}-c", "deal_created", entity_id=deal)
    won = make_event(f"{deal}-w", "deal_stage_changed", entity_id=deal)
    return [created, msgspec.structs.replace(won, amount=Decimal(amount))]


def totals(redis_url: str, keys: KpiKeys, settings: Settings) -> dict[str, int]:
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, settings.tenant_directory())
    return reader.components("acme", "all", None, T0)[TOTAL_GROUP]


async def snapshot(client: aioredis.Redis, keys: KpiKeys) -> dict[bytes | str, bytes | None]:
    return {key: await client.dump(key) for key in await client.keys(f"{keys.prefix}*")}


async def test_a_ten_trillion_deal_counts_exactly_with_the_rest_of_its_batch(
    applier, keys, redis_url, settings
):
    """Review defect 2: 1e13 was half-written (ids marked seen), then dropped as duplicates."""
    calls = [make_event(f"call-{n}") for n in range(200)]
    fold = await applier.apply([*calls, *won_deal("big", "10000000000000")], {"t:0": 9})
    assert fold.events == 202
    assert fold.duplicates == 0
    total = totals(redis_url, keys, settings)
    assert total["revenue"] == 10**13 * 10_000
    assert (total["won"], total["deals_created"], total["calls"]) == (1, 1, 200)


async def test_revenue_adds_exactly_past_two_to_the_53(applier, keys, redis_url, settings):
    """Lua numbers are doubles: these sums would round there; Redis adds them as int64."""
    await applier.apply(won_deal("a", "900719925474.0993"), {})  # 2**53 + 1 units
    await applier.apply(won_deal("b", "0.0001"), {})
    assert totals(redis_url, keys, settings)["revenue"] == 2**53 + 2


async def test_a_total_crossing_two_to_the_53_stays_exact(applier, keys, redis_url, settings):
    """The script sets a total it worked out in Lua only below 2^53; the increment that
    takes it past is added by Redis in 64 bits (in Lua, 2^53 - 1 + 2 rounds to 2^53)."""
    await applier.apply(won_deal("a", "900719925474.0991"), {})  # 2**53 - 1 units
    assert totals(redis_url, keys, settings)["revenue"] == 2**53 - 1
    await applier.apply(won_deal("b", "0.0002"), {})
    await applier.apply(won_deal("c", "0.0001"), {})
    assert totals(redis_url, keys, settings)["revenue"] == 2**53 + 2


async def test_a_total_past_64_bits_is_refused_and_redis_is_unchanged(
    applier, keys, redis_client, redis_url, settings
):
    """Near 1.8446e15 the revenue wrapped to -0.1616; now the script refuses, unwritten."""
    await applier.apply([make_event("before")], {"t:0": 1})
    before = await snapshot(redis_client, keys)
    with pytest.raises(TotalOverflowError, match="revenue"):
        await applier.apply(won_deal("huge", "1844674407370955"), {"t:0": 5})
    assert await snapshot(redis_client, keys) == before
    # What the event pushed past the limit refuses the batch each time: nothing was
    # marked counted, so the batch without it applies in full.
    with pytest.raises(TotalOverflowError):
        await applier.apply(won_deal("huge", "1844674407370955"), {"t:0": 5})
    fold = await applier.apply([make_event("after")], {"t:0": 5})
    assert (fold.events, fold.duplicates) == (1, 0)


async def test_many_large_deals_stop_at_the_limit_never_wrap(applier, keys, redis_url, settings):
    """Each deal is in range; the all-time total of them is what would overflow."""
    for n in range(8):
        await applier.apply(won_deal(f"d{n}", "100000000000000"), {})
    with pytest.raises(TotalOverflowError):  # 9 × 10**18 units: at the script's limit
        await applier.apply(won_deal("d8", "100000000000000"), {})
    total = totals(redis_url, keys, settings)
    assert total["revenue"] == 8 * 10**14 * 10_000
    assert total["won"] == 8
