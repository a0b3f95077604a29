"""Hypothesis strategies: plausible event histories of one sales office.

Deals walk a configured pipeline (sometimes skipping, reopening, losing or moving to an
unconfigured pipeline); calls, messages, leads, ratings, invoices, payments and
marketing costs happen around them. Times cluster within a few days so that every
window has something in it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from tests.helpers import make_event

TENANT = "office"
NOW = datetime(2026, 3, 30, 10, 7, 30, tzinfo=UTC)  # a Monday, right after the EU DST change
CONFIG = TenantConfig.model_validate({
    "timezone": "Europe/Berlin",
    "currency": "EUR",
    "currency_rates": {"USD": "0.92"},
    "pipelines": {"sales": {"stages": [
        {"id": "new"}, {"id": "qualified", "warm": True, "limit_hours": 12},
        {"id": "proposal", "limit_hours": 48}, {"id": "negotiation"},
        {"id": "won", "kind": "won"}, {"id": "lost", "kind": "lost"},
    ]}},
    "teams": {"north": {"managers": ["m1", "m2"]}, "south": {"managers": ["m3"]}},
    "targets": {"managers": {"m1": {"revenue": "1000", "deals_won": 3}}},
    "marketing_costs": {"web": {"2026-03": "3100"}},
})  # fmt: skip
TENANTS = TenantDirectory(TenantsFile(tenants={TENANT: CONFIG}))
MANAGERS = ("m1", "m2", "m3", "m4", None)
# "total": a source named like the tenant total is a group of its own, not added into it.
SOURCES = ("web", "ads", "total", None)
STAGES = ("new", "qualified", "proposal", "negotiation", "won", "lost")


def _instant(draw: st.DrawFn) -> datetime:
    # Mostly the last day (sliding windows), some over the last five weeks.
    if draw(st.booleans()):
        return NOW - timedelta(seconds=draw(st.integers(-120, 26 * 3600)))
    return NOW - timedelta(seconds=draw(st.integers(0, 35 * 86_400)))


@st.composite
def deal_history(draw: st.DrawFn, number: int) -> list[CrmEvent]:
    deal = f"deal-{number}"
    manager = draw(st.sampled_from(MANAGERS))
    source = draw(st.sampled_from(SOURCES))
    client = draw(st.sampled_from(["c1", "c2", "c3", "c4", None]))
    start = _instant(draw)
    events = []
    if draw(st.booleans()):
        # Some CRMs send the creation with its first stage (creation + entry into it).
        entered = draw(st.sampled_from([None, None, "new", "qualified"]))
        events.append(
            make_event(
                f"{deal}-created",
                "deal_created",
                entity_id=deal,
                manager_id=manager,
                source_channel=source,
                client_id=client,
                occurred_at=start,
                lead_id=draw(st.sampled_from(["l1", "l2", None])),
                stage_to=entered,
                pipeline="sales",
            )
        )
    path = draw(st.lists(st.sampled_from(STAGES), min_size=1, max_size=5))
    when = start
    for step, stage in enumerate(path):
        # 0: a stage at the same instant as the creation or the step before (ties)
        when += timedelta(minutes=draw(st.sampled_from([0, draw(st.integers(0, 3000))])))
        fields: dict[str, object] = {
            "entity_id": deal,
            "stage_to": stage,
            "occurred_at": when,
            "manager_id": manager,
            "client_id": client,
            "pipeline": draw(st.sampled_from(["sales"] * 5 + ["x"])),
            "stage_kind": None,
            "amount": None,
            "currency": None,
            "source_channel": source,
        }
        if stage in ("won", "negotiation") and draw(st.booleans()):
            fields["amount"] = Decimal(draw(st.integers(0, 500_000))) / 100
            fields["currency"] = draw(st.sampled_from(["EUR", "USD", "GBP"]))
            if draw(st.booleans()):
                fields["cost"] = Decimal(draw(st.integers(0, 10_000)))
        if stage == "lost":
            fields["lost_reason"] = draw(st.sampled_from(["price", "silence"]))
        events.append(make_event(f"{deal}-s{step}", "deal_stage_changed", **fields))
    return events


@st.composite
def activity(draw: st.DrawFn, number: int) -> CrmEvent:
    kind = draw(
        st.sampled_from(
            [
                "call",
                "message",
                "meeting",
                "lead_created",
                "rating",
                "invoice",
                "payment",
                "marketing_cost",
                "lead_stage_changed",
            ]
        )
    )
    fields: dict[str, object] = {
        "occurred_at": _instant(draw),
        "manager_id": draw(st.sampled_from(MANAGERS)),
    }
    if kind == "call":
        fields.update(
            direction=draw(st.sampled_from(["in", "out"])),
            answered=draw(st.booleans()),
            duration_s=draw(st.integers(0, 900)) + draw(st.sampled_from([0, 0.25])),
        )
    elif kind == "message":
        fields.update(direction=draw(st.sampled_from(["in", "out"])), automated=draw(st.booleans()))
    elif kind in ("lead_created", "lead_stage_changed"):
        fields.update(
            # a lead_created without an id is counted per event (no state to join)
            entity_id=draw(st.sampled_from([f"lead-{n}" for n in range(6)] + [None]))
            if kind == "lead_created"
            else f"lead-{draw(st.integers(0, 5))}",
            source_channel=draw(st.sampled_from(SOURCES)),
        )
        if kind == "lead_stage_changed":
            fields["stage_to"] = draw(st.sampled_from(["new", "contacted", "junk"]))
    elif kind == "rating":
        fields["rating"] = draw(st.integers(1, 5))
    elif kind in ("invoice", "payment", "marketing_cost"):
        fields.update(
            amount=Decimal(draw(st.integers(1, 100_000))) / 100,
            currency=draw(st.sampled_from(["EUR", "USD"])),
            source_channel="web",
        )
    return make_event(f"act-{number}", kind, **fields)


@st.composite
def histories(
    draw: st.DrawFn, max_deals: int = 6, max_activity: int = 25, date_only: bool = False
) -> list[CrmEvent]:
    """``date_only``: every instant cut to its UTC midnight, as CRMs that keep dates only
    give them (many events of a deal then share an instant: the causal rank orders them)."""
    deals = draw(st.integers(0, max_deals))
    events = [e for n in range(deals) for e in draw(deal_history(n))]
    events += [draw(activity(n)) for n in range(draw(st.integers(0, max_activity)))]
    built = [make_event(e.event_id, e.type, **_fields(e), tenant=TENANT) for e in events]
    if date_only:
        built = [
            msgspec.structs.replace(
                e, occurred_at=e.occurred_at.replace(hour=0, minute=0, second=0, microsecond=0)
            )
            for e in built
        ]
    return built


def _fields(event: CrmEvent) -> dict[str, object]:
    values = msgspec.structs.asdict(event)
    for name in ("event_id", "type", "tenant", "schema"):
        values.pop(name)
    return values
