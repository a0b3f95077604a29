"""The week window is the sum of its seven day buckets, no week bucket being written
(issue 19): on a real redis-server it equals the batch oracle for a week that crosses a
month, read at its start, its middle and its last minute, and a week bucket that an
older version wrote (and a running deployment still holds) changes no answer."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings

from metrics.read.kpi_reader import KpiReader
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS
from salespulse.core.kpi.codecs import encode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from tests.histories import CONFIG, NOW, TENANT, TENANTS, histories
from tests.oracle.batch import compute_components
from tests.oracle.compare import assert_matches_oracle

pytestmark = pytest.mark.integration

# Reads in the ISO week (Berlin) from Monday 30 November to Sunday 6 December 2026: at
# its first minutes, its middle and its last minute. Each reads a history moved to end
# just before it (a read follows the receipt of what it shows), so the five weeks of
# history cross a month, and the week itself holds days of November and of December.
READS = (
    datetime(2026, 11, 29, 23, 2, 30, tzinfo=UTC),
    datetime(2026, 12, 3, 10, 7, 30, tzinfo=UTC),
    datetime(2026, 12, 6, 22, 59, 30, tzinfo=UTC),
)
# Each read comes this long after the last event of its history.
_AFTER = timedelta(seconds=30)
BATCH = 16
_examples = itertools.count()


def moved(history: list[CrmEvent], now: datetime) -> list[CrmEvent]:
    """The history (cut at its NOW, as the stream test cuts it) moved to end just before
    ``now``, each event received a second after it happened."""
    shift = now - _AFTER - NOW
    out = []
    for event in history:
        occurred = min(event.occurred_at, NOW) + shift
        received = occurred + timedelta(seconds=1)
        out.append(msgspec.structs.replace(event, occurred_at=occurred, received_at=received))
    return out


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(max_deals=8, max_activity=40))
async def test_the_week_of_day_buckets_equals_the_oracle_across_a_month(
    redis_client: aioredis.Redis, redis_url: str, history: list[CrmEvent]
) -> None:
    for now in READS:
        keys = KpiKeys(f"week{next(_examples)}:")
        # What an older version left: a week bucket of this very week, which is not read.
        stale = keys.bucket(TENANT, "w", "2026-W49")
        await redis_client.hset(stale, encode_field(("calls", "m1", "north", "", "")), 1000)
        sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=86_400)
        applier = KpiApplier(sink, TENANTS, keys)
        events = moved(history, now)
        assert all(event.received_at and event.received_at < now for event in events)
        for start in range(0, len(events), BATCH):
            await applier.apply(events[start : start + BATCH], {})
        assert await redis_client.keys(keys.bucket(TENANT, "w", "*")) == [stale.encode()]
        reader = KpiReader(redis.Redis.from_url(redis_url), keys, TENANTS)
        for by in (None, *DIMENSIONS):
            stream = reader.components(TENANT, "week", by, now)
            batch = compute_components(events, CONFIG, TENANT, "week", by, now)
            assert_matches_oracle(stream, batch, (now, by))


def test_the_reads_cover_the_week_that_crosses_the_month() -> None:
    """The test above is about that week: its reads fall in it, and it holds both months."""
    berlin = CONFIG.zone
    weeks = {now.astimezone(berlin).isocalendar()[:2] for now in READS}
    assert weeks == {(2026, 49)}
    monday = date(2026, 11, 30)
    assert {(monday + timedelta(days=n)).month for n in range(7)} == {11, 12}
