"""The fold's entity contributions equal the plain reference (tests/entity_reference.py)
on random deal and lead histories, event by event, and the totals of folding them in
random batches equal those of one fold of everything (issue 19: the faster derive)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.codecs import encode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from streams.contributions import Derived, derive
from streams.entities import Parts
from streams.entity_state import DealState, LeadState, join_deal, join_lead
from streams.fold import States, decode_state, entity_ref, fold_batch
from tests import entity_reference as reference
from tests.helpers import make_event

TENANT = "acme"
CONFIG = TenantConfig.model_validate({
    "timezone": "Europe/Berlin",
    "currency": "EUR",
    "currency_rates": {"USD": "0.92"},
    "pipelines": {
        "sales": {"stages": [
            {"id": "new"}, {"id": "qualified", "warm": True}, {"id": "proposal"},
            {"id": "won", "kind": "won"}, {"id": "lost", "kind": "lost"},
        ]},
        # a warm stage that is not ranked (lost), and two won stages
        "resale": {"stages": [
            {"id": "new"}, {"id": "demo"}, {"id": "paused", "kind": "lost", "warm": True},
            {"id": "won", "kind": "won"}, {"id": "signed", "kind": "won"},
        ]},
    },
    "teams": {"north": {"managers": ["m1", "m2"]}, "south": {"managers": ["m3"]}},
})  # fmt: skip
TENANTS = TenantDirectory(TenantsFile(tenants={TENANT: CONFIG}))
KEYS = KpiKeys("derive-test:")
T0 = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
# "x" is configured nowhere; "odd" is a stage no pipeline has
PIPELINES = ("sales", "sales", "resale", "x")
STAGES = ("new", "qualified", "proposal", "demo", "paused", "won", "signed", "lost", "odd")


@st.composite
def deal_event(draw: st.DrawFn, number: int) -> CrmEvent:
    # few distinct instants: ties, repeats and out-of-order arrivals are common
    fields: dict[str, object] = {
        "entity_id": f"deal-{draw(st.integers(0, 2))}",
        "occurred_at": T0 + timedelta(minutes=draw(st.sampled_from([0, 1, 5, 60, 61, 2000]))),
        "manager_id": draw(st.sampled_from(["m1", "m2", "m3", "m4", None])),
        "team": draw(st.sampled_from(["east", None])),
        "source_channel": draw(st.sampled_from(["web", None])),
        "client_id": draw(st.sampled_from(["c1", None])),
        "lead_id": draw(st.sampled_from(["l1", None])),
        "pipeline": draw(st.sampled_from((*PIPELINES, None))),
        "stage_kind": None,
        "amount": None,
        "currency": None,
    }
    stage = draw(st.sampled_from((*STAGES, None)))
    if draw(st.integers(0, 4)) == 0:
        kind = "deal_created"
        fields["stage_to"] = stage if draw(st.booleans()) else None
    else:
        kind = "deal_stage_changed"
        fields["stage_to"] = stage or "new"
        fields["pipeline"] = fields["pipeline"] or "sales"
        fields["stage_kind"] = draw(st.sampled_from([None, None, "open", "won", "lost"]))
    if draw(st.booleans()):
        fields["amount"] = Decimal(draw(st.integers(0, 500_000))) / 100
        fields["currency"] = draw(st.sampled_from(["EUR", "USD", "GBP", None]))
        if draw(st.booleans()):
            fields["cost"] = Decimal(draw(st.integers(0, 10_000)))
    if draw(st.booleans()):
        fields["lost_reason"] = draw(st.sampled_from(["price", "silence"]))
    return make_event(f"d{number}", kind, tenant=TENANT, **fields)


@st.composite
def lead_event(draw: st.DrawFn, number: int) -> CrmEvent:
    kind = draw(st.sampled_from(["lead_created", "lead_stage_changed"]))
    fields: dict[str, object] = {
        "entity_id": f"lead-{draw(st.integers(0, 2))}",
        "occurred_at": T0 + timedelta(minutes=draw(st.sampled_from([0, 1, 5, 60, 2000]))),
        "manager_id": draw(st.sampled_from(["m1", "m3", None])),
        "source_channel": draw(st.sampled_from(["web", "ads", None])),
    }
    if kind == "lead_stage_changed":
        fields["stage_to"] = draw(st.sampled_from(["new", "contacted", "junk", None]))
    return make_event(f"l{number}", kind, tenant=TENANT, **fields)


@st.composite
def entity_history(draw: st.DrawFn) -> list[CrmEvent]:
    size = draw(st.integers(1, 14))
    events = [
        draw(deal_event(n) if draw(st.integers(0, 3)) else lead_event(n)) for n in range(size)
    ]
    # redeliveries, anywhere
    return events + draw(st.lists(st.sampled_from(events), max_size=3))


def reference_parts(state: DealState | LeadState) -> tuple[object, Parts]:
    """(dims, contributions) as the reference derives them."""
    if isinstance(state, DealState):
        dims, parts, _, _ = reference.deal_facts(state, CONFIG)
        return dims, parts
    facts = reference.lead_facts(state, CONFIG)
    return (None, {}) if facts is None else facts


def encoded(state: DealState | LeadState) -> Counter[str]:
    """The reference contributions of a state, all time, by encoded Redis field."""
    dims, parts = reference_parts(state)
    totals: Counter[str] = Counter()
    for (_, component), amount in parts.items():
        assert isinstance(dims, tuple)
        totals[encode_field((component, *dims)).decode()] += amount
    return totals


def all_time(increments: dict[tuple[str, str, str], dict[str, int]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for (_, granularity, _), fields in increments.items():
        if granularity == "all":
            totals.update(fields)
    return totals


def by_bucket(increments: dict[tuple[str, str, str], dict[str, int]]) -> Counter[tuple[str, str]]:
    totals: Counter[tuple[str, str]] = Counter()
    for (_, granularity, bucket), fields in increments.items():
        for name, amount in fields.items():
            totals[f"{granularity}:{bucket}", name] += amount
    return totals


@settings(deadline=None, max_examples=400)
@given(entity_history())
def test_derive_equals_the_reference_and_the_delta_is_the_difference(
    events: list[CrmEvent],
) -> None:
    states: States = {}
    derived: dict[str, Derived] = {}
    for index, event in enumerate(events):
        ref = entity_ref(KEYS, event)
        assert ref is not None
        key, kind = ref
        old = states[key][1] if key in states else None
        fold = fold_batch([event], TENANTS, KEYS, dict(states), derived=dict(derived))
        if key not in fold.entity_writes:  # a redelivery, dropped as already counted
            continue
        new = decode_state(kind, fold.entity_writes[key][1])
        assert new == fold.new_states[key]
        # the full derive, field by field, against the reference
        mine = derive(new, CONFIG)
        ref_dims, ref_parts = reference_parts(new)
        assert mine.contributions == ref_parts
        if ref_parts:
            assert mine.dims == ref_dims
        if isinstance(new, DealState):
            assert mine[2:] == reference.deal_facts(new, CONFIG)[2:]
        assert fold.new_derived[key] == mine
        # what the fold writes is the reference's new minus old
        expected = encoded(new)
        if old is not None:
            expected.subtract(encoded(old))
        assert +all_time(fold.increments) == +expected
        assert -all_time(fold.increments) == -expected
        states[key] = (states[key][0] + 1 if key in states else 1, new)
        derived[key] = fold.new_derived[key]
        # stream equals batch on the joined state itself
        joined = DealState() if kind == "deal" else LeadState()
        for seen in events[: index + 1]:
            if entity_ref(KEYS, seen) == ref:
                if isinstance(joined, DealState):
                    join_deal(joined, seen, config=CONFIG)
                else:
                    join_lead(joined, seen, config=CONFIG)
        assert joined == new


@settings(deadline=None, max_examples=300)
@given(
    entity_history(),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 20), max_size=6),
    st.booleans(),
)
def test_random_batches_add_up_to_one_fold_of_everything(
    events: list[CrmEvent], rng: random.Random, cuts: list[int], carry_derived: bool
) -> None:
    whole = by_bucket(fold_batch(events, TENANTS, KEYS, {}).increments)
    arrived = list(events)
    rng.shuffle(arrived)
    bounds = sorted({0, len(arrived), *(cut % (len(arrived) + 1) for cut in cuts)})
    states: States = {}
    derived: dict[str, Derived] = {}
    totals: Counter[tuple[str, str]] = Counter()
    for start, stop in itertools.pairwise(bounds):
        fold = fold_batch(
            arrived[start:stop],
            TENANTS,
            KEYS,
            dict(states),
            derived=dict(derived) if carry_derived else None,
        )
        totals.update(by_bucket(fold.increments))
        for key, (version, _) in fold.entity_writes.items():
            states[key] = (version + 1, fold.new_states[key])
            derived[key] = fold.new_derived[key]
    assert {part: n for part, n in totals.items() if n} == {
        part: n for part, n in whole.items() if n
    }
