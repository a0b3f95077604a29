"""The demo office emits valid canonical events; the CLI fails clearly on bad settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
import yaml

from handlers.validation import parse_events
from salespulse.app.demo import DemoOffice
from salespulse.app.demo_offices import LOCALES, MANAGERS, OFFICES, DemoLocale, demo_tenants_text
from salespulse.app.launcher import DEMO_TENANTS as DEMO_TENANTS_FILE
from salespulse.cli import main
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile, load_tenants
from tests.kpi_memory import MemoryStore


def office_config(locale: DemoLocale) -> TenantConfig:
    return TenantsFile.model_validate(yaml.safe_load(demo_tenants_text(locale))).tenants["demo"]


@pytest.mark.parametrize("locale", LOCALES)
def test_demo_office_events_all_pass_ingest_validation(locale: DemoLocale) -> None:
    office = DemoOffice(seed=7, locale=locale, speed=100)
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    events = office.day_so_far(now) + [e for _ in range(500) for e in office.next_events(now)]
    parsed = parse_events(msgspec.json.encode(events), now)
    kinds = {event.type for event in parsed}
    assert kinds == {
        "call", "message", "lead_created", "deal_created", "deal_stage_changed", "marketing_cost",
    }  # fmt: skip
    won = [event for event in parsed if event.stage_kind == "won"]
    assert won
    assert {event.currency for event in won} == {OFFICES[locale].currency}
    assert len({event.event_id for event in parsed}) == len(parsed)


def test_the_demo_tenants_file_is_the_office_in_its_language_currency_and_zone() -> None:
    en, uk, ru = (office_config(locale) for locale in LOCALES)
    assert (uk.currency, uk.locale, uk.timezone) == ("UAH", "uk", "Europe/Kyiv")
    assert (ru.currency, ru.locale, ru.timezone) == ("RUB", "ru", "Europe/Moscow")
    assert (en.currency, en.locale) == ("USD", "en")
    assert uk.managers["m-101"] == "Олена Коваленко"
    assert ru.managers["m-101"] == "Анна Смирнова"
    for config in (en, uk, ru):
        staff = [m for team in config.teams.values() for m in team.managers]
        assert 8 <= len(staff) <= 12
        assert set(config.managers) == set(staff), "everyone has a name"
        assert not config.wall.names
        for target in config.targets.managers.values():  # plans in whole deals
            assert target.deals_won is not None
            assert target.deals_won % 30 == 0
    # The committed file is the English office as the generator writes it.
    committed = TenantDirectory(load_tenants(DEMO_TENANTS_FILE)).get("demo")
    assert committed.model_dump() == en.model_dump()


def test_each_manager_makes_40_to_80_calls_and_wins_a_few_deals_a_day() -> None:
    office = DemoOffice(seed=11, locale="uk")
    # A whole local day, as the history posts it.
    end = datetime(2026, 12, 21, 0, 0, tzinfo=office.zone)
    day = office.day_so_far(end - timedelta(microseconds=1))
    for manager in MANAGERS:
        mine = [e for e in day if e.get("manager_id") == manager]
        calls = sum(1 for e in mine if e["type"] == "call")
        won = sum(1 for e in mine if e.get("stage_kind") == "won")
        # Poisson around each manager's rate: 40 to 80 calls, a few wins (0 to 9 by chance).
        assert 25 <= calls <= 100, (manager, calls)
        assert won <= 9, (manager, won)
    total_won = sum(1 for e in day if e.get("stage_kind") == "won")
    assert 15 <= total_won <= 45  # about 29 a day for the office


@pytest.mark.parametrize(("locale", "hour"), [("en", 2), ("uk", 9), ("ru", 15), ("uk", 23)])
def test_the_history_it_starts_with_is_on_pace_with_the_demo_plan(
    locale: DemoLocale, hour: int
) -> None:
    """What `run --demo` posts before going live puts the wall's "vs pace" near zero at
    any hour of any day: the month's wins and revenue so far against the office's
    monthly targets (30 days of its daily rate), and a plausible return on the website's
    ad spend."""
    config = office_config(locale)
    office = DemoOffice(seed=hour, locale=locale)
    zone = ZoneInfo(config.timezone)
    now = datetime(2026, 12, 20, hour, 30, tzinfo=zone)
    midnight = datetime(2026, 12, 20, tzinfo=zone)
    events = office.month_so_far(now)
    at = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert at == sorted(at)
    assert datetime(2026, 12, 1, tzinfo=zone) <= at[0]
    assert at[-1] < now
    earlier = [e for e, t in zip(events, at, strict=True) if t < midnight]
    assert {e.get("stage_kind") or e["type"] for e in earlier} == {"won", "marketing_cost"}
    spend = [e for e in events if e["type"] == "marketing_cost"]
    assert [datetime.fromisoformat(e["occurred_at"]).day for e in spend] == list(range(1, 21))
    assert {(e["currency"], e["source_channel"]) for e in spend} == {(config.currency, "website")}
    revenue_plan = sum(t.revenue or 0 for t in config.targets.teams.values())
    wins_plan = sum(t.deals_won or 0 for t in config.targets.teams.values())
    share = (19 + (hour + 0.5) / 24) / 30  # the plan is 30 days of the daily rate
    won = [e for e in events if e.get("stage_kind") == "won"]
    revenue = sum(Decimal(e["amount"]) for e in won)
    # About 560 wins so far: Poisson noise is a few per cent.
    assert 0.85 < revenue / (revenue_plan * Decimal(share)) < 1.15, revenue
    assert 0.85 < len(won) / (wins_plan * share) < 1.15, len(won)
    website = sum(Decimal(e["amount"]) for e in won if e["source_channel"] == "website")
    cost = sum(Decimal(e["amount"]) for e in spend)
    assert 1.5 < (website - cost) / cost < 3.5, "ROMI about 250 %"


def test_demo_clients_get_answers_mostly_within_the_demo_sla() -> None:
    """An hour of a busy demo office (speed 20) through the SLA fold: a handful wait at
    any time, most first responses meet the demo tenant's SLA and some do not."""
    tenants = TenantDirectory(TenantsFile.model_validate(yaml.safe_load(demo_tenants_text("uk"))))
    office = DemoOffice(seed=3, locale="uk", speed=20)
    start = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    store = MemoryStore(tenants)
    waiting_counts = []
    raw: list[dict[str, object]] = []
    for step in range(9000):  # one hour at the demo's pace (0.4 s)
        now = start + timedelta(seconds=0.4 * step)
        raw += office.next_events(now)
        # Applied in two-minute batches, not step by step (20x faster): the fold's result
        # does not depend on how events are batched, so the counts taken at each batch's
        # end are the ones the step-by-step run took there.
        if step % 300 == 0 or step == 8999:
            store.apply_batch(parse_events(msgspec.json.encode(raw), now))
            raw = []
        if step % 300 == 0:
            waiting_counts.append(len(store.waiting))
    totals = store.components("demo", "all", None, start + timedelta(hours=1))[TOTAL_GROUP]
    met = sum(v for k, v in totals.items() if k.startswith("sla_met:first"))
    breached = sum(v for k, v in totals.items() if k.startswith("sla_breach:first"))
    assert met > 4 * breached > 0
    assert 0 < max(waiting_counts[5:]) < 60


def test_demo_office_is_reproducible_with_a_seed() -> None:
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    first, second = DemoOffice(seed=1, speed=50), DemoOffice(seed=1, speed=50)
    assert [first.next_events(now) for _ in range(50)] == [
        second.next_events(now) for _ in range(50)
    ]


def test_the_demo_speed_is_bounded() -> None:
    with pytest.raises(ValueError, match="speed"):
        DemoOffice(speed=0)
    with pytest.raises(SystemExit):
        main(["run", "--demo", "--demo-speed", "1000"])
    with pytest.raises(SystemExit):
        main(["run", "--demo", "--demo-locale", "de"])


def test_cli_reports_invalid_settings_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SALESPULSE_HTTP_PORT", "not-a-port")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err
    assert "SALESPULSE_HTTP_PORT: Input should be a valid integer" in err


def test_cli_never_prints_a_secret_it_refuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SALESPULSE_INGEST_TOKEN", "hunter2-short")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "SALESPULSE_INGEST_TOKEN must be at least 16 characters" in err
    assert "hunter2" not in err


def test_cli_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_cli_reports_a_bad_tenants_file_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tenants:\n  acme:\n    timezone: Nowhere/City\n")
    monkeypatch.setenv("SALESPULSE_TENANTS_FILE", str(tenants))
    # Both set: nothing embedded is started before the tenants file is read.
    monkeypatch.setenv("SALESPULSE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("SALESPULSE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert f"{tenants}: tenants.acme: " in err
    assert "unknown time zone 'Nowhere/City'" in err


def test_the_live_office_posts_each_days_ad_spend_once_when_the_day_starts() -> None:
    office = DemoOffice(seed=5, locale="uk")
    evening = datetime(2026, 12, 20, 23, 59, 59, tzinfo=office.zone)
    ticks = [office.next_events(evening) for _ in range(3)]
    ticks += [office.next_events(evening + timedelta(seconds=2)) for _ in range(3)]
    spend = [e for tick in ticks for e in tick if e["type"] == "marketing_cost"]
    assert [e["occurred_at"][:10] for e in spend] == ["2026-12-20", "2026-12-21"]
    assert all(len(tick) == 1 for tick in (ticks[0], ticks[3]))  # the spend, on its own


@pytest.mark.parametrize(
    ("argument", "value"),
    [("--events", "0"), ("--naive-events", "-3"), ("--partitions", "two"), ("--runs", "0")],
)
def test_bench_sizes_must_be_positive_whole_numbers(
    capsys: pytest.CaptureFixture[str], argument: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", argument, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {argument}: must be a whole number of at least 1, not {value!r}" in error
