"""A frame's numbers as the wall shows them, in the key's locale and the tenant's currency. Pure.

The page never formats a number itself (a TV's browser locale is not the office's): each
part of the frame gets a ``text`` beside its raw numbers. Money comes in both forms,
``{"full", "short"}``: the page shows the full amount and switches to the compact CLDR
form only when the full one does not fit its cell even at the smallest text size.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache, lru_cache
from typing import Any, Literal

from metrics.wall.formatting import Formatter

Kind = Literal["money", "short", "number", "percent", "signed", "duration"]


@cache
def formatter(locale: str, currency: str) -> Formatter:
    return Formatter(locale, currency)


@lru_cache(maxsize=16_384)
def _format(locale: str, currency: str, kind: Kind, value: float | None) -> str:
    """One formatted value, remembered: a frame is rebuilt four times a second with mostly
    the same numbers, and formatting them all anew cost ~10 ms a frame at 50 managers."""
    f = formatter(locale, currency)
    if kind == "money":
        return f.money(value)
    if kind == "short":
        return f.money_compact(value)
    if kind == "number":
        return f.number(value)
    if kind == "percent":
        return f.percent(value)
    if kind == "signed":
        return f.signed_percent(value or 0.0)
    return f.duration(value)


class _Texts:
    """Formatter's methods the frame uses, through the memo."""

    def __init__(self, locale: str, currency: str) -> None:
        self._key = (locale, currency)

    def money_both(self, value: float | None) -> dict[str, str]:
        return {
            "full": _format(*self._key, "money", value),
            "short": _format(*self._key, "short", value),
        }

    def number(self, value: float | None) -> str:
        return _format(*self._key, "number", value)

    def percent(self, value: float | None) -> str:
        return _format(*self._key, "percent", value)

    def signed_percent(self, value: float) -> str:
        return _format(*self._key, "signed", value)

    def duration(self, value: float | None) -> str:
        return _format(*self._key, "duration", value)

    def day(self, value: date) -> str:
        return formatter(*self._key).day(value)


def present(
    payload: dict[str, object], locale: str, currency: str, *, today: date
) -> dict[str, object]:
    """The payload with ``text`` added to its KPIs, plan, leaders and wins, and the
    tenant's today (``today``, in its zone) as the locale writes a date."""
    f = _Texts(locale, currency)
    kpis: Mapping[str, Any] = _mapping(payload["kpis"])
    plan: Mapping[str, Any] = _mapping(payload["plan"])
    conversion, replies = _mapping(kpis["conversion"]), _mapping(kpis["first_response"])
    text: dict[str, object] = {
        "revenue": f.money_both(kpis["revenue"]),
        "average_check": f.money_both(kpis["average_check"]),
        "conversion": f.percent(conversion["value"]),
        "conversion_won": f.number(conversion["numerator"]),
        "conversion_closed": f.number(conversion["denominator"]),
        "first_response": f.duration(replies["median_seconds"]),
        "replies": f.number(replies["count"]),
        "today": f.day(today),
    }
    for name in ("won", "lost", "calls", "calls_answered", "messages", "meetings"):
        text[name] = f.number(kpis[name])
    text["deals_created"] = f.number(kpis["deals_created"])
    plan_text: dict[str, object] = {}
    for part in ("month", "month_plan", "today_plan"):
        if plan.get(f"revenue_{part}") is not None:
            plan_text[f"revenue_{part}"] = f.money_both(plan[f"revenue_{part}"])
        if plan.get(f"won_{part}") is not None:
            plan_text[f"won_{part}"] = f.number(plan[f"won_{part}"])
    for name in ("revenue", "won"):
        pace = plan.get(f"{name}_today_pace")
        if pace:
            plan_text[f"{name}_vs_pace"] = f.signed_percent(kpis[name] / pace - 1)
    waiting = payload.get("waiting")
    if isinstance(waiting, Mapping):
        text["waiting_count"] = f.number(waiting.get("count"))
    leaders = [
        {
            **row,
            "text": {
                "revenue": f.money_both(row["revenue"]),
                "won": f.number(row["won"]),
                "calls": f.number(row["calls"]),
                "progress": f.percent(row["progress"]) if row["progress"] is not None else "",
            },
        }
        for row in _rows(payload["leaders"])
    ]
    wins = [{**row, "text": f.money_both(row["amount"])} for row in _rows(payload["wins"])]
    return {
        **payload,
        "text": text,
        "plan": {**plan, "text": plan_text},
        "leaders": leaders,
        "wins": wins,
    }


def _mapping(value: object) -> Mapping[str, Any]:
    assert isinstance(value, Mapping)  # narrowing: build_frame made it a dict
    return value


def _rows(value: object) -> list[Mapping[str, Any]]:
    assert isinstance(value, list)  # narrowing: build_frame made it a list of dicts
    return [_mapping(row) for row in value]
