"""The scrape-time collector and the KPI API on real Redis: names, labels, caps, zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from metrics.api.kpis import kpi_routes
from metrics.api.read_access import ReadAccess
from metrics.collectors.kpi import KpiCollector
from metrics.read.kpi_reader import KpiReader
from metrics.text_format import render_latest
from salespulse.app.embedded import free_port
from salespulse.core.access import TokenTable
from salespulse.core.events import CrmEvent, ValidatedEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests import call_centre, office_day
from tests.helpers import make_event

pytestmark = pytest.mark.integration

# 2026-11-22 00:30 in Moscow is still 2026-11-21 in UTC.
NOW = datetime(2026, 11, 21, 21, 30, tzinfo=UTC)
TENANTS_YAML = """
tenants:
  msk:
    timezone: Europe/Moscow
    currency: EUR
    pipelines:
      sales:
        stages: [{id: new}, {id: proposal}, {id: won, kind: won}, {id: lost, kind: lost}]
    teams: {north: {managers: [m-1, m-2]}}
    targets: {managers: {m-1: {revenue: "1000", deals_won: 4}}}
    labels: {max_values: 3}
    managers: {m-1: "Олена Коваленко-Шевчук"}
    wall: {names: {m-1: "Olena (wall)", m-3: "Petro (wall)", m-4: "Ivan (wall)"}}
"""


@pytest.fixture
def tenants(tmp_path: Path) -> TenantDirectory:
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS_YAML)
    return Settings(tenants_file=path).tenant_directory()


@pytest.fixture
def reader(settings: Settings, redis_url: str, tenants: TenantDirectory) -> KpiReader:
    client = redis.Redis.from_url(redis_url)
    return KpiReader(client, KpiKeys(settings.redis_key_prefix), tenants, clock=NOW.timestamp)


async def apply(
    events: list[CrmEvent],
    settings: Settings,
    tenants: TenantDirectory,
    redis_client: aioredis.Redis,
) -> None:
    keys = KpiKeys(settings.redis_key_prefix)
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=3600)
    await KpiApplier(sink, tenants, keys).apply(events, {})


def office(now: datetime) -> list[CrmEvent]:
    yesterday_msk = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    deal = {
        "tenant": "msk",
        "pipeline": "sales",
        "stage_kind": None,
        "currency": None,
        "amount": None,
    }
    events = [
        make_event("a", tenant="msk", occurred_at=yesterday_msk, duration_s=90),
        make_event("b", tenant="msk", occurred_at=now - timedelta(minutes=5), duration_s=30),
        make_event(
            "d1",
            "deal_stage_changed",
            entity_id="x",
            stage_to="new",
            occurred_at=now - timedelta(minutes=20),
            **deal,
        ),
        make_event(
            "d2",
            "deal_stage_changed",
            entity_id="x",
            stage_to="won",
            occurred_at=now - timedelta(minutes=10),
            **{**deal, "amount": Decimal("99.99")},
        ),
        make_event(
            "d3",
            "deal_stage_changed",
            entity_id="y",
            stage_to="new",
            occurred_at=now - timedelta(minutes=8),
            **deal,
        ),
    ]
    # Five more managers with a call each: more than labels.max_values = 3.
    events += [
        make_event(f"c{n}", tenant="msk", manager_id=f"m-{n}", occurred_at=now) for n in range(3, 8)
    ]
    return events


async def test_metrics_carry_windows_groups_and_the_tenant_zone(
    settings, tenants, reader, redis_client
):
    await apply(office(NOW), settings, tenants, redis_client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    value = registry.get_sample_value
    assert value("salespulse_calls", {"tenant": "msk", "window": "all"}) == 7
    assert value("salespulse_calls", {"tenant": "msk", "window": "today"}) == 6  # Moscow day
    assert value("salespulse_calls", {"tenant": "msk", "window": "15m"}) == 6
    assert (
        value("salespulse_talk_time_seconds", {"tenant": "msk", "window": "all"}) == 270
    )  # 90 + 30 + 5 × 30
    assert value("salespulse_revenue", {"tenant": "msk", "window": "today"}) == pytest.approx(99.99)
    assert value("salespulse_won", {"tenant": "msk", "window": "1h"}) == 1
    labels = {
        "tenant": "msk",
        "window": "today",
        "pipeline": "sales",
        "from_stage": "new",
        "to_stage": "proposal",
    }
    assert value("salespulse_conversion_cohort", labels) == 0.5  # x reached won, y did not
    assert (
        value(
            "salespulse_open_deals",
            {"tenant": "msk", "window": "all", "pipeline": "sales", "stage": "new"},
        )
        == 1
    )
    assert (
        value("salespulse_calls_by_team", {"tenant": "msk", "window": "today", "team": "north"})
        == 1
    )
    assert value(
        "salespulse_plan_attainment_by_manager",
        {"tenant": "msk", "window": "month", "manager": "m-1", "target": "revenue"},
    ) == pytest.approx(0.09999)
    assert value("salespulse_kpi_store_up") == 1


async def test_the_scrape_text_is_what_prometheus_client_writes(
    settings, tenants, reader, redis_client
):
    """GET /metrics renders the collectors' families itself (metrics/text_format.py):
    on a real office's KPIs, byte for byte prometheus_client's text."""
    await apply(office(NOW), settings, tenants, redis_client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    families = list(registry.collect())  # one collection: plan pace moves with the clock
    fixed = CollectorRegistry(auto_describe=False)
    fixed.register(_Collected(families))
    ours = render_latest(families)
    assert ours == generate_latest(fixed)
    assert ours.count(b"\n") > 500


class _Collected(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def test_manager_labels_are_capped_with_an_other_bucket(
    settings, tenants, reader, redis_client
):
    await apply(office(NOW), settings, tenants, redis_client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    managers = {
        sample.labels["manager"]
        for family in registry.collect()
        if family.name == "salespulse_calls_by_manager"
        for sample in family.samples
        if sample.labels["window"] == "today"
    }
    assert len(managers) == 3
    assert "other" in managers
    total = sum(
        sample.value
        for family in registry.collect()
        if family.name == "salespulse_calls_by_manager"
        for sample in family.samples
        if sample.labels["window"] == "today"
    )
    assert total == 6, "pooling loses nothing"


async def test_series_count_is_pinned_for_a_tenants_file(settings, tenants, reader, redis_client):
    await apply(office(NOW), settings, tenants, redis_client)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    series = [s for family in registry.collect() for s in family.samples]
    for sample in series:
        assert not set(sample.labels) & {"event_id", "client", "client_id", "entity_id", "deal"}
    # A change here changes what dashboards and Prometheus storage see: update on purpose.
    # 362 KPI series (341, + calls_abandoned and abandonment_rate x 7 windows, issue 17
    # item 9; + time_in_stage_median_seconds x 7 windows, item 10; service_level has no
    # value with no first response judged) + response counts and SLA breaches (3 x 7
    # windows, zero with no conversations) + the tenant's business_hours_open +
    # salespulse_manager_info of the 3 manager label values (two managers and "other").
    assert len(series) == 362 + 3 * 7 + 1 + 3


async def test_manager_info_names_every_manager_label_from_file_crm_and_wall(
    settings, tenants, reader, redis_client
):
    await apply(office(NOW), settings, tenants, redis_client)
    keys = KpiKeys(settings.redis_key_prefix)
    # As the user sync leaves it: the tenants file's managers: wins over the CRM, the CRM
    # over wall.names.
    await redis_client.hset(keys.staff("msk"), mapping={"m-1": "Olena K.", "m-3": "Петро Бондар"})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    info = {
        sample.labels["manager"]: sample
        for family in registry.collect()
        if family.name == "salespulse_manager_info"
        for sample in family.samples
    }
    managers = {
        sample.labels["manager"]
        for family in registry.collect()
        if family.name.endswith("_by_manager")
        for sample in family.samples
    }
    assert set(info) == managers, "every series of a _by_manager family finds its name"
    assert info["m-1"].labels == {
        "tenant": "msk",
        "manager": "m-1",
        "name": "Олена Коваленко-Шевчук",
        "team": "north",
    }
    assert info["m-3"].labels["name"] == "Петро Бондар"
    assert info["m-3"].labels["team"] == ""
    assert info["other"].labels["name"] == "other"
    assert info["other"].labels["team"] == ""
    assert all(sample.value == 1 for sample in info.values())


def test_registration_does_not_touch_redis(tenants):
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    registry = CollectorRegistry()  # auto_describe: would collect() without describe()
    registry.register(KpiCollector(KpiReader(unreachable, KpiKeys("x:"), tenants), tenants))
    assert "salespulse_kpi_store_up 0.0" in generate_latest(registry).decode()


async def test_the_kpi_api_answers_json_with_ratio_parts(settings, tenants, reader, redis_client):
    await apply(office(NOW), settings, tenants, redis_client)
    app = web.Application()
    app.add_routes(kpi_routes(reader, tenants, ReadAccess(TokenTable(None, []))))  # open reads
    async with TestClient(TestServer(app)) as client:
        response = await client.get(
            "/v1/kpis", params={"tenant": "msk", "window": "today", "by": "manager"}
        )
        assert response.status == 200
        body = await response.json()
        assert body["currency"] == "EUR"
        assert body["total"]["calls"] == 6
        assert body["total"]["win_rate"] == {"value": 1.0, "numerator": 1, "denominator": 1}
        assert body["groups"]["m-1"]["revenue"] == pytest.approx(99.99)
        # Staff names beside the ids: the tenants file's, else wall.names', else the id.
        assert body["groups"]["m-1"]["name"] == "Олена Коваленко-Шевчук"
        assert body["groups"]["m-4"]["name"] == "Ivan (wall)"
        assert body["groups"]["m-5"]["name"] == "m-5"
        by_team = await client.get("/v1/kpis", params={"tenant": "msk", "by": "team"})
        assert all("name" not in group for group in (await by_team.json())["groups"].values())
        cohort = body["total"]["conversion_cohort"]
        assert cohort == [
            {
                "pipeline": "sales",
                "from_stage": "new",
                "to_stage": "proposal",
                "value": 0.5,
                "numerator": 1,
                "denominator": 2,
            },
            {
                "pipeline": "sales",
                "from_stage": "proposal",
                "to_stage": "won",
                "value": None,
                "numerator": 0,
                "denominator": 0,
            },
        ]
        bad = await client.get("/v1/kpis", params={"tenant": "msk", "window": "year", "by": "x"})
        assert bad.status == 400
        assert [p["field"] for p in (await bad.json())["problems"]] == ["window", "by"]
        missing = await client.get("/v1/kpis", params={"tenant": "nobody"})
        assert missing.status == 404


async def test_describe_names_every_family_that_collect_yields(
    settings, redis_url, redis_client, tmp_path
):
    # The office's hour fills every family: funnel, stays, reasons, classes, plans, waits
    # and replies; a marketing source, a rating and the per-manager series add the rest.
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    office_file = yaml.safe_load(office_day.tenants_file(now))
    office_file["tenants"][office_day.TENANT]["marketing_costs"] = {"website": {"2026-11": "900"}}
    path = tmp_path / "office.yaml"
    path.write_text(yaml.safe_dump(office_file))
    tenants = Settings(tenants_file=path).tenant_directory()
    events: list[CrmEvent] = [
        msgspec.convert(event, ValidatedEvent) for event in office_day.history(now)
    ]
    events.append(
        make_event("rated", "rating", tenant=office_day.TENANT, rating=5, occurred_at=now)
    )
    await apply(events, settings, tenants, redis_client)
    keys = KpiKeys(settings.redis_key_prefix)
    sla = SlaApplier(SlaStore(redis_client, keys, group="g", day_ttl_s=3600), tenants, keys)
    await sla.commit(await sla.prepare(events), {"t:0": len(events)})
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, tenants, clock=now.timestamp)
    collector = KpiCollector(reader, tenants)

    described = {family.name for family in collector.describe()}
    collected = {family.name for family in collector.collect()}
    assert described == collected

    registry = CollectorRegistry()  # auto_describe: names come from describe()
    registry.register(collector)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("salespulse_win_rate_by_team", "a clash", registry=registry)


async def test_call_centre_kpis_reach_metrics_and_the_api(
    settings, redis_url, redis_client, tmp_path
):
    """Issue 17 item 9 on the real Redis, both stages: tests/call_centre.py's history."""
    path = tmp_path / "tenants.yaml"
    path.write_text(call_centre.TENANTS_YAML)
    tenants = Settings(tenants_file=path).tenant_directory()
    events = call_centre.history()
    await apply(events, settings, tenants, redis_client)
    keys = KpiKeys(settings.redis_key_prefix)
    sla = SlaApplier(SlaStore(redis_client, keys, group="g", day_ttl_s=3600), tenants, keys)
    await sla.commit(await sla.prepare(events), {"t:0": len(events)})
    now = call_centre.NOW
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, tenants, clock=now.timestamp)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(reader, tenants))
    today = {"tenant": "acme", "window": "today"}
    # 4 of 8 inbound calls abandoned; AHT 480 s / 3; first responses 1 of 2 within 20 s
    assert registry.get_sample_value("salespulse_calls_abandoned", today) == 4
    assert registry.get_sample_value("salespulse_abandonment_rate", today) == 0.5
    assert registry.get_sample_value("salespulse_talk_time_avg_seconds", today) == 160
    assert registry.get_sample_value("salespulse_service_level", today) == 0.5
    app = web.Application()
    app.add_routes(kpi_routes(reader, tenants, ReadAccess(TokenTable(None, []))))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v1/kpis", params={"tenant": "acme", "window": "today"})
        assert response.status == 200
        total = (await response.json())["total"]
    assert total["abandonment_rate"] == {"value": 0.5, "numerator": 4, "denominator": 8}
    assert total["service_level"] == {"value": 0.5, "numerator": 1, "denominator": 2}
