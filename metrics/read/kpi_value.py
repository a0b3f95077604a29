"""The value type every KPI view returns (KPI API, collector, wallboard)."""

from __future__ import annotations

from typing import NamedTuple


class Kpi(NamedTuple):
    """One value of a KPI, with its labels; ratios keep numerator and denominator.

    A NamedTuple: an exporter scrape builds thousands of these.
    """

    name: str
    value: float | None
    labels: tuple[tuple[str, str], ...] = ()
    numerator: float | None = None
    denominator: float | None = None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.labels)
        out["value"] = self.value
        if self.denominator is not None:
            out["numerator"] = self.numerator
            out["denominator"] = self.denominator
        return out


def ratio(name: str, num: float, den: float, labels: tuple[tuple[str, str], ...] = ()) -> Kpi:
    """A ratio KPI: None when the denominator is 0; numerator and denominator kept."""
    return Kpi(name, num / den if den else None, labels, num, den)


def seconds(name: str, ms: int | None, labels: tuple[tuple[str, str], ...] = ()) -> Kpi:
    """A percentile component (whole ms, metrics/read/quantiles.py) in seconds; None when
    the group counted no duration (then the group has no such component)."""
    return Kpi(name, ms / 1000 if ms is not None else None, labels)
