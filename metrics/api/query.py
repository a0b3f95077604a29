"""Strict query strings for the KPI API: every parameter known, each problem named. Pure.

An unknown parameter is refused rather than ignored: `month=2017-03` once answered 200
with the current month's zeros, and a silent default is a wrong number on a director's
desk. Problems are listed as {"field", "problem"}, the shape of every 4xx of the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from salespulse.core.kpi.periods import COMPARISONS, STEPS

KPIS_PARAMS: Final = (
    "tenant", "window", "by", "period", "from", "to", "compare", "to_date", "format",
)  # fmt: skip
SERIES_PARAMS: Final = ("tenant", "kpi", "step", "from", "to", "by", "format")
FORMATS: Final = ("json", "csv")
BOOLEANS: Final = {"true": True, "false": False}

Problems = list[dict[str, str]]


def unknown_and_repeated(query: Mapping[str, str], allowed: tuple[str, ...]) -> Problems:
    """Parameters the endpoint does not take, and parameters given twice (a query string
    is a multi-mapping: `getall` tells a repeated name, which plain lookups hide)."""
    problems: Problems = []
    getall = getattr(query, "getall", None)
    for name in dict.fromkeys(query):
        if name not in allowed:
            known = ", ".join(allowed)
            problems.append({"field": name, "problem": f"unknown parameter; known: {known}"})
        elif getall is not None and len(getall(name)) > 1:
            problems.append({"field": name, "problem": "given more than once"})
    return problems


def one_of(
    query: Mapping[str, str], name: str, choices: tuple[str, ...], problems: Problems
) -> str | None:
    value = query.get(name)
    if value is not None and value not in choices:
        problems.append({"field": name, "problem": f"one of {', '.join(choices)}"})
        return None
    return value


def check_kpis_query(query: Mapping[str, str]) -> Problems:
    """Every problem of a `GET /v1/kpis` query but the period's own (periods.py)."""
    problems = unknown_and_repeated(query, KPIS_PARAMS)
    if not query.get("tenant"):
        problems.append({"field": "tenant", "problem": "required"})
    one_of(query, "window", WINDOWS, problems)
    one_of(query, "by", DIMENSIONS, problems)
    one_of(query, "compare", COMPARISONS, problems)
    one_of(query, "to_date", tuple(BOOLEANS), problems)
    one_of(query, "format", FORMATS, problems)
    has_period = "period" in query
    has_range = "from" in query or "to" in query
    if "window" in query and (has_period or has_range):
        problems.append({"field": "window", "problem": "a window or a period, not both"})
    if has_period and has_range:
        problems.append({"field": "period", "problem": "period= or from=&to=, not both"})
    if has_range and not ("from" in query and "to" in query):
        missing = "to" if "from" in query else "from"
        problems.append({"field": missing, "problem": "from and to go together"})
    if not (has_period or has_range):
        for name in ("compare", "to_date"):
            if name in query:
                problems.append({"field": name, "problem": "needs a period (period= or from=&to=)"})
    if query.get("to_date") == "true" and "compare" not in query:
        problems.append({"field": "to_date", "problem": "needs compare"})
    return problems


def check_series_query(query: Mapping[str, str]) -> Problems:
    problems = unknown_and_repeated(query, SERIES_PARAMS)
    for name in ("tenant", "kpi", "step", "from", "to"):
        if not query.get(name):
            problems.append({"field": name, "problem": "required"})
    one_of(query, "step", STEPS, problems)
    one_of(query, "by", DIMENSIONS, problems)
    one_of(query, "format", FORMATS, problems)
    return problems
