"""KPI arithmetic of one event and of a batch, without any server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from streams.fold import event_day, fold_batch, kpi_increments, money_units
from tests.helpers import make_event

UTC_ZONE = ZoneInfo("UTC")


def zone_for(tenant: str) -> ZoneInfo:
    return ZoneInfo("Europe/Moscow") if tenant == "msk" else UTC_ZONE


def test_answered_call_counts_and_adds_talk_time_in_ms() -> None:
    event = make_event("c1", "call", direction="out", answered=True, duration_s=61.5)
    assert kpi_increments(event) == [
        (("calls", "m-1", "out", "answered"), 1),
        (("talk_time_ms", "m-1"), 61_500),
    ]


def test_missed_call_has_no_talk_time() -> None:
    event = make_event("c1", "call", answered=False, duration_s=12)
    assert kpi_increments(event) == [(("calls", "m-1", "in", "missed"), 1)]


def test_message_by_direction_and_bots_do_not_count() -> None:
    assert kpi_increments(make_event("m1", "message", direction="out")) == [
        (("messages", "m-1", "out"), 1)
    ]
    assert kpi_increments(make_event("m2", "message", direction="out", automated=True)) == []


def test_won_stage_counts_entry_win_and_revenue_in_exact_units() -> None:
    event = make_event("w1", "deal_stage_changed", amount=Decimal("1234.56789"))
    assert kpi_increments(event) == [
        (("stage_entries", "m-1", "sales", "won"), 1),
        (("deals_won", "m-1"), 1),
        (("revenue", "m-1", "USD"), 12_345_679),
    ]


def test_open_stage_counts_only_the_entry() -> None:
    event = make_event(
        "s1",
        "deal_stage_changed",
        stage_to="proposal",
        stage_kind="open",
        amount=None,
        currency=None,
    )
    assert kpi_increments(event) == [(("stage_entries", "m-1", "sales", "proposal"), 1)]


def test_unassigned_manager_gets_a_stable_name() -> None:
    assert kpi_increments(make_event("l1", "lead_created", manager_id=None)) == [
        (("leads_created", "unassigned"), 1)
    ]


def test_types_without_first_kpis_add_nothing() -> None:
    assert kpi_increments(make_event("r1", "rating", rating=5)) == []


@pytest.mark.parametrize(
    ("amount", "units"),
    [(Decimal("0.00005"), 0), (Decimal("0.00015"), 2), (Decimal(10), 100_000)],
)
def test_money_rounds_half_even(amount: Decimal, units: int) -> None:
    assert money_units(amount) == units


def test_day_follows_the_tenant_zone() -> None:
    late_evening_utc = datetime(2026, 11, 21, 22, 30, tzinfo=UTC)
    event = make_event("c1", occurred_at=late_evening_utc)
    assert event_day(event, UTC_ZONE) == "2026-11-21"
    assert event_day(event, ZoneInfo("Europe/Moscow")) == "2026-11-22"


def test_batch_fold_sums_per_window_and_groups_ids_by_day() -> None:
    events = [
        make_event("a", tenant="msk", occurred_at=datetime(2026, 11, 21, 22, 30, tzinfo=UTC)),
        make_event("b", tenant="msk", occurred_at=datetime(2026, 11, 21, 20, 0, tzinfo=UTC)),
    ]
    fold = fold_batch(events, zone_for)
    field = ("calls", "m-1", "in", "answered")
    assert fold.all_time[("msk", field)] == 2
    assert fold.by_day[("msk", "2026-11-22", field)] == 1
    assert fold.by_day[("msk", "2026-11-21", field)] == 1
    assert fold.event_ids == {("msk", "2026-11-22"): ["a"], ("msk", "2026-11-21"): ["b"]}


def test_repeated_ids_in_a_batch_count_once() -> None:
    fold = fold_batch([make_event("a"), make_event("a"), make_event("b")], zone_for)
    assert fold.events == 2
    assert fold.duplicates == 1
    assert fold.all_time[("acme", ("calls", "m-1", "in", "answered"))] == 2


def test_same_id_in_two_tenants_is_two_events() -> None:
    fold = fold_batch([make_event("a"), make_event("a", tenant="other")], zone_for)
    assert fold.events == 2


def test_ids_the_store_already_counted_are_skipped() -> None:
    fold = fold_batch(
        [make_event("a"), make_event("b")], zone_for, skip_ids=frozenset({("acme", "a")})
    )
    assert fold.events == 1
    assert fold.duplicates == 1
    assert fold.event_ids == {("acme", "2026-11-20"): ["b"]}
