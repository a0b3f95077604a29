"""The scrape-time collector on real Redis: names, units, labels, today in the tenant's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from metrics.kpi_collector import KpiCollector
from salespulse.embedded import free_port
from salespulse.events import CrmEvent
from salespulse.kpi_keys import KpiKeys
from salespulse.settings import Settings
from streams.fold import fold_batch
from streams.redis_sink import RedisKpiSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration

# 2026-11-22 00:30 in Moscow is still 2026-11-21 in UTC.
NOW = datetime(2026, 11, 21, 21, 30, tzinfo=UTC)


@pytest.fixture
def zoned(settings: Settings) -> Settings:
    tenants_file = settings.data_dir.parent / "tenants.yaml"
    tenants_file.write_text("tenants:\n  msk:\n    timezone: Europe/Moscow\n")
    return settings.model_copy(update={"tenants_file": tenants_file})


@pytest.fixture
def registry(zoned: Settings, redis_url: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    client = redis.Redis.from_url(redis_url)
    registry.register(
        KpiCollector(
            client,
            KpiKeys(zoned.redis_key_prefix),
            zoned.tenant_directory().zone_for,
            clock=NOW.timestamp,
        )
    )
    return registry


async def apply(events: list[CrmEvent], zoned: Settings, redis_client: aioredis.Redis) -> None:
    sink = RedisKpiSink(
        redis_client, KpiKeys(zoned.redis_key_prefix), group="g", dedupe_ttl_s=3600, day_ttl_s=3600
    )
    assert (await sink.apply(fold_batch(events, zoned.tenant_directory().zone_for), {})).applied


async def test_all_time_counters_and_today_gauges(zoned, registry, redis_client):
    yesterday_msk = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    today_msk = datetime(2026, 11, 21, 21, 15, tzinfo=UTC)
    await apply(
        [
            make_event("a", tenant="msk", occurred_at=yesterday_msk, duration_s=90),
            make_event("b", tenant="msk", occurred_at=today_msk, duration_s=30),
            make_event(
                "w",
                "deal_stage_changed",
                tenant="msk",
                occurred_at=today_msk,
                amount=Decimal("99.99"),
                currency="EUR",
            ),
        ],
        zoned,
        redis_client,
    )
    value = registry.get_sample_value
    call = {"tenant": "msk", "manager": "m-1", "direction": "in", "outcome": "answered"}
    assert value("salespulse_calls_total", call) == 2
    assert value("salespulse_window_calls", {**call, "window": "today"}) == 1
    assert (
        value("salespulse_call_talk_time_seconds_total", {"tenant": "msk", "manager": "m-1"}) == 120
    )
    assert (
        value(
            "salespulse_window_call_talk_time_seconds",
            {"tenant": "msk", "manager": "m-1", "window": "today"},
        )
        == 30
    )
    assert value(
        "salespulse_revenue_total", {"tenant": "msk", "manager": "m-1", "currency": "EUR"}
    ) == pytest.approx(99.99)
    assert value("salespulse_deals_won_total", {"tenant": "msk", "manager": "m-1"}) == 1
    assert (
        value(
            "salespulse_stage_entries_total",
            {"tenant": "msk", "manager": "m-1", "pipeline": "sales", "stage": "won"},
        )
        == 1
    )
    assert value("salespulse_kpi_store_up") == 1


async def test_exposition_text_follows_prometheus_conventions(zoned, registry, redis_client):
    await apply([make_event("a", tenant="msk", occurred_at=NOW)], zoned, redis_client)
    text = generate_latest(registry).decode()
    assert "# TYPE salespulse_calls_total counter" in text
    assert "# TYPE salespulse_window_calls gauge" in text
    assert "# TYPE salespulse_call_talk_time_seconds_total counter" in text
    for line in text.splitlines():
        if line.startswith("salespulse_") and "{" in line:
            assert "event_id" not in line
            assert "client" not in line


def test_registration_does_not_touch_redis(zoned):
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    registry = CollectorRegistry()  # auto_describe=True: would collect() without describe()
    registry.register(KpiCollector(unreachable, KpiKeys("x:"), zoned.tenant_directory().zone_for))
    assert registry.get_sample_value("salespulse_kpi_store_up") == 0


def test_an_unreachable_store_is_reported_not_raised(zoned):
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(unreachable, KpiKeys("x:"), zoned.tenant_directory().zone_for))
    text = generate_latest(registry).decode()
    assert "salespulse_kpi_store_up 0.0" in text
