"""`GET /v1/kpis` periods and comparisons, `GET /v1/kpis/series`, CSV, and every bad
parameter, against the real Redis: events applied by the KPI applier (with its daily
snapshot hook), read back by the API with a fixed clock in a Kyiv tenant (UTC+3 in
summer, UTC+2 from 25 October 2026)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from metrics.api.kpis import kpi_routes
from metrics.api.openapi import openapi_routes
from metrics.api.read_access import ReadAccess
from metrics.read.kpi_reader import KpiReader
from salespulse.core.access import TokenTable
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantConfig, TenantDirectory
from streams.applier import KpiApplier
from streams.daily_snapshot import DailySnapshot
from streams.redis_sink import RedisKpiSink
from tests.helpers import make_event
from tests.openapi_check import OpenApiMismatch, check_answer
from tests.oracle.periods import period_components

pytestmark = pytest.mark.integration

TENANTS_YAML = """
tenants:
  kyiv:
    timezone: Europe/Kyiv
    currency: UAH
    pipelines:
      sales:
        stages:
          - {id: new}
          - {id: proposal, limit_hours: 24}
          - {id: won, kind: won}
          - {id: lost, kind: lost}
    targets:
      managers:
        m-1: {revenue: "3100", deals_won: 31}
"""
KYIV = TenantConfig.model_validate(yaml.safe_load(TENANTS_YAML)["tenants"]["kyiv"])
# Friday 20 November 2026, 14:00 in Kyiv.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 60
Client = TestClient[web.Request, web.Application]


def history() -> list[CrmEvent]:
    """Calls and won deals from September to November; one call each side of local
    midnight at the end of October (after the clocks went back on 25 October)."""
    # one answered call a day in September (UTC noon)
    events = [
        make_event(f"sep-{day}", tenant="kyiv", occurred_at=datetime(2026, 9, day, 12, tzinfo=UTC))
        for day in range(1, 31)
    ]
    for day in range(1, 32):  # two a day in October, manager m-2 on odd days
        for n in range(2):
            manager = "m-2" if day % 2 else "m-1"
            at = datetime(2026, 10, day, 8 + n, tzinfo=UTC)
            events.append(
                make_event(f"oct-{day}-{n}", tenant="kyiv", manager_id=manager, occurred_at=at)
            )
    # 31 Oct 21:59 UTC is 23:59 in Kyiv (UTC+2): October. 22:00 UTC is 1 November, 00:00.
    events.append(
        make_event(
            "edge-oct", tenant="kyiv", occurred_at=datetime(2026, 10, 31, 21, 59, tzinfo=UTC)
        )
    )
    events.append(
        make_event("edge-nov", tenant="kyiv", occurred_at=datetime(2026, 10, 31, 22, 0, tzinfo=UTC))
    )
    for day in range(1, 21):  # three a day in November up to today
        for n in range(3):
            at = datetime(2026, 11, day, 6 + n, tzinfo=UTC)
            events.append(make_event(f"nov-{day}-{n}", tenant="kyiv", occurred_at=at))
    for month, amount in ((9, "100"), (10, "250.5"), (11, "400")):
        deal = f"deal-{month}"
        at = datetime(2026, month, 10, 9, tzinfo=UTC)
        events.append(
            make_event(f"{deal}-c", "deal_created", tenant="kyiv", entity_id=deal, occurred_at=at)
        )
        events.append(
            make_event(
                f"{deal}-w", "deal_stage_changed", tenant="kyiv", entity_id=deal,
                occurred_at=at + timedelta(hours=3), amount=Decimal(amount), currency="UAH",
            )
        )  # fmt: skip
    # An open deal in "proposal" since 18 November: stuck after 24 hours.
    events.append(
        make_event(
            "open-c",
            "deal_created",
            tenant="kyiv",
            entity_id="open",
            occurred_at=datetime(2026, 11, 18, 9, tzinfo=UTC),
        )
    )
    events.append(
        make_event(
            "open-p", "deal_stage_changed", tenant="kyiv", entity_id="open",
            stage_to="proposal", stage_kind=None, amount=None, currency=None,
            occurred_at=datetime(2026, 11, 18, 9, tzinfo=UTC),
        )
    )  # fmt: skip
    return events


@pytest.fixture
def tenants(tmp_path: Path) -> TenantDirectory:
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS_YAML)
    return Settings(tenants_file=path).tenant_directory()


@pytest.fixture
async def client(
    settings: Settings, redis_url: str, tenants: TenantDirectory, redis_client: aioredis.Redis
) -> AsyncIterator[Client]:
    keys = KpiKeys(settings.redis_key_prefix)
    # day buckets kept as long as the reader below assumes (a day past it is not written)
    retention = RETENTION_DAYS * 86_400
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=86_400, day_ttl_s=retention)
    clock = [NOW.timestamp() - 86_400]  # the first batch lands on 19 November
    snapshot = DailySnapshot(redis_client, keys, tenants, ttl_s=86_400, clock=lambda: clock[0])
    applier = KpiApplier(
        sink, tenants, keys, before_commit=snapshot.before_commit, clock=lambda: clock[0]
    )
    events = history()
    await applier.apply(events, {})
    clock[0] = NOW.timestamp()  # a batch on 20 November snapshots how 19 November ended
    await applier.apply([make_event("late-call", tenant="kyiv", occurred_at=NOW)], {})
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, tenants, clock=NOW.timestamp)
    app = web.Application()
    access = ReadAccess(TokenTable(None, []))
    app.add_routes(kpi_routes(reader, tenants, access, retention_days=RETENTION_DAYS))
    app.add_routes(openapi_routes())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def get(client: Client, path: str = "/v1/kpis", **params: str) -> tuple[int, Any]:
    """Status and JSON body (Any: the tests index into it freely)."""
    response = await client.get(path, params={"tenant": "kyiv", **params})
    body = await response.json()
    assert isinstance(body, dict)
    return response.status, body


def total(body: Any) -> Any:
    return body["total"]


async def test_a_month_answers_its_days_in_the_tenants_zone(client: Client) -> None:
    status, october = await get(client, period="2026-10")
    assert status == 200
    assert total(october)["calls"] == 62 + 1  # the call at 23:59 local on 31 October
    assert isinstance(total(october)["calls"], int)
    assert total(october)["revenue"] == 250.5
    assert october["period"] == {
        "name": "2026-10", "from": "2026-10-01", "to": "2026-10-31", "days": 31,
        "buckets": "day", "snapshot_day": "2026-11-18",
    }  # fmt: skip
    _, same = await get(client, **{"from": "2026-10-01", "to": "2026-10-31"})
    assert total(same) == total(october)
    _, first = await get(client, period="2026-11-01")
    assert total(first)["calls"] == 3 + 1  # the call at 00:00 local on 1 November
    # Every period equals the oracle's computation over the same events.
    events = [*history(), make_event("late-call", tenant="kyiv", occurred_at=NOW)]
    for name, first_day, last_day in (
        ("2026-Q3", "2026-07-01", "2026-09-30"),
        ("2026-W44", "2026-10-26", "2026-11-01"),
    ):
        _, body = await get(client, period=name)
        oracle = period_components(
            events, KYIV, "kyiv", datetime.fromisoformat(first_day).date(),
            datetime.fromisoformat(last_day).date(), None,
        )[""]  # fmt: skip
        assert total(body)["calls"] == oracle.get("calls", 0)
        assert total(body)["won"] == oracle.get("won", 0)


async def test_groups_carry_every_key_and_managers_get_their_prorated_plan(client: Client) -> None:
    _, body = await get(client, period="2026-10", by="manager")
    groups = body["groups"]
    assert isinstance(groups, dict)
    assert set(groups) == {"m-1", "m-2"}
    assert set(groups["m-1"]) == set(groups["m-2"])
    assert groups["m-2"]["calls"] == 32 + 0  # odd days of October, two a day
    # October is a whole month: the plan is the monthly target itself.
    plans = {p["target"]: p for p in groups["m-1"]["plan_target"]}
    assert plans["deals_won"]["value"] == 31
    _, week = await get(client, period="2026-W44", by="manager")  # 26 Oct - 1 Nov
    plans = {p["target"]: p["value"] for p in week["groups"]["m-1"]["plan_target"]}
    # 6 October days of 31 and 1 November day of 30 of a 31-a-month target
    assert plans["deals_won"] == pytest.approx(31 * 6 / 31 + 31 * 1 / 30)
    assert groups["m-2"]["plan_target"] == []  # no target: an empty list, not a missing key


async def test_compare_previous_and_last_year_and_to_date(client: Client) -> None:
    _, body = await get(client, period="2026-10", compare="previous")
    compare = body["compare"]
    assert isinstance(compare, dict)
    assert compare["period"]["from"] == "2026-09-01"
    assert compare["period"]["to"] == "2026-09-30"
    change = body["change"]["total"]["calls"]
    assert change == {"value": 63, "other": 30, "absolute": 33, "relative": pytest.approx(1.1)}
    revenue = body["change"]["total"]["revenue"]
    assert revenue["absolute"] == pytest.approx(150.5)
    _, body = await get(client, period="this_month", compare="previous", to_date="true")
    # 1-20 November against 1-20 October (today counts so far: its call at 12:00 UTC is in)
    assert body["period"]["to"] == "2026-11-20"
    assert body["compare"]["period"]["to"] == "2026-10-20"
    assert body["change"]["total"]["calls"]["value"] == 20 * 3 + 1 + 1
    assert body["change"]["total"]["calls"]["other"] == 20 * 2
    _, body = await get(client, period="2026-10", compare="last_year")
    assert body["compare"]["period"]["from"] == "2025-10-01"
    assert body["change"]["total"]["calls"]["relative"] is None


async def test_snapshot_kpis_answer_the_periods_end(client: Client) -> None:
    # The history arrived on 19 November: as far as the worker knew, 18 November ended
    # with nothing open (the first batch's snapshot, taken before it was written).
    _, body = await get(client, period="2026-11-18")
    assert body["period"]["snapshot_day"] == "2026-11-18"
    assert total(body)["open_deals"] == []
    # 19 November ended with the deal in proposal, stuck by the time the snapshot was
    # taken (the first batch of the 20th: 51 hours after it entered, limit 24).
    _, body = await get(client, period="2026-11-19")
    assert body["period"]["snapshot_day"] == "2026-11-19"
    assert [(e["stage"], e["value"]) for e in total(body)["open_deals"]] == [("proposal", 1)]
    assert [(e["stage"], e["value"]) for e in total(body)["stuck_deals"]] == [("proposal", 1)]
    # A day with no snapshot of its own ended as the next snapshot found the store.
    _, body = await get(client, period="2026-09")
    assert body["period"]["snapshot_day"] == "2026-11-18"
    # A period that holds today answers the live state.
    _, body = await get(client, period="this_week")
    assert body["period"]["snapshot_day"] == "2026-11-20"
    assert [(e["stage"], e["value"]) for e in total(body)["open_deals"]] == [("proposal", 1)]


async def test_series_has_one_point_per_step_and_csv(client: Client) -> None:
    status, body = await get(
        client,
        "/v1/kpis/series",
        kpi="calls,revenue",
        step="month",
        **{"from": "2026-09-01", "to": "2026-11-20"},
    )
    assert status == 200
    points = body["points"]
    assert isinstance(points, list)
    assert [(p["from"], p["to"], p["total"]["calls"]) for p in points] == [
        ("2026-09-01", "2026-09-30", 30),
        ("2026-10-01", "2026-10-31", 63),
        ("2026-11-01", "2026-11-20", 62),
    ]
    response = await client.get(
        "/v1/kpis/series",
        params={
            "tenant": "kyiv",
            "kpi": "calls",
            "step": "week",
            "from": "2026-10-26",
            "to": "2026-11-08",
            "format": "csv",
        },
    )
    assert response.status == 200
    assert response.content_type == "text/csv"
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows == [
        ["from", "to", "group", "calls"],
        ["2026-10-26", "2026-11-01", "(total)", str(2 * 6 + 1 + 1 + 3)],
        ["2026-11-02", "2026-11-08", "(total)", str(3 * 7)],
    ]
    response = await client.get(
        "/v1/kpis", params={"tenant": "kyiv", "period": "2026-10", "by": "manager", "format": "csv"}
    )
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[0][:3] == ["period", "group", "calls"]
    assert [row[:3] for row in rows[1:]] == [
        ["2026-10-01/2026-10-31", "(total)", "63"],
        ["2026-10-01/2026-10-31", "m-1", "31"],
        ["2026-10-01/2026-10-31", "m-2", "32"],
    ]


async def test_past_the_day_retention_only_whole_months_answer(client: Client) -> None:
    # retention 60 days at 20 November: days before 22 September are gone.
    status, body = await get(client, period="2026-09")
    assert (status, body["period"]["buckets"]) == (200, "month")
    assert total(body)["calls"] == 30
    status, body = await get(client, **{"from": "2026-09-01", "to": "2026-09-10"})
    assert status == 422
    assert body["problems"][0]["field"] == "period"
    assert "SALESPULSE_DAY_BUCKET_RETENTION_DAYS=60" in body["problems"][0]["problem"]


BAD = [
    ({"month": "2026-10"}, "month"),
    ({"window": "month", "month": "2026-10"}, "month"),
    ({"window": "fortnight"}, "window"),
    ({"by": "planet"}, "by"),
    ({"period": "2026-13"}, "period"),
    ({"period": "last_decade"}, "period"),
    ({"period": "2026-W54"}, "period"),
    ({"period": "2026-02-30"}, "period"),
    ({"from": "2026-10-10", "to": "2026-10-01"}, "from"),
    ({"from": "2026-10-01"}, "to"),
    ({"to": "2026-10-01"}, "from"),
    ({"from": "10/01/2026", "to": "2026-10-02"}, "from"),
    ({"from": "2026-10-01", "to": "tomorrow"}, "to"),
    ({"period": "2026-10", "from": "2026-10-01", "to": "2026-10-02"}, "period"),
    ({"period": "2026-10", "window": "all"}, "window"),
    ({"period": "2026-10", "compare": "yesterday"}, "compare"),
    ({"compare": "previous"}, "compare"),
    ({"period": "2026-10", "compare": "previous", "to_date": "yes"}, "to_date"),
    ({"period": "2026-10", "to_date": "true"}, "to_date"),
    ({"period": "2026-10", "compare": "previous", "to_date": "true"}, "to_date"),
    ({"period": "2026-10", "format": "xlsx"}, "format"),
    ({"period": "0001-01", "compare": "previous"}, "period"),
    ({"from": "2026-01-01", "to": "9999-12-31"}, "to"),
]


@pytest.mark.parametrize(("params", "field"), BAD)
async def test_each_bad_kpis_parameter_is_a_400_naming_it(
    client: Client, params: dict[str, str], field: str
) -> None:
    status, body = await get(client, **params)
    assert status == 400
    assert body["error"] == "invalid_query"
    assert field in [problem["field"] for problem in body["problems"]]


SERIES = {"kpi": "calls", "step": "day", "from": "2026-11-01", "to": "2026-11-05"}
BAD_SERIES = [
    ({"kpi": "calls,happiness"}, "kpi"),
    ({"kpi": "open_deals"}, "kpi"),
    ({"step": "hour"}, "step"),
    ({"from": "2026-11-06"}, "from"),
    ({"by": "planet"}, "by"),
    ({"window": "today"}, "window"),
    ({"format": "pdf"}, "format"),
    ({"from": "2025-01-01", "to": "2026-11-05"}, "step"),  # 674 daily points
    ({"from": "1970-01-01", "to": "9998-12-31"}, "step"),  # counted, not built
]


@pytest.mark.parametrize(("params", "field"), BAD_SERIES)
async def test_each_bad_series_parameter_is_a_400_naming_it(
    client: Client, params: dict[str, str], field: str
) -> None:
    status, body = await get(client, "/v1/kpis/series", **{**SERIES, **params})
    assert status == 400, body
    assert field in [problem["field"] for problem in body["problems"]]


async def test_a_missing_series_parameter_is_named(client: Client) -> None:
    for missing in SERIES:
        params = {k: v for k, v in SERIES.items() if k != missing}
        status, body = await get(client, "/v1/kpis/series", **params)
        assert status == 400
        assert {"field": missing, "problem": "required"} in body["problems"]


async def test_the_openapi_document_is_served_and_describes_these_answers(client: Client) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) >= {"/v1/kpis", "/v1/kpis/series", "/v1/waiting"}
    # The answers above validated as they were read (tests/openapi_check.py); this one
    # must too, with compare and by, the richest shape.
    _, body = await get(client, period="last_month", by="manager", compare="last_year")
    assert check_answer("/v1/kpis", 200, msgspec.json.encode(body))
    body["total"]["calls"] = "many"
    with pytest.raises(OpenApiMismatch, match="calls"):
        check_answer("/v1/kpis", 200, msgspec.json.encode(body))


async def test_a_repeated_parameter_is_a_400_naming_it(client: Client) -> None:
    for query in ("tenant=kyiv&period=2026-10&period=2026-09", "tenant=kyiv&tenant=kyiv"):
        response = await client.get(f"/v1/kpis?{query}")
        body = await response.json()
        assert response.status == 400
        assert {p["field"] for p in body["problems"]} & {"period", "tenant"}
        assert any(p["problem"] == "given more than once" for p in body["problems"])
