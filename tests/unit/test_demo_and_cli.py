"""The demo office emits valid canonical events; the CLI fails clearly on bad settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from handlers.validation import parse_events
from salespulse.app.demo import DemoOffice
from salespulse.app.launcher import DEMO_TENANTS as DEMO_TENANTS_FILE
from salespulse.cli import main
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.tenants import TenantDirectory, load_tenants
from tests.kpi_memory import MemoryStore


def test_demo_office_events_all_pass_ingest_validation() -> None:
    office = DemoOffice(seed=7)
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    events = office.day_so_far(now) + [e for _ in range(500) for e in office.next_events(now)]
    parsed = parse_events(msgspec.json.encode(events), now)
    kinds = {event.type for event in parsed}
    assert kinds == {
        "call", "message", "lead_created", "deal_created", "deal_stage_changed", "marketing_cost",
    }  # fmt: skip
    assert any(event.stage_kind == "won" and event.amount for event in parsed)
    assert len({event.event_id for event in parsed}) == len(parsed)


@pytest.mark.parametrize("hour", [2, 9, 15, 23])
def test_the_history_it_starts_with_is_on_pace_with_the_demo_plan(hour: int) -> None:
    """What `make run` posts before going live puts the wall's "vs pace" near zero at any
    hour of any day: today's and the month's wins and revenue so far against the demo
    tenant's monthly targets."""
    config = TenantDirectory(load_tenants(DEMO_TENANTS_FILE)).get("demo")
    now = datetime(2026, 12, 20, hour, 30, tzinfo=UTC)
    midnight = datetime(2026, 12, 20, tzinfo=UTC)
    events = DemoOffice(seed=hour).month_so_far(now)
    at = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert at == sorted(at)
    assert datetime(2026, 12, 1, tzinfo=UTC) <= at[0]
    assert at[-1] < now
    earlier = [e for e, t in zip(events, at, strict=True) if t < midnight]
    assert {e.get("stage_kind") or e["type"] for e in earlier} == {"won", "marketing_cost"}
    spend = [e for e in events if e["type"] == "marketing_cost"]
    assert [datetime.fromisoformat(e["occurred_at"]).day for e in spend] == list(range(1, 21))
    assert {(e["amount"], e["currency"], e["source_channel"]) for e in spend} == {
        ("1000", "USD", "website")
    }
    revenue_plan = sum(t.revenue or 0 for t in config.targets.teams.values())
    wins_plan = sum(t.deals_won or 0 for t in config.targets.teams.values())
    today = (hour + 0.5) / 24 / 31  # December, no business hours: every day the same plan
    for share, since in ((today, midnight), (19 / 31 + today, datetime.min.replace(tzinfo=UTC))):
        won = [
            e
            for e, t in zip(events, at, strict=True)
            if t >= since and e.get("stage_kind") == "won"
        ]
        revenue = sum(Decimal(e["amount"]) for e in won)
        assert 0.7 < revenue / (revenue_plan * Decimal(share)) < 1.3, (share, revenue)
        assert 0.7 < len(won) / (wins_plan * share) < 1.3, (share, len(won))


def test_demo_clients_get_answers_mostly_within_the_demo_sla() -> None:
    """An hour of demo traffic through the SLA fold: a handful wait at any time, most
    first responses meet the demo tenant's SLA and some do not (the wall has both)."""
    tenants = TenantDirectory(load_tenants(DEMO_TENANTS_FILE))
    office = DemoOffice(seed=3)
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
    first, second = DemoOffice(seed=1), DemoOffice(seed=1)
    assert [first.next_events(now) for _ in range(50)] == [
        second.next_events(now) for _ in range(50)
    ]


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
    office = DemoOffice(seed=5)
    evening = datetime(2026, 12, 20, 23, 59, 59, tzinfo=UTC)
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
