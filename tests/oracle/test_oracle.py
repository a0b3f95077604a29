"""The batch oracle on small hand-computed histories, one KPI family at a time.

Every expected value is worked out by hand from docs/kpi-semantics.md (arithmetic in the
comments), never by calling the oracle. Money is in 1/10,000 of the tenant currency.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import msgspec
import pytest

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from salespulse.core.tenants import TenantConfig
from tests.oracle.batch import (
    TOTAL,
    Components,
    acquisition_costs,
    compute_components,
    window_bounds,
)

# A Friday. In UTC, `today` is [T-12h, T+12h), `week` [Mon 16 Nov, Mon 23 Nov), `month` Nov.
T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)

SALES = {
    "stages": [
        {"id": "new"},
        {"id": "qualified", "warm": True, "limit_hours": 48},
        {"id": "proposal", "limit_hours": 24},
        {"id": "won", "kind": "won"},
        {"id": "won_upsell", "kind": "won"},
        {"id": "lost", "kind": "lost"},
    ]
}
# Ranks: new 0, qualified 1, proposal 2, won = won_upsell 3; lost none.
# Steps: new→qualified, qualified→proposal, proposal→won (last open → first won).
CONFIG = TenantConfig.model_validate(
    {
        "currency": "USD",
        "currency_rates": {"EUR": "1.1", "GBP": "1.23456789"},
        "pipelines": {"sales": SALES},
        "teams": {"north": {"managers": ["m-1"]}},
    }
)


def ev(event_id, kind, at, **fields) -> CrmEvent:
    return CrmEvent(event_id=event_id, tenant="acme", type=kind, occurred_at=at, **fields)


def stage(event_id, deal, to, at, pipeline="sales", **fields) -> CrmEvent:
    return ev(
        event_id, "deal_stage_changed", at, entity_id=deal, pipeline=pipeline, stage_to=to, **fields
    )


def created(event_id, deal, at, **fields) -> CrmEvent:
    return ev(event_id, "deal_created", at, entity_id=deal, **fields)


def won(event_id, deal, at, amount=None, **fields) -> CrmEvent:
    if amount is not None:
        fields["amount"] = Decimal(amount)
    return stage(event_id, deal, "won", at, **fields)


def kpis(events, window="all", by=None, now=T, config=CONFIG, tenant="acme") -> Components:
    return compute_components(events, config, tenant, window, by, now)


def only(components: dict[str, int], *prefixes: str) -> dict[str, int]:
    return {name: value for name, value in components.items() if name.startswith(prefixes)}


# --- activity ------------------------------------------------------------------------------


def activity_events() -> list[CrmEvent]:
    return [
        ev("c1", "call", T, direction="in", answered=True, duration_s=12.3456, manager_id="m-1",
           team="east"),
        ev("c2", "call", T, direction="out", answered=True, duration_s=60.0, manager_id="m-2",
           team="south"),
        ev("c3", "call", T, direction="in", answered=False, duration_s=5.0),
        ev("mt1", "meeting", T, manager_id="m-1"),
        ev("ms1", "message", T, direction="in", manager_id="m-1"),
        ev("ms2", "message", T, direction="out", manager_id="m-1"),
        ev("ms3", "message", T, direction="out", automated=True, manager_id="m-1"),
        ev("l1", "lead_created", T, entity_id="lead-1", manager_id="m-2", source_channel="web"),
        created("d1", "act-deal", T, manager_id="m-1", pipeline="sales"),
        ev("r1", "rating", T, rating=4, manager_id="m-2", team="south"),
        ev("r2", "rating", T, rating=5, manager_id="m-2", team="south"),
        ev("old", "call", T - 13 * H, direction="in", answered=True, duration_s=1.0,
           manager_id="m-1"),
    ]  # fmt: skip


def test_activity_by_team():
    result = kpis(activity_events(), window="today", by="team")
    # team: m-1 is configured in north (its event's "east" loses); m-2 has none configured,
    # so the event's team (south) or none; c3 has no manager and no team: none.
    # talk time: round(12.3456 * 1000) = 12346 ms; + 60.0 s = 60000 ms → 72346. c3 is missed.
    # ms3 is automated: not counted. "old" is at T-13h, yesterday in UTC: outside `today`.
    # act-deal was created today without a stage event: warm_den under its pipeline (sales).
    assert result == {
        TOTAL: {
            "calls": 3, "calls_in": 2, "calls_out": 1, "calls_answered": 2, "calls_missed": 1,
            "talk_time_ms": 72346, "meetings": 1, "messages_in": 1, "messages_out": 1,
            "leads_created": 1, "deals_created": 1, "rating_sum": 9, "rating_count": 2,
            "warm_den:sales": 1,
        },
        "north": {
            "calls": 1, "calls_in": 1, "calls_answered": 1, "talk_time_ms": 12346,
            "meetings": 1, "messages_in": 1, "messages_out": 1, "deals_created": 1,
            "warm_den:sales": 1,
        },
        "south": {
            "calls": 1, "calls_out": 1, "calls_answered": 1, "talk_time_ms": 60000,
            "rating_sum": 9, "rating_count": 2,
        },
        "none": {"calls": 1, "calls_in": 1, "calls_missed": 1, "leads_created": 1},
    }  # fmt: skip


def test_activity_by_manager_and_source():
    by_manager = kpis(activity_events(), window="all", by="manager")
    # `all` adds the old call of m-1: 1 s = 1000 ms → 12346 + 1000 = 13346.
    assert by_manager["m-1"]["calls"] == 2
    assert by_manager["m-1"]["talk_time_ms"] == 13346
    assert by_manager["unassigned"] == {"calls": 1, "calls_in": 1, "calls_missed": 1}
    by_source = kpis(activity_events(), window="today", by="source")
    assert by_source["web"] == {"leads_created": 1}
    assert by_source["none"]["calls"] == 3


# --- funnel --------------------------------------------------------------------------------


def test_stage_entries_and_flow_by_pipeline():
    events = [
        stage("s1", "deal-1", "new", T - 3 * H),
        stage("s2", "deal-1", "qualified", T - 2 * H),
        stage("s3", "deal-1", "new", T - 1 * H),  # a re-entry is one more entry event
        stage("s4", "deal-2", "new", T - 1 * H),
        stage("s5", "deal-3", "intake", T - 1 * H, pipeline="partners"),
        stage("s6", "deal-4", "new", T - 14 * H),  # yesterday
    ]
    result = kpis(events, window="today", by="pipeline")
    # sales:new = s1, s3, s4 = 3; sales:qualified = s2 = 1; partners:intake = 1.
    assert only(result[TOTAL], "stage_entries") == {
        "stage_entries:sales:new": 3,
        "stage_entries:sales:qualified": 1,
        "stage_entries:partners:intake": 1,
    }
    assert only(result["sales"], "stage_entries") == {
        "stage_entries:sales:new": 3,
        "stage_entries:sales:qualified": 1,
    }
    assert only(result["partners"], "stage_entries") == {"stage_entries:partners:intake": 1}
    # conversion_flow[new→qualified] = of the entries into new (s1, s3, s4), those whose
    # next entry is qualified or later (s1 → s2) = 1/3; end_to_end_flow = of the entries
    # into the first stage, those followed by a won stage = 0/3.
    total = result[TOTAL]
    assert Fraction(total["flow_num:sales:new"], total["stage_entries:sales:new"]) == (
        Fraction(1, 3)
    )
    assert "flow_e2e_num:sales" not in total
    assert "stage_entries:sales:won" not in total
    assert only(kpis(events, window="all")[TOTAL], "stage_entries:sales:new") == {
        "stage_entries:sales:new": 4
    }


def cohort_events() -> list[CrmEvent]:
    return [
        stage("a1", "A", "new", T - 3 * H),
        stage("a2", "A", "qualified", T - 2 * H),
        stage("a3", "A", "proposal", T - 1 * H),
        stage("a4", "A", "won", T - 30 * M),
        stage("b1", "B", "new", T - 3 * H),
        stage("b2", "B", "proposal", T - 2 * H),  # skips qualified
        stage("c1", "C", "new", T - 3 * H),
        stage("c2", "C", "lost", T - 1 * H),
        stage("d1", "D", "qualified", T - 50 * H),  # two days ago
        stage("d2", "D", "proposal", T - 1 * H),
        stage("e1", "E", "proposal", T - 1 * H),
        stage("e2", "E", "won_upsell", T - 30 * M),  # a won stage other than the first
    ]


def test_cohort_conversion_and_end_to_end():
    today = kpis(cohort_events(), window="today")[TOTAL]
    # new:       den A, B, C (first entry of new today) = 3; num: A (qualified), B (proposal
    #            ranks 2 ≥ 1: skipping a stage still reaches it) = 2; C is lost (no rank).
    # qualified: den A (D entered it 50 h ago) = 1; num A = 1.
    # proposal:  den A, B, D, E = 4; num A (won), E (won_upsell ranks like won) = 2.
    # e2e:       den A, B, C (first stage `new` today) = 3; num A = 1.
    # No step starts at a won stage: won and won_upsell share one rank.
    assert only(today, "cohort", "e2e") == {
        "cohort_den:sales:new": 3, "cohort_num:sales:new": 2,
        "cohort_den:sales:qualified": 1, "cohort_num:sales:qualified": 1,
        "cohort_den:sales:proposal": 4, "cohort_num:sales:proposal": 2,
        "e2e_den:sales": 3, "e2e_num:sales": 1,
    }  # fmt: skip
    # bottleneck = lowest ratio among steps with den > 0: 2/3, 1/1, 2/4 → proposal.
    steps = ["new", "qualified", "proposal"]
    ratios = [
        Fraction(today[f"cohort_num:sales:{s}"], today[f"cohort_den:sales:{s}"]) for s in steps
    ]
    assert steps[ratios.index(min(ratios))] == "proposal"
    everything = kpis(cohort_events(), window="all")[TOTAL]
    # `all` adds D to qualified: den A, D = 2; num A, D (both reached proposal) = 2.
    assert only(everything, "cohort", "e2e") == {
        "cohort_den:sales:new": 3, "cohort_num:sales:new": 2,
        "cohort_den:sales:qualified": 2, "cohort_num:sales:qualified": 2,
        "cohort_den:sales:proposal": 4, "cohort_num:sales:proposal": 2,
        "e2e_den:sales": 3, "e2e_num:sales": 1,
    }  # fmt: skip


def test_cold_to_warm():
    events = [
        created("w1c", "W1", T - 5 * H),
        stage("w1a", "W1", "new", T - 5 * H),
        stage("w1b", "W1", "qualified", T - 4 * H),  # reached the warm stage
        created("w2c", "W2", T - 5 * H),
        stage("w2a", "W2", "new", T - 5 * H),
        stage("w2b", "W2", "proposal", T - 4 * H),  # later than warm
        created("w3c", "W3", T - 5 * H),
        stage("w3a", "W3", "new", T - 5 * H),  # still cold
        created("w4c", "W4", T - 5 * H, pipeline="sales"),  # no stage event yet
        created("w5c", "W5", T - 30 * H),  # created yesterday
        stage("w5a", "W5", "qualified", T - 29 * H),
        created("w6c", "W6", T - 1 * H),
        stage("w6a", "W6", "intake", T - 1 * H, pipeline="partners"),
        created("w7c", "W7", T - 2 * H),
        stage("w7a", "W7", "qualified", T - 2 * H),
        stage("w7b", "W7", "intake", T - 1 * H, pipeline="partners"),  # current: partners
        created("w8c", "W8", T - 2 * H),
        stage("w8a", "W8", "won", T - 1 * H),  # won ranks after warm
        created("w9c", "W9", T - 2 * H),
        stage("w9a", "W9", "lost", T - 1 * H),  # lost has no rank
    ]
    today = kpis(events, window="today")[TOTAL]
    # sales: den W1, W2, W3, W4, W8, W9 = 6; num W1, W2, W8 = 3.
    # partners (current.pipeline of W6 and W7; no warm stage configured): den 2, num 0.
    assert only(today, "warm") == {"warm_den:sales": 6, "warm_num:sales": 3, "warm_den:partners": 2}
    everything = kpis(events, window="all")[TOTAL]
    # `all` adds W5: den 7, num 4.
    assert only(everything, "warm") == {
        "warm_den:sales": 7,
        "warm_num:sales": 4,
        "warm_den:partners": 2,
    }


def test_time_in_stage_and_percentiles():
    events = [
        stage("s1a", "S1", "new", T - 10 * H),
        stage("s1b", "S1", "qualified", T - 9 * H),
        stage("s1c", "S1", "proposal", T - 2 * H),
        stage("s1d", "S1", "qualified", T - 1 * H),  # re-entry: not a first entry
        stage("s1e", "S1", "won", T),
        stage("s2a", "S2", "new", T - 20 * H),
        stage("s2b", "S2", "qualified", T - 20 * H + 45 * S),
        stage("s3a", "S3", "new", T - 3 * H),
        stage("s3b", "S3", "qualified", T - 3 * H + timedelta(seconds=90, microseconds=500)),
        stage("s4a", "S4", "old", T - 401 * D, pipeline="archive"),
        stage("s4b", "S4", "later", T - 1 * D, pipeline="archive"),
    ]
    everything = kpis(events, window="all")[TOTAL]
    # Entries of S1: new T-10h, qualified T-9h, proposal T-2h, won T.
    #   new: next later entry qualified → 1 h = 3600 s; qualified: proposal → 7 h = 25200 s;
    #   proposal: won → 2 h = 7200 s; won: nothing later.
    # S2 new: 45 s. S3 new: 90.0005 s = 90000.5 ms → half-even 90000 ms.
    # new: sum 3600000 + 45000 + 90000 = 3735000 ms, n 3, nearest ranks: median ⌈1.5⌉ = 2nd
    #   = 90.0005 s → 90000 ms (half-even), p90 ⌈2.7⌉ = 3rd = 3600000 ms.
    # qualified: 25200 s; proposal: 7200 s; archive old: 400 days = 34,560,000 s (no cap).
    assert only(everything, "stay") == {
        "stay_sum_ms:sales:new": 3735000, "stay_count:sales:new": 3,
        "stay_p50_ms:sales:new": 90000, "stay_p90_ms:sales:new": 3600000,
        "stay_sum_ms:sales:qualified": 25200000, "stay_count:sales:qualified": 1,
        "stay_p50_ms:sales:qualified": 25200000, "stay_p90_ms:sales:qualified": 25200000,
        "stay_sum_ms:sales:proposal": 7200000, "stay_count:sales:proposal": 1,
        "stay_p50_ms:sales:proposal": 7200000, "stay_p90_ms:sales:proposal": 7200000,
        "stay_sum_ms:archive:old": 34_560_000_000, "stay_count:archive:old": 1,
        "stay_p50_ms:archive:old": 34_560_000_000, "stay_p90_ms:archive:old": 34_560_000_000,
    }  # fmt: skip
    today = kpis(events, window="today")[TOTAL]
    # A stay counts in the window of its end: S2's new ended T-20h+45s and archive's T-1d,
    # both before today. new: 3600000 + 90000 = 3690000, n 2: median the 1st (90000 ms,
    # the lower middle, not an average), p90 ⌈1.8⌉ = 2nd (3600000 ms).
    assert only(today, "stay") == {
        "stay_sum_ms:sales:new": 3690000, "stay_count:sales:new": 2,
        "stay_p50_ms:sales:new": 90000, "stay_p90_ms:sales:new": 3600000,
        "stay_sum_ms:sales:qualified": 25200000, "stay_count:sales:qualified": 1,
        "stay_p50_ms:sales:qualified": 25200000, "stay_p90_ms:sales:qualified": 25200000,
        "stay_sum_ms:sales:proposal": 7200000, "stay_count:sales:proposal": 1,
        "stay_p50_ms:sales:proposal": 7200000, "stay_p90_ms:sales:proposal": 7200000,
    }  # fmt: skip


# --- outcomes and money --------------------------------------------------------------------


def outcome_events() -> list[CrmEvent]:
    return [
        created("o1c", "D1", T - 5 * H, manager_id="m-1"),
        won("o1w", "D1", T - 1 * H),  # no manager on the won event: the deal's is m-1
        created("o2c", "D2", T - 5 * H, manager_id="m-1"),
        stage("o2a", "D2", "new", T - 4 * H, manager_id="m-2"),
        stage("o2b", "D2", "lost", T - 1 * H, lost_reason="price"),
        stage("o3a", "D3", "new", T - 3 * H, manager_id="m-2", lost_reason="timing"),
        stage("o3b", "D3", "lost", T - 2 * H),
        stage("o4a", "D4", "lost", T - 2 * H, manager_id="m-1"),  # no reason given
        won("o5w", "D5", T - 30 * H, manager_id="m-1"),  # yesterday
        stage("o6a", "D6", "closed", T - 1 * H, stage_kind="won", manager_id="m-1"),
        won("o7w", "D7", T - 2 * H, manager_id="m-1"),
        stage("o7a", "D7", "proposal", T - 1 * H),  # reopened: current is open
    ]


def test_won_lost_by_reason_and_win_rate():
    today = kpis(outcome_events(), window="today", by="manager")
    # won today: D1 (manager m-1 from deal_created), D6 (stage_kind won on an unconfigured
    # stage); D7 is back in proposal, D5 was won yesterday.
    # lost today: D2 (m-2 from its latest event carrying a manager; reason price),
    # D3 (m-2; reason timing from an earlier event), D4 (m-1, no reason).
    assert only(today[TOTAL], "won", "lost") == {
        "won": 2, "lost": 3, "lost_by_reason:price": 1, "lost_by_reason:timing": 1,
    }  # fmt: skip
    assert only(today["m-1"], "won", "lost") == {"won": 2, "lost": 1}
    assert only(today["m-2"], "won", "lost") == {
        "lost": 2,
        "lost_by_reason:price": 1,
        "lost_by_reason:timing": 1,
    }
    # win rate = won / (won + lost) = 2 / 5.
    total = today[TOTAL]
    assert Fraction(total["won"], total["won"] + total["lost"]) == Fraction(2, 5)
    assert only(kpis(outcome_events(), window="all")[TOTAL], "won") == {"won": 3}


def test_revenue_with_conversion_and_unconvertible_currency():
    events = [
        won("r1", "R1", T - H, "10.00005", currency="USD"),  # 10.0000|5 → 10.0000 = 100000
        won("r2", "R2", T - H, "10.00015"),  # no currency: as is; 10.0001|5 → 10.0002 = 100002
        won("r3", "R3", T - H, "3.33", currency="EUR"),  # * 1.1 = 3.663 → 36630
        won("r4", "R4", T - H, "0.00005", currency="USD"),  # → 0.0000 per event
        won("r5", "R5", T - H, "0.00005", currency="USD"),  # → 0 (summed first it would be 1)
        won("r6", "R6", T - H, "100", currency="JPY"),  # no rate: unconvertible
        won("r7", "R7", T - H),  # no amount at all
        created("r8c", "R8", T - 5 * H, amount=Decimal(50), currency="EUR"),
        won("r8", "R8", T - H),  # amount and currency from deal_created: 55 → 550000
        won("r9", "R9", T - H, "100", currency="GBP"),  # 123.456789 → 123.4568 → 1234568
        ev("i1", "invoice", T, amount=Decimal(200), currency="EUR"),  # 220 → 2200000
        ev("i2", "invoice", T, amount=Decimal(10), currency="JPY"),  # left out
        ev("p1", "payment", T, amount=Decimal(50), currency="USD"),  # 500000
        ev("p2", "payment", T, amount=Decimal("0.00005"), currency="USD"),  # 0
        ev("k1", "marketing_cost", T, amount=Decimal(30), currency="EUR", source_channel="web"),
    ]
    total = kpis(events, window="today")[TOTAL]
    # revenue = 100000 + 100002 + 36630 + 0 + 0 + 550000 + 1234568 = 2021200.
    assert only(total, "won", "revenue", "unconvertible", "invoiced", "paid", "marketing") == {
        "won": 9,
        "revenue": 2021200,
        "unconvertible_amounts": 1,
        "invoiced": 2200000,
        "paid": 500000,
        "marketing_cost:web": 330000,  # 30 * 1.1 = 33
    }


def test_margin():
    events = [
        won("m1", "M1", T - H, "100", cost=Decimal(60)),  # 40 → 400000
        won("m2", "M2", T - H, "100", cost=Decimal(50), currency="EUR"),  # 110 - 55 → 550000
        won("m3", "M3", T - H, "100"),  # no cost: no margin
        won("m4", "M4", T - H, "100", cost=Decimal(10), currency="JPY"),  # unconvertible
        won("m5", "M5", T - H, "5", cost=Decimal(10)),  # -5 → -50000
        won("m6", "M6", T - H, "0.00015", cost=Decimal("0.00005")),  # 2 - 0 = 2 (not 1)
        stage("m7", "M7", "lost", T - H, amount=Decimal(100), cost=Decimal(0)),  # not won
        created("m8c", "M8", T - 2 * H, cost=Decimal(30)),
        won("m8", "M8", T - H, "40"),  # cost from deal_created: 10 → 100000
    ]
    total = kpis(events, window="all")[TOTAL]
    # margin = 400000 + 550000 - 50000 + 2 + 100000 = 1000002.
    # revenue = 1000000 + 1100000 + 1000000 + 50000 + 2 + 400000 = 3550002.
    assert only(total, "won", "revenue", "margin", "unconvertible") == {
        "won": 7,
        "revenue": 3550002,
        "margin": 1000002,
        "unconvertible_amounts": 1,
    }


def test_sales_cycle_avg_and_percentiles_per_group():
    events = []
    for i in range(9):  # m-1: nine 30 s cycles
        events += [
            created(f"q{i}c", f"Q{i}", T - 2 * H, manager_id="m-1"),
            won(f"q{i}w", f"Q{i}", T - 2 * H + 30 * S),
        ]
    events += [
        created("q9c", "Q9", T - 11 * D, manager_id="m-2"),
        won("q9w", "Q9", T - 1 * D),  # 10 days = 864000 s
        won("q10w", "Q10", T - 1 * D, manager_id="m-2"),  # never created: no cycle
    ]
    result = kpis(events, window="all", by="manager")
    # total: n 10, sum 9 * 30000 + 864000000 = 864270000 ms; nearest ranks: median the 5th,
    # p90 the ⌈0.9 * 10⌉ = 9th: both 30 s (p90 is not the maximum).
    assert only(result[TOTAL], "cycle", "won") == {
        "won": 11,
        "cycle_sum_ms": 864270000,
        "cycle_count": 10,
        "cycle_p50_ms": 30000,
        "cycle_p90_ms": 30000,
    }
    # per group, from the group's own durations: m-1 nine of 30 s; m-2 one of 10 days.
    assert only(result["m-1"], "cycle") == {
        "cycle_sum_ms": 270000,
        "cycle_count": 9,
        "cycle_p50_ms": 30000,
        "cycle_p90_ms": 30000,
    }
    assert only(result["m-2"], "cycle") == {
        "cycle_sum_ms": 864000000,
        "cycle_count": 1,
        "cycle_p50_ms": 864000000,
        "cycle_p90_ms": 864000000,
    }


def test_sales_cycle_uses_the_earliest_creation_however_long_ago():
    events = [
        created("x1", "X", T - 401 * D),
        created("x2", "X", T - 2 * D),  # a later deal_created does not move created_at
        won("x3", "X", T - 1 * D),
    ]
    total = kpis(events, window="all")[TOTAL]
    # 400 days = 34,560,000 s = 34,560,000,000 ms: exact, no histogram bound caps it.
    assert only(total, "cycle") == {
        "cycle_sum_ms": 34_560_000_000,
        "cycle_count": 1,
        "cycle_p50_ms": 34_560_000_000,
        "cycle_p90_ms": 34_560_000_000,
    }


# --- clients -------------------------------------------------------------------------------


def client_events() -> list[CrmEvent]:
    return [
        won("p1", "P1", T - 40 * D, "1000", client_id="k1", source_channel="referral"),
        won("p2", "P2", T - 2 * H, "100", client_id="k1"),
        won("p3", "P3", T - 1 * H, "200", client_id="k1"),
        won("p4", "P4", T - 3 * H, "10", client_id="k2", source_channel="web"),
        created("p5c", "p5", T - 5 * H, source_channel="ads"),
        won("p5", "p5", T - 1 * H, "20", client_id="k3"),
        won("p6", "p6", T - 1 * H, "50", client_id="k3"),  # same instant: p5 < p6 by id
        won("p7", "P7", T - 1 * H, "999"),  # no client
        stage("p8", "P8", "lost", T - 2 * H, amount=Decimal(77), client_id="k4"),
        won("p9", "P9", T - 1 * H, "5", client_id="k4"),
    ]


def test_repeat_sales_purchase_frequency_and_new_clients():
    today = kpis(client_events(), window="today", by="manager")
    # Won deals with a client, by (current_since, entity_id): P1 k1 (T-40d), P4 k2 (T-3h),
    # P2 k1 (T-2h), then at T-1h by id: P3 k1, P9 k4, p5 k3, p6 k3 ("P" < "p").
    # today: P2, P3, P4, p5, p6, P9 = 6 deals, clients k1..k4 = 4.
    # repeat (client had an earlier won deal): P2, P3 (after P1), p6 (after p5) = 3,
    # revenue 100 + 200 + 50 = 350 → 3500000. P8 is lost: k4's P9 is its first.
    # new clients today: k2 via P4 (web), k3 via p5 (ads, from its deal_created), k4 via P9
    # (none); k1's first deal P1 is 40 days ago.
    assert only(today[TOTAL], "client", "repeat", "new_clients", "clv", "abc") == {
        "client_deals": 6, "client_distinct": 4, "repeat_count": 3, "repeat_revenue": 3500000,
        "new_clients:web": 1, "new_clients:ads": 1, "new_clients:none": 1,
    }  # fmt: skip
    # client components are total-only.
    assert only(today["unassigned"], "client", "repeat", "new_clients") == {}
    everything = kpis(client_events(), window="all")[TOTAL]
    # all: + P1 → 7 deals; new k1 via P1 (referral).
    # CLV: (1000 + 100 + 200 + 10 + 20 + 50 + 5) = 1385 → 13850000 over 4 clients.
    assert only(everything, "client", "repeat", "new_clients", "clv") == {
        "client_deals": 7, "client_distinct": 4, "repeat_count": 3, "repeat_revenue": 3500000,
        "new_clients:referral": 1, "new_clients:web": 1, "new_clients:ads": 1,
        "new_clients:none": 1, "clv_revenue": 13850000, "clv_clients": 4,
    }  # fmt: skip
    # ABC: k1 1300, k3 70, k2 10, k4 5 of 1385. 80 % = 1108: k1 alone → A. 95 % = 1315.75:
    # + k3 = 1370 → B. C: k2, k4.
    assert only(everything, "abc") == {
        "abc_count:A": 1, "abc_revenue:A": 13000000,
        "abc_count:B": 1, "abc_revenue:B": 700000,
        "abc_count:C": 2, "abc_revenue:C": 150000,
    }  # fmt: skip


def test_abc_with_ties_and_clv_only_in_all():
    events = [
        won("a1", "A1", T - 3 * D, "20", client_id="k-a"),
        won("a2", "A2", T - 2 * D, "30", client_id="k-a"),  # k-a: 50 over two deals
        won("b1", "B1", T - 2 * D, "30", client_id="k-b"),
        won("c1", "C1", T - 2 * D, "10", client_id="k-c"),
        won("e1", "E1", T - 2 * D, "5", client_id="k-e"),
        won("d1", "D1", T - 2 * D, "5", client_id="k-d"),  # ties k-e; k-d sorts first
        won("f1", "F1", T - 2 * D, "100", client_id="k-f", currency="JPY"),  # revenue 0
    ]
    total = kpis(events, window="all")[TOTAL]
    # Sorted: k-a 50, k-b 30, k-c 10, k-d 5, k-e 5, k-f 0; total 100.
    # A: 50 < 80, 80 ≥ 80 → {k-a, k-b}. B: 90 < 95, 95 ≥ 95 → {k-c, k-d}. C: {k-e, k-f}.
    assert only(total, "abc", "clv") == {
        "abc_count:A": 2, "abc_revenue:A": 800000,
        "abc_count:B": 2, "abc_revenue:B": 150000,
        "abc_count:C": 2, "abc_revenue:C": 50000,
        "clv_revenue": 1000000, "clv_clients": 6,
    }  # fmt: skip
    for window in WINDOWS[:-1]:
        assert only(kpis(events, window=window)[TOTAL], "abc", "clv") == {}


def test_abc_when_no_client_has_revenue():
    # Total 0: the empty prefix already reaches 80 % and 95 % of 0, so every client is C.
    events = [won("z1", "Z1", T - D, "100", client_id="k-z", currency="JPY")]
    total = kpis(events, window="all")[TOTAL]
    assert only(total, "abc") == {"abc_count:C": 1}


BERLIN = TenantConfig.model_validate(
    {
        "timezone": "Europe/Berlin",
        "currency": "USD",
        "currency_rates": {"EUR": "1.1"},
        "pipelines": {"sales": SALES},
        "marketing_costs": {
            "web": {"2026-11": "1000"},
            "ads": {"2026-11": "9000", "2026-10": "5000"},
        },
    }
)


def acquisition_events() -> list[CrmEvent]:
    return [
        ev("mc1", "marketing_cost", T - 1 * H, amount=Decimal(50), currency="EUR",
           source_channel="ads"),
        ev("mc2", "marketing_cost", T - 24 * H, amount=Decimal(50), currency="EUR",
           source_channel="ads"),  # Thursday 19 Nov
        won("n1", "N1", T - 1 * H, "500", client_id="q1", source_channel="web"),
        won("n2", "N2", T - 2 * H, "300", client_id="q2", source_channel="web"),
        won("n3", "N3", T - 3 * H, "100", client_id="q3", source_channel="ads"),
        won("n4", "N4", T - 30 * M, "1000", client_id="q1", source_channel="ads"),  # repeat
        won("n5", "N5", T - 2 * D, "1", client_id="q5", source_channel="web"),
        won("n6", "N6", T - 1 * H, "200", client_id="q5", source_channel="web"),  # repeat
    ]  # fmt: skip


def test_new_clients_cac_and_romi_over_today():
    events = acquisition_events()
    # Berlin today = Fri 20 Nov local = 24 h; November (CET throughout) = 30 * 24 h = 720 h.
    # web: 1000 * 24/720 = 33.3333… → 333333. ads: 9000 / 30 = 300 → 3000000, plus mc1
    # (50 EUR * 1.1 = 55 → 550000) → 3550000; mc2 is on Thursday.
    costs = acquisition_costs(events, BERLIN, "acme", "today", T)
    assert costs == {"web": 333333, "ads": 3550000}
    total = kpis(events, window="today", config=BERLIN)[TOTAL]
    # new today: q1 (N1, web), q2 (N2, web), q3 (N3, ads); q5's first deal was Wednesday.
    assert only(total, "new_clients") == {"new_clients:web": 2, "new_clients:ads": 1}
    by_source = kpis(events, window="today", by="source", config=BERLIN)
    # revenue of each source's won deals today: web N1 + N2 + N6 = 1000 → 10000000;
    # ads N3 + N4 = 1100 → 11000000.
    assert by_source["web"]["revenue"] == 10000000
    assert by_source["ads"]["revenue"] == 11000000
    cac_web = Fraction(costs["web"], total["new_clients:web"])
    assert cac_web == Fraction(333333, 2)  # 16.66665 USD per new client
    romi_ads = Fraction(by_source["ads"]["revenue"] - costs["ads"], costs["ads"])
    assert romi_ads == Fraction(11000000 - 3550000, 3550000) == Fraction(149, 71)


def test_acquisition_costs_other_windows():
    events = acquisition_events()
    # all: every configured month in full: web 1000, ads 9000 + 5000; both events 2 * 55.
    assert acquisition_costs(events, BERLIN, "acme", "all", T) == {
        "web": 10000000,
        "ads": 140000000 + 1100000,
    }
    # week Mon 16 - Mon 23 Nov: 7/30 of November: web 233.3333… → 2333333; ads 2100
    # → 21000000 + both events (Thu and Fri) 1100000.
    assert acquisition_costs(events, BERLIN, "acme", "week", T) == {
        "web": 2333333,
        "ads": 22100000,
    }
    # 15m [11:46, 12:01) UTC = 900 s of 2,592,000: web 1000 * 900/2592000 = 0.3472… →
    # 3472; ads 9000 * 900/2592000 = 3.125 → 31250; no event in it.
    assert acquisition_costs(events, BERLIN, "acme", "15m", T) == {"web": 3472, "ads": 31250}
    # A DST day: Sun 25 Oct 2026 in Berlin has 25 h; October has 31 * 24 + 1 = 745 h.
    # ads: 5000 * 25/745 = 167.7852348… → 1677852. web has no October cost.
    autumn = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    assert acquisition_costs(events, BERLIN, "acme", "today", autumn) == {"ads": 1677852}


# --- leads ---------------------------------------------------------------------------------


def test_lead_to_customer():
    events = [
        ev("lc1", "lead_created", T - 5 * H, entity_id="L1"),
        ev("lc2", "lead_created", T - 5 * H, entity_id="L2"),
        ev("lc3", "lead_created", T - 5 * H, entity_id="L3"),
        ev("lc4", "lead_created", T - 20 * H, entity_id="L4"),  # yesterday
        won("x", "X", T - H, lead_id="L1", manager_id="m-1"),
        won("y", "Y", T - H, lead_id="L1", manager_id="m-2"),  # the same lead again
        won("z", "Z", T - H, lead_id="L2", manager_id="m-1"),
        stage("w", "W", "lost", T - H, lead_id="L3", manager_id="m-1"),
        won("v", "V", T - 30 * H, lead_id="L4", manager_id="m-1"),  # won yesterday
    ]
    result = kpis(events, window="today", by="manager")
    # distinct lead ids of today's won deals: total {L1, L2} = 2; m-1 {L1, L2} = 2;
    # m-2 {L1} = 1 (distinct per group: groups need not add up to the total).
    assert result[TOTAL]["lead_customers"] == 2
    assert result["m-1"]["lead_customers"] == 2
    assert result["m-2"]["lead_customers"] == 1
    # lead → customer = 2 / leads_created today (lc1..lc3) = 2/3.
    total = result[TOTAL]
    assert Fraction(total["lead_customers"], total["leads_created"]) == Fraction(2, 3)


def test_leads_processed():
    events = [
        ev("a1", "lead_created", T - 3 * H, entity_id="L1", manager_id="m-1"),
        ev("a2", "lead_stage_changed", T - 2 * H, entity_id="L1", stage_to="new"),  # same
        ev("a3", "lead_stage_changed", T - 1 * H, entity_id="L1", stage_to="qualified",
           manager_id="m-2"),
        ev("b1", "lead_stage_changed", T - 2 * H, entity_id="L2", stage_to="contacted"),
        ev("b2", "lead_stage_changed", T - 1 * H, entity_id="L2", stage_to="contacted"),
        ev("c1", "lead_created", T - 30 * H, entity_id="L3", manager_id="m-1"),
        ev("c2", "lead_stage_changed", T - 28 * H, entity_id="L3", stage_to="rejected"),
        ev("d1", "lead_created", T - 1 * H, entity_id="L4"),
        ev("d2", "lead_stage_changed", T - 40 * M, entity_id="L4", stage_to="qualified"),
        ev("d3", "lead_stage_changed", T - 10 * M, entity_id="L4", stage_to="won"),
    ]  # fmt: skip
    # L1: first stage new (lead_created); leaves it at a3 (T-1h) → today. Manager from its
    #     latest event carrying one: m-2.
    # L2: first stage contacted (its earliest event); never leaves it.
    # L3: leaves new at T-28h → yesterday. L4: leaves new at T-40m (counted once), unassigned.
    today = kpis(events, window="today", by="manager")
    assert today[TOTAL]["leads_processed"] == 2
    # L1 is counted created under its own dimensions too (a lead's, like a deal's: from its
    # latest event carrying each field), so m-2's, though m-1 created it.
    assert today["m-2"] == {"leads_created": 1, "leads_processed": 1}
    assert today["unassigned"]["leads_processed"] == 1
    everything = kpis(events, window="all", by="manager")
    assert everything[TOTAL]["leads_processed"] == 3
    assert everything["m-1"]["leads_processed"] == 1


# --- live ----------------------------------------------------------------------------------


def live_events() -> list[CrmEvent]:
    return [
        stage("o1", "O1", "new", T - 1 * H, manager_id="m-1"),
        stage("o2a", "O2", "new", T - 30 * H),
        stage("o2b", "O2", "proposal", T - 25 * H),  # 25 h > 24 h: stuck
        stage("o3", "O3", "proposal", T - 24 * H),  # exactly 24 h: not stuck
        stage("o4", "O4", "qualified", T - 49 * H),  # 49 h > 48 h: stuck
        stage("o5a", "O5", "proposal", T - 3 * H),
        stage("o5b", "O5", "won", T - 2 * H),  # won: not open
        stage("o6", "O6", "x", T - 1 * H, pipeline="partners"),  # unconfigured pipeline
        stage("o7", "O7", "proposal", T - 1 * H, stage_kind="lost"),  # the event's kind wins
    ]


def test_live_open_ready_stuck():
    # open: sales:new O1; sales:proposal O2, O3; sales:qualified O4; partners:x O6.
    # ready (default: the last open stage, proposal): O2, O3.
    expected = {
        "open:sales:new": 1, "open:sales:proposal": 2, "open:sales:qualified": 1,
        "open:partners:x": 1, "ready:sales:proposal": 2,
        "stuck:sales:proposal": 1, "stuck:sales:qualified": 1,
    }  # fmt: skip
    for window in WINDOWS:  # window-independent
        result = kpis(live_events(), window=window, by="manager")
        assert only(result[TOTAL], "open", "ready", "stuck") == expected
        for group, values in result.items():  # total-only
            if group != TOTAL:
                assert only(values, "open", "ready", "stuck") == {}


def test_live_ready_to_close_configured():
    config = TenantConfig.model_validate(
        {"pipelines": {"sales": {**SALES, "ready_to_close": ["qualified"]}}}
    )
    result = kpis(live_events(), window="15m", config=config)[TOTAL]
    assert only(result, "ready") == {"ready:sales:qualified": 1}  # O4 only


# --- windows -------------------------------------------------------------------------------


def test_window_bounds_utc():
    now = datetime(2026, 11, 20, 12, 34, 56, 789000, tzinfo=UTC)
    utc = ZoneInfo("UTC")

    def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
        return datetime(2026, 11, day, hour, minute, tzinfo=UTC)

    assert window_bounds("15m", now, utc) == (at(20, 12, 20), at(20, 12, 35))
    assert window_bounds("1h", now, utc) == (at(20, 11, 35), at(20, 12, 35))
    assert window_bounds("24h", now, utc) == (at(19, 13), at(20, 13))
    assert window_bounds("today", now, utc) == (at(20), at(21))
    assert window_bounds("week", now, utc) == (at(16), at(23))  # Mon 16 - Mon 23
    assert window_bounds("month", now, utc) == (at(1), datetime(2026, 12, 1, tzinfo=UTC))
    assert window_bounds("all", now, utc) == (None, None)
    # minutes and hours are UTC-aligned whatever the tenant zone (+05:30 here).
    kolkata = ZoneInfo("Asia/Kolkata")
    assert window_bounds("15m", now, kolkata) == (at(20, 12, 20), at(20, 12, 35))
    assert window_bounds("24h", now, kolkata) == (at(19, 13), at(20, 13))


def test_window_bounds_local_with_dst():
    berlin = ZoneInfo("Europe/Berlin")
    spring = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)  # Sunday; clocks 02:00 → 03:00
    # today: 00:00 CET = 23:00Z Sat .. 00:00 CEST Mon = 22:00Z Sun: 23 h.
    assert window_bounds("today", spring, berlin) == (
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )
    # ISO week Mon 23 Mar 00:00 CET .. Mon 30 Mar 00:00 CEST: 167 h.
    assert window_bounds("week", spring, berlin) == (
        datetime(2026, 3, 22, 23, tzinfo=UTC),
        datetime(2026, 3, 29, 22, tzinfo=UTC),
    )
    assert window_bounds("month", spring, berlin) == (
        datetime(2026, 2, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 31, 22, tzinfo=UTC),
    )
    autumn = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)  # Sunday; clocks 03:00 → 02:00
    assert window_bounds("today", autumn, berlin) == (
        datetime(2026, 10, 24, 22, tzinfo=UTC),
        datetime(2026, 10, 25, 23, tzinfo=UTC),
    )  # 25 h


def test_window_bounds_iso_week_and_day_follow_the_tenant_zone():
    new_york = ZoneInfo("America/New_York")
    # Mon 23 Nov 03:00Z is still Sun 22 Nov 22:00 EST in New York.
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert window_bounds("week", now, new_york) == (
        datetime(2026, 11, 16, 5, tzinfo=UTC),
        datetime(2026, 11, 23, 5, tzinfo=UTC),
    )
    assert window_bounds("today", now, new_york) == (
        datetime(2026, 11, 22, 5, tzinfo=UTC),
        datetime(2026, 11, 23, 5, tzinfo=UTC),
    )
    # In UTC the same instant is already the next ISO week.
    assert window_bounds("week", now, ZoneInfo("UTC"))[0] == datetime(2026, 11, 23, tzinfo=UTC)


def test_window_edges_are_start_inclusive_end_exclusive():
    events = [
        ev("in-start", "meeting", T - 14 * M),  # 15m = [11:46, 12:01): included
        ev("before", "meeting", T - 14 * M - timedelta(microseconds=1)),
        ev("last", "meeting", T + 59 * S),
        ev("end", "meeting", T + 1 * M),  # excluded
    ]
    assert kpis(events, window="15m")[TOTAL] == {"meetings": 2}
    # `today` in New York on Friday 20 Nov EST: [05:00Z Fri, 05:00Z Sat).
    ny = CONFIG.model_copy(update={"timezone": "America/New_York"})
    local = [ev("e1", "meeting", T - 7 * H), ev("e2", "meeting", T - 7 * H - S)]
    assert kpis(local, window="today", config=ny)[TOTAL] == {"meetings": 1}


def test_unknown_window_or_dimension_is_rejected():
    with pytest.raises(ValueError, match="window"):
        kpis([], window="2h")
    with pytest.raises(ValueError, match="dimension"):
        kpis([], by="channel")
    assert kpis([], window="today", by="team") == {TOTAL: {}}


# --- counted events ------------------------------------------------------------------------


def test_repeated_event_ids_count_once_and_tenants_are_separate():
    first = ev("c1", "call", T, direction="in", answered=True, duration_s=10.0)
    other_tenant = msgspec.structs.replace(first, tenant="globex")
    events = [
        first,
        first,
        msgspec.structs.replace(first, direction="out"),  # a repeat: the first one wins
        other_tenant,
        stage("s1", "deal-1", "new", T),
        stage("s1", "deal-1", "new", T),
    ]
    # acme: one call (in, answered, 10 s), one stage entry; globex's event is not acme's.
    assert kpis(events, window="today")[TOTAL] == {
        "calls": 1, "calls_in": 1, "calls_answered": 1, "talk_time_ms": 10000,
        "stage_entries:sales:new": 1, "cohort_den:sales:new": 1, "e2e_den:sales": 1,
        "open:sales:new": 1,
    }  # fmt: skip
    assert kpis(events, window="today", tenant="globex")[TOTAL] == {
        "calls": 1, "calls_in": 1, "calls_answered": 1, "talk_time_ms": 10000,
    }  # fmt: skip


def test_too_late_events_count_nowhere():
    def call(event_id: str, late: timedelta) -> CrmEvent:
        return ev(event_id, "call", T - late, direction="in", answered=False, received_at=T)

    events = [
        call("on-time", 35 * D),  # received - occurred = 35 d exactly: not too late
        call("too-late", 35 * D + S),
        ev("never-late", "call", T - 100 * D, direction="in", answered=False),  # no received_at
        stage("n", "deal-9", "new", T - 41 * D, received_at=T - 41 * D),
        stage("w", "deal-9", "won", T - 40 * D, received_at=T),  # too late: deal-9 stays open
    ]
    total = kpis(events, window="all")[TOTAL]
    assert total["calls"] == 2
    assert only(total, "won", "open", "stage_entries") == {
        "stage_entries:sales:new": 1,
        "open:sales:new": 1,
    }
    # a tighter lateness: the on-time call (35 d late) is now too late too.
    tight = compute_components(events, CONFIG, "acme", "all", None, T, lateness_s=60)
    assert tight[TOTAL]["calls"] == 1


def test_the_first_occurrence_decides_lateness():
    late = ev("c1", "call", T - 40 * D, direction="in", answered=False, received_at=T)
    on_time = msgspec.structs.replace(late, received_at=T - 40 * D)
    # The repeat is ignored whatever it carries; the first copy was too late.
    assert kpis([late, on_time])[TOTAL] == {}
    assert kpis([on_time, late])[TOTAL]["calls"] == 1


# --- arrival order -------------------------------------------------------------------------


def _renamed(events: list[CrmEvent], prefix: str) -> list[CrmEvent]:
    return [
        msgspec.structs.replace(
            e,
            event_id=f"{prefix}{e.event_id}",
            entity_id=None if e.entity_id is None else f"{prefix}{e.entity_id}",
        )
        for e in events
    ]


def test_shuffle_and_repeats_do_not_change_anything():
    history: list[CrmEvent] = []
    scenarios = [
        activity_events(),
        cohort_events(),
        outcome_events(),
        client_events(),
        acquisition_events(),
        live_events(),
    ]
    for i, scenario in enumerate(scenarios):
        history += _renamed(scenario, f"s{i}-")
    expected = {
        (window, by): kpis(history, window=window, by=by)
        for window in WINDOWS
        for by in (None, *DIMENSIONS)
    }
    rng = random.Random(20261120)
    for _ in range(5):
        shuffled = history + rng.sample(history, 10)  # identical repeats
        rng.shuffle(shuffled)
        for (window, by), components in expected.items():
            assert kpis(shuffled, window=window, by=by) == components
