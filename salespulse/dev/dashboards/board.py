"""Dashboards of Grafana's JSON model at schemaVersion 39: variables, layout, links. Pure.

:func:`dashboard` lays panels out left to right on Grafana's 24-column grid, wrapping
to a new line when one does not fit, and numbers them: a board is a list of panels in
reading order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from salespulse.dev.dashboards.panels import DATASOURCE, Json, Panel

SCHEMA_VERSION: Final = 39  # Grafana 10.4 and 11.x
GRID_COLUMNS: Final = 24
TAG: Final = "salespulse"


def query_variable(name: str, label: str, definition: str, *, include_all: bool = False) -> Json:
    """A variable filled by ``label_values(...)``; with All (any value, ``.*``) if asked."""
    variable: Json = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": definition,
        "query": definition,
        "refresh": 2,  # on time range change: new managers and teams appear
        "sort": 1,
        "regex": "",
        "hide": 0,
        "skipUrlSync": False,
        "includeAll": include_all,
        "multi": include_all,
        "current": {},
        "options": [],
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


def custom_variable(name: str, label: str, values: Sequence[str], default: str) -> Json:
    if default not in values:
        raise ValueError(f"{name}: default {default!r} is not among {values}")
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "hide": 0,
        "skipUrlSync": False,
        "includeAll": False,
        "multi": False,
        "current": {"selected": True, "text": default, "value": default},
        "options": [
            {"selected": value == default, "text": value, "value": value} for value in values
        ],
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Json],
    panels: Sequence[Panel],
    *,
    refresh: str = "30s",
) -> Json:
    """The whole board: panels laid out in order, ids from 1, linked to the other boards."""
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "annotations": {"list": [_BUILT_IN_ANNOTATIONS]},
        "links": [
            {
                "type": "dashboards",
                "title": "SalesPulse",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": list(variables)},
        "panels": _laid_out(panels),
    }


_BUILT_IN_ANNOTATIONS: Final[Json] = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _laid_out(panels: Sequence[Panel]) -> list[Json]:
    out: list[Json] = []
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        if not 0 < panel.width <= GRID_COLUMNS:
            raise ValueError(f"{panel.body['title']!r}: width {panel.width} is off the grid")
        if x + panel.width > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        grid = {"h": panel.height, "w": panel.width, "x": x, "y": y}
        out.append({"id": number, "gridPos": grid, **panel.body})
        x += panel.width
        line_height = max(line_height, panel.height)
    return out
