"""Grafana panels (stat, gauge, bar gauge, time series, table, heatmap) as builders. Pure.

A panel is built without position or id (salespulse.dev.dashboards.board lays boards out).
Plain dicts: the output is Grafana's own JSON model, readable in a diff, with no
dashboard library in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Json = dict[str, Any]

DATASOURCE: Final[Json] = {"type": "prometheus", "uid": "prometheus"}
# (threshold, colour) steps, lowest first; the first threshold is None (minus infinity).
Steps = Sequence[tuple[float | None, str]]
NEUTRAL: Final[Steps] = ((None, "blue"),)
BAD_ABOVE_ZERO: Final[Steps] = ((None, "green"), (1, "red"))
GOOD_AT_ONE: Final[Steps] = ((None, "red"), (0.8, "orange"), (1, "green"))


@dataclass(frozen=True)
class Query:
    """One PromQL target. ``legend`` is Grafana's legendFormat ({{label}} placeholders)."""

    expr: str
    legend: str = ""
    # Tables show the latest value per series (instant); heatmaps want buckets as rows.
    kind: str = "range"  # range | table | heatmap


@dataclass(frozen=True)
class Panel:
    """A panel's JSON without id and gridPos, and the size it asks for."""

    width: int
    height: int
    body: Json


def _targets(queries: Sequence[Query]) -> list[Json]:
    targets = []
    for index, query in enumerate(queries):
        target: Json = {
            "refId": chr(ord("A") + index),
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": query.kind != "table",
            "instant": query.kind == "table",
        }
        if query.kind != "range":
            target["format"] = query.kind
        targets.append(target)
    return targets


def _thresholds(steps: Steps) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def _panel(
    kind: str,
    title: str,
    queries: Sequence[Query],
    defaults: Json,
    options: Json,
    size: tuple[int, int],
    description: str,
) -> Panel:
    body: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }
    return Panel(size[0], size[1], body)


_LAST: Final[Json] = {"values": False, "calcs": ["lastNotNull"], "fields": ""}


def stat(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    decimals: int | None = None,
    steps: Steps = NEUTRAL,
    mappings: Sequence[Json] = (),
    size: tuple[int, int] = (4, 5),
    description: str = "",
    show_names: bool = False,
    no_value: str | None = None,
) -> Panel:
    """A big number for a wall screen: coloured background, sparkline of the range.

    ``no_value``: what to show when the query has no series (a gauge that exists only
    while something is counted, such as stuck deals, shows "0" rather than "No data").
    """
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": _thresholds(steps),
        "mappings": list(mappings),
    }
    if no_value is not None:
        defaults["noValue"] = no_value
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {
        "reduceOptions": _LAST,
        "colorMode": "background",
        "graphMode": "area",
        "justifyMode": "center",
        "orientation": "auto",
        "textMode": "value_and_name" if show_names else "auto",
        "wideLayout": True,
        "showPercentChange": False,
    }
    return _panel("stat", title, queries, defaults, options, size, description)


def gauge(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "percentunit",
    maximum: float = 1.5,
    steps: Steps = GOOD_AT_ONE,
    size: tuple[int, int] = (4, 5),
    description: str = "",
) -> Panel:
    defaults: Json = {
        "unit": unit,
        "min": 0,
        "max": maximum,
        "color": {"mode": "thresholds"},
        "thresholds": _thresholds(steps),
        "mappings": [],
    }
    options = {
        "reduceOptions": _LAST,
        "orientation": "auto",
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
        "sizing": "auto",
        "minVizWidth": 75,
        "minVizHeight": 75,
    }
    return _panel("gauge", title, queries, defaults, options, size, description)


def bars(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    maximum: float | None = None,
    steps: Steps = NEUTRAL,
    size: tuple[int, int] = (8, 8),
    description: str = "",
) -> Panel:
    """Horizontal bar gauge: one bar per series, labelled by its legend."""
    defaults: Json = {
        "unit": unit,
        "min": 0,
        "color": {"mode": "thresholds"},
        "thresholds": _thresholds(steps),
        "mappings": [],
    }
    if maximum is not None:
        defaults["max"] = maximum
    options = {
        "reduceOptions": _LAST,
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizWidth": 8,
        "minVizHeight": 16,
        "maxVizHeight": 300,
    }
    return _panel("bargauge", title, queries, defaults, options, size, description)


def timeseries(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    size: tuple[int, int] = (12, 8),
    description: str = "",
    stacked: bool = False,
) -> Panel:
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "lineWidth": 2,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": True,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        },
        "thresholds": _thresholds(NEUTRAL),
        "mappings": [],
    }
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel("timeseries", title, queries, defaults, options, size, description)


def table(
    title: str,
    query: Query,
    *,
    columns: Mapping[str, str],
    sort_by: str,
    unit: str = "short",
    size: tuple[int, int] = (8, 10),
    description: str = "",
) -> Panel:
    """A leaderboard: an instant query as a table, only ``columns`` shown, renamed."""
    if query.kind != "table":
        raise ValueError(f"{title!r}: a table panel shows an instant table query")
    panel = _panel(
        "table",
        title,
        [query],
        {"unit": unit, "custom": {"align": "auto", "cellOptions": {"type": "auto"}}},
        {"showHeader": True, "cellHeight": "md", "footer": {"show": False}},
        size,
        description,
    )
    panel.body["transformations"] = [
        {
            "id": "filterFieldsByName",
            "options": {"include": {"names": list(columns)}},
        },
        {"id": "organize", "options": {"renameByName": dict(columns)}},
        {"id": "sortBy", "options": {"sort": [{"field": columns[sort_by], "desc": True}]}},
    ]
    return panel


def heatmap(
    title: str,
    query: Query,
    *,
    unit: str = "s",
    size: tuple[int, int] = (12, 9),
    description: str = "",
) -> Panel:
    """Prometheus histogram buckets as they are (no recalculation by Grafana)."""
    if query.kind != "heatmap":
        raise ValueError(f"{title!r}: a heatmap shows a heatmap-format query")
    options = {
        "calculate": False,
        "cellGap": 1,
        "color": {
            "mode": "scheme",
            "scheme": "Oranges",
            "scale": "exponential",
            "exponent": 0.5,
            "steps": 64,
            "fill": "dark-orange",
            "reverse": False,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
        "cellValues": {"unit": "short"},
        "showValue": "never",
    }
    panel = _panel("heatmap", title, [query], {"custom": {}}, options, size, description)
    panel.body["interval"] = "1m"  # one column per minute: replies are sparse
    return panel


def selector(metric: str, **labels: str) -> str:
    """``metric{a="x",b=~"y"}``: a value starting with ``~`` is a regex match."""
    matchers = [
        f'{name}=~"{value[1:]}"' if value.startswith("~") else f'{name}="{value}"'
        for name, value in labels.items()
    ]
    return f"{metric}{{{','.join(matchers)}}}"
