"""KPIs → the JSON shape of the API: stable keys, counts as integers. Pure.

Plain KPIs become numbers; ratios become {value, numerator, denominator}; labelled KPIs
become lists of objects. Every group carries every key the total carries (zero, null or
an empty list, never missing), so a client never tests for a key.
"""

from __future__ import annotations

from typing import Final

from metrics.read.kpi_value import Kpi

# KPIs that count things: JSON integers.
COUNTS: Final = frozenset(
    {
        "calls", "calls_in", "calls_out", "calls_answered", "calls_missed", "calls_abandoned",
        "meetings", "messages_in", "messages_out", "leads_created", "deals_created",
        "leads_processed", "won", "lost", "stage_entries", "open_deals", "ready_to_close",
        "stuck_deals", "lost_by_reason", "repeat_sales", "new_clients", "abc_clients",
        "first_responses", "next_responses", "sla_breaches", "waiting",
    }
)  # fmt: skip
# Ratios of two counts: their numerator and denominator are integers.
COUNT_RATIOS: Final = frozenset(
    {
        "win_rate", "lead_to_customer", "repeat_sales_share", "purchase_frequency",
        "conversion_flow", "conversion_cohort", "end_to_end_cohort", "end_to_end_flow",
        "cold_to_warm", "sla_compliance", "abandonment_rate", "service_level",
    }
)  # fmt: skip


def _int(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def kpi_json(kpi: Kpi) -> dict[str, object]:
    out: dict[str, object] = dict(kpi.labels)
    out["value"] = _int(kpi.value) if kpi.name in COUNTS else kpi.value
    if kpi.denominator is not None:
        counted = kpi.name in COUNT_RATIOS
        out["numerator"] = _int(kpi.numerator) if counted else kpi.numerator
        out["denominator"] = _int(kpi.denominator) if counted else kpi.denominator
    return out


def as_json(kpis: list[Kpi]) -> dict[str, object]:
    """One group's KPIs as JSON."""
    out: dict[str, object] = {}
    for kpi in kpis:
        if not kpi.labels and kpi.denominator is None:
            out[kpi.name] = _int(kpi.value) if kpi.name in COUNTS else kpi.value
        elif not kpi.labels:
            out[kpi.name] = kpi_json(kpi)
        else:
            entries = out.setdefault(kpi.name, [])
            assert isinstance(entries, list)  # narrowing: labelled KPIs are always lists
            entries.append(kpi_json(kpi))
    return out


# Labelled KPIs whose entries exist only when there is something to show (a stage with
# deals, a reason with losses, a source with costs): an empty list when there is none.
LISTS: Final = (
    "stage_entries", "open_deals", "ready_to_close", "stuck_deals", "lost_by_reason",
    "time_in_stage_avg_seconds", "time_in_stage_p90_seconds", "conversion_flow",
    "conversion_cohort", "bottleneck", "end_to_end_cohort", "end_to_end_flow", "cold_to_warm",
    "marketing_cost", "new_clients", "cac", "romi",
)  # fmt: skip


def stable(total: dict[str, object], groups: dict[str, dict[str, object]]) -> None:
    """Every key of the total and of any group in every group (and the total)."""
    shapes: dict[str, object] = {name: [] for name in LISTS}
    for group in (total, *groups.values()):
        for name, value in group.items():
            if name not in shapes or shapes[name] is None:
                shapes[name] = value
    for group in (total, *groups.values()):
        for name, value in shapes.items():
            if name not in group:
                group[name] = [] if isinstance(value, list) else _empty(name, value)


def _empty(name: str, like: object) -> object:
    if isinstance(like, dict):
        return {"value": None, "numerator": 0, "denominator": 0}
    return 0 if name in COUNTS else None
