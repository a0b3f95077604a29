"""A wall frame from stored sums: tiles, plan and pace, leaderboard, waits; its signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from metrics.read.kpi_reader import RawSums
from metrics.read.won_deals import RecentWin
from metrics.wall.frame import Frame, WallKey, build_frame, day_progress, first_response
from salespulse.core.kpi.redis_layout import MONEY_SCALE
from salespulse.core.staff import staff_names
from salespulse.core.tenants import TenantConfig

CONFIG = TenantConfig.model_validate(
    {
        "timezone": "UTC",
        "teams": {"north": {"managers": ["17", "42"]}, "south": {"managers": ["5"]}},
        "targets": {
            "managers": {"17": {"revenue": "3000", "deals_won": 30}, "42": {"revenue": "3000"}},
            "teams": {"south": {"revenue": "900"}},
        },
        "wall": {"names": {"17": "Anna"}},
    }
)
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # November: 30 days


def dims(manager: str, team: str) -> tuple[str, ...]:
    return (manager, team, "sales", "website")


TODAY: RawSums = {
    ("revenue", dims("17", "north")): 150 * MONEY_SCALE,
    ("won", dims("17", "north")): 2,
    ("lost", dims("42", "north")): 1,
    ("calls:out:answered", dims("42", "north")): 4,
    ("calls:in:missed", dims("17", "north")): 1,
    ("revenue", dims("5", "south")): 70 * MONEY_SCALE,
    ("won", dims("5", "south")): 1,
}
MONTH: RawSums = {key: amount * 10 for key, amount in TODAY.items()}


def payload(frame: Frame) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(frame.encode())
    return decoded


def test_a_team_frame_counts_only_its_team_and_plans_from_its_members():
    frame = payload(build_frame(WallKey("acme", "north"), CONFIG, NOON, TODAY, MONTH))
    kpis = frame["kpis"]
    assert kpis["revenue"] == 150.0
    assert kpis["won"] == 2
    assert kpis["calls"] == 5
    assert kpis["calls_answered"] == 4
    assert kpis["conversion"] == {"value": 2 / 3, "numerator": 2, "denominator": 3}
    plan = frame["plan"]
    # No team target: the members' monthly targets summed, one 30th of it today.
    assert plan["revenue_month_plan"] == 6000.0
    assert plan["revenue_today_plan"] == 200.0
    assert plan["revenue_today_pace"] == 100.0  # half the day gone
    assert plan["won_today_plan"] == 1.0
    assert plan["revenue_month"] == 1500.0


def test_the_office_frame_sums_everything_and_plans_from_team_targets():
    frame = payload(build_frame(WallKey("acme", None), CONFIG, NOON, TODAY, MONTH))
    assert frame["key"] == "*"
    assert frame["kpis"]["revenue"] == 220.0
    assert frame["plan"]["revenue_month_plan"] == 900.0  # teams' targets win over managers'
    assert "won_today_plan" not in frame["plan"]


def test_the_leaderboard_lists_every_member_even_idle_ones_best_first_with_names():
    frame = payload(build_frame(WallKey("acme", None), CONFIG, NOON, TODAY, MONTH))
    assert [
        (r["manager"], r["name"], r["revenue"], r["won"], r["calls"]) for r in frame["leaders"]
    ] == [
        ("17", "Anna", 150.0, 2, 1),
        ("5", "5", 70.0, 1, 0),
        ("42", "42", 0.0, 0, 4),
    ]


def test_the_leaderboard_takes_crm_names_under_the_tenants_file_override():
    config = CONFIG.model_copy(update={"managers": {"42": "Олександра Костянтинопольська"}})
    crm = {"17": "Анна Шевченко", "42": "Oleksandra K.", "5": "Богдан Мельник"}
    names = staff_names(config, crm)
    frame = payload(build_frame(WallKey("acme", None), config, NOON, TODAY, MONTH, names=names))
    assert [(r["manager"], r["name"]) for r in frame["leaders"]] == [
        ("17", "Анна Шевченко"),  # the CRM's name wins over wall.names
        ("5", "Богдан Мельник"),
        ("42", "Олександра Костянтинопольська"),  # the tenants file wins over the CRM
    ]
    renamed = build_frame(WallKey("acme", None), config, NOON, TODAY, MONTH, names={})
    assert (
        renamed.signature
        != build_frame(WallKey("acme", None), config, NOON, TODAY, MONTH, names=names).signature
    ), "a renamed manager is news for the wall"


def test_an_empty_row_that_is_nobodys_is_not_on_the_leaderboard():
    # The office's ad spend has no manager: its "unassigned" group ranks nothing.
    today = {**TODAY, ("marketing_cost:website", dims("unassigned", "")): 900 * MONEY_SCALE}
    frame = payload(build_frame(WallKey("acme", None), CONFIG, NOON, today, MONTH))
    assert [r["manager"] for r in frame["leaders"]] == ["17", "5", "42"]
    calls = {**today, ("calls:out:answered", dims("unassigned", "")): 2}
    frame = payload(build_frame(WallKey("acme", None), CONFIG, NOON, calls, MONTH))
    assert "unassigned" in [r["manager"] for r in frame["leaders"]], "unassigned calls show"


def test_the_signature_ignores_the_clock_but_not_a_new_call():
    key = WallKey("acme", "north")
    early = build_frame(key, CONFIG, NOON, TODAY, MONTH)
    later = build_frame(key, CONFIG, NOON + timedelta(minutes=7), TODAY, MONTH)
    assert early.encode() != later.encode()
    assert early.signature == later.signature
    more = {**TODAY, ("calls:out:answered", dims("42", "north")): 5}
    assert build_frame(key, CONFIG, NOON, more, MONTH).signature != early.signature


def wait(
    conversation: str, age: float, state: str = "ok", basis: str = "calendar"
) -> dict[str, object]:
    return {
        "conversation": conversation, "channel": "chat", "manager": "17", "team": "north",
        "kind": "first", "opened_at": (NOON - timedelta(seconds=age)).isoformat(),
        "age_seconds": age, "business_age_seconds": age / 2, "basis": basis,
        "target_seconds": 300, "at_risk_seconds": 240, "state": state,
    }  # fmt: skip


def test_waits_come_oldest_first_with_counts_and_no_conversation_id():
    waits = [wait("conv-secret-1", 10), wait("conv-secret-2", 400, "breached"),
             wait("conv-secret-3", 250, "at_risk")]  # fmt: skip
    frame = build_frame(WallKey("acme", "north"), CONFIG, NOON, TODAY, MONTH, waiting=waits)
    body = payload(frame)["waiting"]
    assert (body["count"], body["ok"], body["at_risk"], body["breached"]) == (3, 1, 1, 1)
    assert [row["age_seconds"] for row in body["entries"]] == [400, 250, 10]
    assert body["entries"][0]["name"] == "Anna"
    assert body["entries"][0]["ticking"] is True
    assert b"conv-secret" not in frame.encode()
    # Calendar ages tick on the page: an older age alone is no news.
    aged = [wait("conv-secret-1", 11), wait("conv-secret-2", 401, "breached"),
            wait("conv-secret-3", 251, "at_risk")]  # fmt: skip
    same = build_frame(WallKey("acme", "north"), CONFIG, NOON, TODAY, MONTH, waiting=aged)
    assert same.signature == frame.signature
    redder = [wait("conv-secret-1", 11), wait("conv-secret-2", 401, "breached"),
              wait("conv-secret-3", 301, "breached")]  # fmt: skip
    assert (
        build_frame(WallKey("acme", "north"), CONFIG, NOON, TODAY, MONTH, waiting=redder).signature
        != frame.signature
    )


def test_business_ages_tick_on_the_page_only_while_the_team_is_open():
    config = TenantConfig.model_validate(
        {**CONFIG.model_dump(), "business_hours": {"weekly": {"fri": ["09:00-17:00"]}}}
    )
    key = WallKey("acme", "north")
    waits = [wait("c", 100, basis="business")]
    during = build_frame(key, config, NOON, TODAY, MONTH, waiting=waits)
    entry = payload(during)["waiting"]["entries"][0]
    assert (entry["age_seconds"], entry["ticking"]) == (50, True)
    evening = NOON.replace(hour=18)
    after = build_frame(key, config, evening, TODAY, MONTH, waiting=waits)
    assert payload(after)["waiting"]["entries"][0]["ticking"] is False
    assert after.signature != during.signature  # the page must stop the clock


def hist(**buckets: int) -> RawSums:
    return {(f"resp_hist:first:chat:{name}", dims("17", "north")): n for name, n in buckets.items()}


def test_the_first_response_median_interpolates_inside_its_bucket():
    # Buckets 15, 30, 60: two replies ≤ 15 s, two in (15, 30], none above.
    assert first_response(hist(c0=2, c1=2, b0=4), "calendar").median_s == 15.0
    median = first_response(hist(c0=1, c2=3), "calendar")
    assert median.count == 4
    assert median.median_s == pytest.approx(30 + 30 * (2 - 1) / 3)
    assert first_response(hist(c0=9), "business").median_s is None
    assert first_response(hist(c13=1), "calendar").median_s == 86400.0


def test_the_day_progresses_over_open_hours_when_the_team_has_a_calendar():
    config = TenantConfig.model_validate(
        {"business_hours": {"weekly": {"fri": ["09:00-17:00"]}}}
    )  # 2026-11-20 is a Friday
    hours = config.calendar_for(None)
    assert day_progress(NOON, config, hours) == pytest.approx(3 / 8)
    assert day_progress(NOON, config, None) == 0.5
    assert day_progress(NOON + timedelta(days=1), config, hours) == 1.0  # Saturday: closed


def test_each_leader_carries_the_month_against_the_monthly_target():
    frame = payload(build_frame(WallKey("acme", None), CONFIG, NOON, TODAY, MONTH))
    rows = {row["manager"]: row for row in frame["leaders"]}
    # 17: 1500 of a 3000 revenue target (revenue first, though it has a deals target too)
    assert rows["17"]["month_revenue"] == 1500.0
    assert (rows["17"]["progress"], rows["17"]["progress_of"]) == (0.5, "revenue")
    assert rows["42"]["progress"] == 0.0  # a target, nothing sold yet
    assert (rows["5"]["progress"], rows["5"]["progress_of"]) == (None, None)  # no target
    assert rows["17"]["text"]["progress"] == "50%"
    assert rows["5"]["text"]["progress"] == ""


def test_a_deals_won_target_alone_is_progress_in_deals():
    config = CONFIG.model_copy(
        update={"targets": TenantConfig.model_validate(
            {"targets": {"managers": {"17": {"deals_won": 40}}}}).targets}
    )  # fmt: skip
    frame = payload(build_frame(WallKey("acme", None), config, NOON, TODAY, MONTH))
    rows = {row["manager"]: row for row in frame["leaders"]}
    assert (rows["17"]["progress"], rows["17"]["progress_of"]) == (0.5, "deals_won")


def test_wins_name_the_manager_and_amount_never_the_deal_and_are_news():
    won_us = int(NOON.timestamp() * 1_000_000)
    wins = [
        RecentWin("deal-secret-9", won_us, 1_250_000 * MONEY_SCALE, "17", "north"),
        RecentWin("deal-8", won_us - 1, None, "5", "south"),
    ]
    key = WallKey("acme", None, "uk")
    built = build_frame(key, CONFIG, NOON, TODAY, MONTH, wins=wins)
    frame = payload(built)
    first, second = frame["wins"]
    assert (first["name"], first["amount"]) == ("Anna", 1_250_000.0)
    assert first["text"] == {
        "full": "1\u00a0250\u00a0000\u00a0USD",
        "short": "1,25\u00a0млн\u00a0USD",
    }
    assert (second["name"], second["amount"]) == ("5", None)
    assert "deal-secret-9" not in built.encode().decode()
    # A team's wall celebrates its own team's wins only.
    north = payload(build_frame(WallKey("acme", "north"), CONFIG, NOON, TODAY, MONTH, wins=wins))
    assert [win["name"] for win in north["wins"]] == ["Anna"]
    # A new win is news: the hub pushes the frame.
    quiet = build_frame(key, CONFIG, NOON, TODAY, MONTH, wins=wins[1:])
    assert quiet.signature != built.signature


@pytest.mark.parametrize(
    ("locale", "currency", "revenue", "month"),
    [
        ("uk", "UAH", "150\u00a0₴", "1\u00a0500\u00a0₴"),
        ("ru", "RUB", "150\u00a0₽", "1\u00a0500\u00a0₽"),
        ("en", "USD", "$150", "$1,500"),
    ],
)
def test_every_number_comes_formatted_in_the_keys_locale(locale, currency, revenue, month):
    config = CONFIG.model_copy(update={"currency": currency})
    frame = payload(build_frame(WallKey("acme", "north", locale), config, NOON, TODAY, MONTH))
    assert frame["kpis"]["revenue"] == 150.0  # the raw number stays
    assert frame["text"]["revenue"]["full"] == revenue
    assert frame["plan"]["text"]["revenue_month"]["full"] == month
    assert frame["leaders"][0]["text"]["revenue"]["full"] == revenue
    assert frame["text"]["today"] == {"uk": "20 листопада", "ru": "20 ноября"}.get(
        locale, "November 20"
    )
