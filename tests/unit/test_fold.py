"""KPI arithmetic of events and deal states, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from salespulse.core.events import CrmEvent, semantic_problems
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from streams.entities import deal_contributions, money_units
from streams.entity_state import DealState, join_deal
from streams.fold import event_components
from tests.helpers import T0, make_event
from tests.kpi_memory import MemoryStore
from tests.oracle.batch import TOTAL, compute_components
from tests.oracle.compare import assert_matches_oracle

CONFIG = TenantConfig.model_validate({
    "timezone": "Europe/Moscow",
    "currency": "EUR",
    "currency_rates": {"USD": "0.9"},
    "pipelines": {"sales": {"stages": [
        {"id": "new"}, {"id": "qualified", "warm": True}, {"id": "proposal", "limit_hours": 24},
        {"id": "won", "kind": "won"}, {"id": "lost", "kind": "lost"},
    ]}},
    "teams": {"north": {"managers": ["m-1"]}},
})  # fmt: skip
TENANTS = TenantDirectory(TenantsFile(tenants={"acme": CONFIG}))


def test_calls_count_by_direction_and_outcome_and_talk_time_in_ms() -> None:
    answered = make_event("c1", "call", direction="out", answered=True, duration_s=61.5)
    assert list(event_components(answered, CONFIG)) == [
        ("calls:out:answered", 1),
        ("talk_time_ms", 61_500),
    ]
    missed = make_event("c2", "call", answered=False, duration_s=12)
    assert list(event_components(missed, CONFIG)) == [("calls:in:missed", 1)]


def test_bots_are_not_messages_and_ratings_keep_sum_and_count() -> None:
    assert list(event_components(make_event("m", "message", automated=True), CONFIG)) == []
    assert list(event_components(make_event("r", "rating", rating=4), CONFIG)) == [
        ("rating_sum", 4),
        ("rating_count", 1),
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "units"),
    [
        (Decimal("10"), "EUR", 100_000),
        (Decimal("10"), "USD", 90_000),
        (Decimal("0.00005"), None, 0),
        (Decimal("0.00015"), None, 2),
        (Decimal(1), "JPY", None),
    ],
)
def test_money_converts_then_rounds_half_even(amount, currency, units) -> None:
    assert money_units(amount, currency, CONFIG) == units


def stage(event_id: str, stage_to: str, minutes: int, **fields) -> CrmEvent:
    values = {"stage_kind": None, "amount": None, "currency": None, **fields}
    return make_event(
        event_id,
        "deal_stage_changed",
        stage_to=stage_to,
        occurred_at=T0 + timedelta(minutes=minutes),
        **values,
    )


def contributions(*events) -> dict[str, int]:
    state = DealState()
    for event in events:
        join_deal(state, event)
    out: dict[str, int] = {}
    for _, component, _, amount in deal_contributions(state, CONFIG):
        out[component] = out.get(component, 0) + amount
    return out


def test_a_won_deal_counts_revenue_cycle_and_cohorts() -> None:
    created = make_event("d0", "deal_created", occurred_at=T0)
    out = contributions(
        created,
        stage("s1", "new", 0),
        stage("s2", "proposal", 60),  # skipped qualified
        stage("s3", "won", 120, amount=Decimal("100"), currency="USD", cost=Decimal("40")),
    )
    assert out["won"] == 1
    assert out["revenue"] == 900_000  # 100 USD × 0.9
    assert out["margin"] == 540_000  # (100 − 40) × 0.9
    assert out["cycle_sum_ms"] == 120 * 60_000
    assert out["cohort_den:sales:new"] == out["cohort_num:sales:new"] == 1
    assert "cohort_den:sales:qualified" not in out  # never entered
    assert out["cohort_den:sales:proposal"] == out["cohort_num:sales:proposal"] == 1
    assert out["e2e_den:sales"] == out["e2e_num:sales"] == 1
    assert out["warm_den:sales"] == out["warm_num:sales"] == 1
    assert out["stay_count:sales:new"] == out["stay_count:sales:proposal"] == 1
    assert out["stay_sum_ms:sales:new"] == 60 * 60_000


def test_the_latest_stage_decides_the_outcome_whatever_the_arrival_order() -> None:
    events = [
        stage("a", "new", 0),
        stage("b", "won", 10, amount=Decimal(5)),
        stage("c", "lost", 20, lost_reason="price"),
    ]
    assert contributions(*events) == contributions(*reversed(events))
    out = contributions(*events)
    assert out["lost"] == 1
    assert out["lost_by_reason:price"] == 1
    assert "won" not in out


def test_a_deal_in_an_unconfigured_pipeline_still_counts_outcomes() -> None:
    out = contributions(stage("x", "closed", 0, pipeline="other", stage_kind="won"))
    assert out == {"won": 1, "stage_entries:other:closed": 1}


def test_memory_store_sees_reopened_deals_leave_the_won_count() -> None:
    store = MemoryStore(TENANTS)
    now = T0 + timedelta(hours=1)
    store.apply_batch([stage("a", "won", 0, amount=Decimal(10))])
    assert store.components("acme", "all", None, now)[TOTAL_GROUP]["won"] == 1
    store.apply_batch([stage("b", "proposal", 5)])
    total = store.components("acme", "all", None, now)[TOTAL_GROUP]
    assert "won" not in total
    assert total["open:sales:proposal"] == 1
    assert total["ready:sales:proposal"] == 1  # default: the last open stage


def test_stuck_deals_are_those_past_their_stage_limit() -> None:
    store = MemoryStore(TENANTS)
    store.apply_batch(
        [stage("a", "proposal", 0, entity_id="d1"), stage("b", "proposal", 120, entity_id="d2")]
    )
    total = store.components("acme", "all", None, T0 + timedelta(hours=25))[TOTAL_GROUP]
    assert total["open:sales:proposal"] == 2
    assert total["stuck:sales:proposal"] == 1


def test_dimensions_use_the_configured_team() -> None:
    store = MemoryStore(TENANTS)
    store.apply_batch([make_event("c", "call", manager_id="m-1", team="ignored")])
    groups = store.components("acme", "all", "team", T0)
    assert groups["north"]["calls"] == 1


def test_today_follows_the_tenant_zone() -> None:
    store = MemoryStore(TENANTS)
    late_evening_utc = datetime(2026, 11, 21, 22, 30, tzinfo=UTC)  # 01:30 on the 22nd in Moscow
    store.apply_batch([make_event("c", "call", occurred_at=late_evening_utc)])
    assert (
        store.components("acme", "today", None, datetime(2026, 11, 22, 8, 0, tzinfo=UTC))[
            TOTAL_GROUP
        ]["calls"]
        == 1
    )
    assert (
        store.components("acme", "today", None, datetime(2026, 11, 21, 12, 0, tzinfo=UTC))[
            TOTAL_GROUP
        ]
        == {}
    )


DAY = datetime(2026, 11, 19, tzinfo=UTC)  # a date-only CRM gives every event this instant


def day_stage(event_id: str, stage_to: str, **fields: object) -> CrmEvent:
    return stage(event_id, stage_to, int((DAY - T0) / timedelta(minutes=1)), **fields)


def both(events: list[CrmEvent], window: str = "all") -> dict[str, int]:
    """The stream's components, checked equal to the oracle's."""
    store = MemoryStore(TENANTS, with_sla=False)
    store.apply_batch(events)
    stream = store.components("acme", window, None, T0)[TOTAL_GROUP]
    oracle = compute_components(events, CONFIG, "acme", window, None, T0)[TOTAL]
    # percentiles within the sketch's 1 %, every other component equal
    assert_matches_oracle({TOTAL: stream}, {TOTAL: oracle}, window)
    return stream


def test_a_creation_and_stages_at_one_instant_follow_their_causal_order_not_their_ids() -> None:
    """Issue 17 item 4: the ids here sort against the causal order."""
    events = [
        # created in `new`, moved to `qualified` the same day: open in qualified
        make_event("z-created", "deal_created", entity_id="d1", stage_to="new", occurred_at=DAY),
        day_stage("a-qualified", "qualified", entity_id="d1"),
        # an open stage and the win on one day: won
        day_stage("b-won", "won", entity_id="d2", amount=Decimal(10)),
        day_stage("c-proposal", "proposal", entity_id="d2"),
        # a lead created and qualified on one day: it left its first stage, `new`
        make_event("z-lead", "lead_created", entity_id="l1", occurred_at=DAY),
        make_event(
            "a-lead", "lead_stage_changed", entity_id="l1", stage_to="qualified", occurred_at=DAY
        ),
    ]
    out = both(events)
    assert out["open:sales:qualified"] == 1
    assert "open:sales:new" not in out
    assert "open:sales:proposal" not in out
    assert out["won"] == 1
    assert out["leads_processed"] == 1
    assert out["cohort_den:sales:new"] == out["cohort_num:sales:new"] == 1


def test_deal_created_with_a_stage_is_the_creation_and_the_entry_into_it() -> None:
    """Issue 17 item 5, as every CRM adapter sends it: the entry it carries and the
    adapter's own stage event at the same instant are one entry."""
    created = make_event("c", "deal_created", entity_id="d", stage_to="new", occurred_at=DAY)
    out = both([created])
    assert out["deals_created"] == 1
    assert out["stage_entries:sales:new"] == 1
    assert out["open:sales:new"] == 1
    assert out["cohort_den:sales:new"] == 1
    also = day_stage("s", "new", entity_id="d")
    assert both([created, also]) == out
    nameless = msgspec.structs.replace(created, pipeline=None)
    assert semantic_problems(nameless) == [
        ("pipeline", "required with stage_to for type 'deal_created'")
    ]


def test_a_stage_entered_again_is_one_more_entry_and_a_repeat_none() -> None:
    events = [
        stage("s1", "new", 0, entity_id="d"),
        stage("s2", "qualified", 10, entity_id="d"),
        stage("s3", "new", 20, entity_id="d"),
    ]
    out = both(events)
    assert out["stage_entries:sales:new"] == 2
    # flow new → qualified: of the two entries into new, s1's next move reached qualified
    assert out["flow_num:sales:new"] == 1
    assert both([*events, *events]) == out
