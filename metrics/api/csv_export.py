"""`format=csv`: a KPI answer as a spreadsheet. Pure.

One row per group (the total first, as TOTAL_ROW) or per series point and group, one
column per KPI (a labelled KPI has one column per label set, named
`name[label=value;…]`; a ratio its value). UTF-8 with a byte-order mark, so that Excel
opens it as UTF-8; CRLF line ends (RFC 4180).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Final

from aiohttp import web

# The total's row: "" in JSON (no group can be named ""), spelled out for a spreadsheet.
TOTAL_ROW: Final = "(total)"


def flatten(kpis: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in kpis.items():
        if isinstance(value, list):
            for entry in value:
                labels = ";".join(f"{k}={v}" for k, v in entry.items() if k not in _PARTS)
                out[f"{name}[{labels}]"] = entry.get("value")
        elif isinstance(value, dict):
            out[name] = value.get("value")
        else:
            out[name] = value
    return out


_PARTS: Final = frozenset({"value", "numerator", "denominator"})


def _cell(value: object) -> object:
    return "" if value is None else value


def table(lead: list[str], rows: list[tuple[list[str], Mapping[str, object]]]) -> bytes:
    """Header `lead + every KPI column`, then one row per (lead values, KPIs)."""
    columns: list[str] = []
    seen: set[str] = set()
    flat = [(values, flatten(kpis)) for values, kpis in rows]
    for _, kpis in flat:
        for column in kpis:
            if column not in seen:
                seen.add(column)
                columns.append(column)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*lead, *columns])
    for values, kpis in flat:
        writer.writerow([*values, *(_cell(kpis.get(column)) for column in columns)])
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def kpis_csv(body: Mapping[str, object]) -> bytes:
    """A `GET /v1/kpis` answer: one row per group (and per compared period's group)."""
    rows: list[tuple[list[str], Mapping[str, object]]] = []
    period = body.get("period")
    span = (
        f"{period['from']}/{period['to']}" if isinstance(period, dict) else str(body.get("window"))
    )
    _rows(rows, span, body)
    compare = body.get("compare")
    if isinstance(compare, dict):
        other = compare["period"]
        _rows(rows, f"{other['from']}/{other['to']}", compare)
    return table(["period", "group"], rows)


def _rows(
    rows: list[tuple[list[str], Mapping[str, object]]], span: str, body: Mapping[str, object]
) -> None:
    total = body["total"]
    groups = body["groups"]
    assert isinstance(total, dict)  # narrowing: our own bodies
    assert isinstance(groups, dict)
    rows.append(([span, TOTAL_ROW], total))
    rows += [([span, name], kpis) for name, kpis in groups.items()]


def series_csv(body: Mapping[str, object]) -> bytes:
    """A series: one row per point and group (the total first)."""
    rows: list[tuple[list[str], Mapping[str, object]]] = []
    points = body["points"]
    assert isinstance(points, list)  # narrowing: our own bodies
    for point in points:
        rows.append(([point["from"], point["to"], TOTAL_ROW], point["total"]))
        rows += [([point["from"], point["to"], g], kpis) for g, kpis in point["groups"].items()]
    return table(["from", "to", "group"], rows)


def csv_response(payload: bytes, name: str) -> web.Response:
    return web.Response(
        body=payload,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
