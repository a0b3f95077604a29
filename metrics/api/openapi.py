"""`GET /v1/openapi.json`: the OpenAPI 3.1 description of the read API, built from the
code that answers it (the parameter tuples of metrics/api/query.py, the catalogue's
windows and dimensions, the KPI names kpi_view.present emits), so it cannot drift from
the answers. The test suite validates every /v1 JSON answer it receives against it
(tests/openapi_check.py). Ingest and webhooks (handlers/) are described in their docs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, get_args

from aiohttp import web

from metrics.api.periods_api import MAX_POINTS
from metrics.api.query import FORMATS
from metrics.api.waiting import MAX_LIMIT
from metrics.read.waiting import WaitState
from metrics.views.kpi_json import COUNTS, LISTS
from metrics.views.kpi_view import present
from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from salespulse.core.kpi.periods import COMPARISONS, RELATIVE, STEPS
from salespulse.core.tenants import TenantConfig

Schema = dict[str, Any]
_REF: Final = "#/components/schemas/"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _param(name: str, description: str, schema: Schema, *, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _enum(values: tuple[str, ...]) -> Schema:
    return {"type": "string", "enum": list(values)}


_DAY: Final = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_NUMBER_OR_NULL: Final = {"type": ["number", "null"]}


def plain_kpis() -> tuple[list[str], list[str]]:
    """(numbers, ratios): the unlabelled KPIs every group carries, as present() emits them
    for a tenant with no configuration (pipelines, costs and targets add labelled ones)."""
    numbers: list[str] = []
    ratios: list[str] = []
    now = datetime(2000, 1, 1, tzinfo=UTC)
    for window in ("today", "all"):
        for kpi in present({}, TenantConfig(), window, now):
            if kpi.labels:
                continue
            target = ratios if kpi.denominator is not None else numbers
            if kpi.name not in target:
                target.append(kpi.name)
    return numbers, ratios


# GET /v1/waiting's entries (metrics/read/waiting.py Wait.as_json): every field always there.
_WAIT: Final = {
    "conversation": {"type": "string"},
    "kind": {"type": "string"},
    "channel": {"type": "string"},
    "manager": {"type": ["string", "null"]},
    "team": {"type": "string"},
    "pipeline": {"type": ["string", "null"]},
    "opened_at": {"type": "string", "format": "date-time"},
    "age_seconds": {"type": "number"},
    "business_age_seconds": {"type": "number"},
    "basis": {"type": "string"},
    "target_seconds": _NUMBER_OR_NULL,
    "at_risk_seconds": _NUMBER_OR_NULL,
    "state": {"enum": list(get_args(WaitState))},
}


def schemas() -> dict[str, Schema]:
    numbers, ratios = plain_kpis()
    kpi_properties: dict[str, Schema] = {}
    for name in numbers:
        kpi_properties[name] = {"type": "integer"} if name in COUNTS else dict(_NUMBER_OR_NULL)
    for name in ratios:
        kpi_properties[name] = _ref("Ratio")
    for name in LISTS:
        kpi_properties[name] = {"type": "array", "items": _ref("LabelledValue")}
    kpi_properties["waiting"] = {"type": ["integer", "null"]}
    kpi_properties["name"] = {"type": "string", "description": "by=manager: the display name"}
    always = [n for n in numbers if n != "receivables"] + [n for n in ratios if n != "clv_avg"]
    group: Schema = {
        "type": "object",
        "description": "Every KPI of one group (the total, or one manager, team, pipeline "
        "or source). Counts are integers; money in the tenant currency; durations in "
        "seconds; ratios 0 to 1 with their parts.",
        "properties": kpi_properties,
        "required": [*always, *LISTS],
        "additionalProperties": {
            "anyOf": [
                dict(_NUMBER_OR_NULL),
                _ref("Ratio"),
                {"type": "array", "items": _ref("LabelledValue")},
            ]
        },
    }
    period = {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"]},
            "from": _DAY,
            "to": _DAY,
            "days": {"type": "integer", "minimum": 1},
            "buckets": {"enum": ["day", "month"]},
            "snapshot_day": {"anyOf": [_DAY, {"type": "null"}]},
        },
        "required": ["name", "from", "to", "days", "buckets", "snapshot_day"],
        "additionalProperties": False,
    }
    change = {
        "type": "object",
        "properties": {
            "value": _NUMBER_OR_NULL,
            "other": _NUMBER_OR_NULL,
            "absolute": _NUMBER_OR_NULL,
            "relative": _NUMBER_OR_NULL,
        },
        "required": ["value", "other", "absolute", "relative"],
        "additionalProperties": False,
    }
    groups = {"type": "object", "additionalProperties": _ref("KpiGroup")}
    head = {
        "tenant": {"type": "string"},
        "by": {"anyOf": [_enum(DIMENSIONS), {"type": "null"}]},
        "at": {"type": "string", "format": "date-time"},
        "currency": {"type": "string"},
        "total": _ref("KpiGroup"),
        "groups": groups,
    }
    return {
        "Problem": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                        "required": ["problem"],
                    },
                },
            },
            "required": ["error", "problems"],
        },
        "Ratio": {
            "type": "object",
            "properties": {
                "value": _NUMBER_OR_NULL,
                "numerator": {"type": "number"},
                "denominator": {"type": "number"},
            },
            "required": ["value", "numerator", "denominator"],
            "additionalProperties": False,
        },
        "LabelledValue": {
            "type": "object",
            "description": "One entry of a labelled KPI: its labels (strings), its value, "
            "and a ratio's numerator and denominator.",
            "properties": {
                "value": _NUMBER_OR_NULL,
                "numerator": {"type": "number"},
                "denominator": {"type": "number"},
            },
            "required": ["value"],
            "additionalProperties": {"type": "string"},
        },
        "KpiGroup": group,
        "Period": period,
        "Change": change,
        "WindowAnswer": {
            "type": "object",
            "properties": {"window": _enum(WINDOWS), **head},
            "required": ["tenant", "window", "by", "at", "currency", "total", "groups"],
            "additionalProperties": False,
        },
        "PeriodAnswer": {
            "type": "object",
            "properties": {
                "period": _ref("Period"),
                **head,
                "compare": {
                    "type": "object",
                    "properties": {
                        "with": _enum(COMPARISONS),
                        "to_date": {"type": "boolean"},
                        "period": _ref("Period"),
                        "total": _ref("KpiGroup"),
                        "groups": groups,
                    },
                    "required": ["with", "to_date", "period", "total", "groups"],
                    "additionalProperties": False,
                },
                "change": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "object", "additionalProperties": _ref("Change")},
                        "groups": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": _ref("Change"),
                            },
                        },
                    },
                    "required": ["total", "groups"],
                    "additionalProperties": False,
                },
            },
            "required": ["tenant", "period", "by", "at", "currency", "total", "groups"],
            "dependentRequired": {"compare": ["change"], "change": ["compare"]},
            "additionalProperties": False,
        },
        "SeriesAnswer": {
            "type": "object",
            "properties": {
                "tenant": {"type": "string"},
                "kpi": {"type": "array", "items": _enum((*numbers, *ratios))},
                "step": _enum(STEPS),
                "from": _DAY,
                "to": _DAY,
                "by": head["by"],
                "at": head["at"],
                "currency": {"type": "string"},
                "points": {
                    "type": "array",
                    "maxItems": MAX_POINTS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "from": _DAY,
                            "to": _DAY,
                            "total": {"type": "object"},
                            "groups": {"type": "object"},
                        },
                        "required": ["from", "to", "total", "groups"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["tenant", "kpi", "step", "from", "to", "by", "at", "currency", "points"],
            "additionalProperties": False,
        },
        "Wait": {
            "type": "object",
            "description": "One client waiting for a reply (ids only), timed now.",
            "properties": _WAIT,
            "required": list(_WAIT),
            "additionalProperties": False,
        },
        "WaitingAnswer": {
            "type": "object",
            "properties": {
                "tenant": {"type": "string"},
                "now": {"type": "string", "format": "date-time"},
                "summary": {
                    "type": "object",
                    "properties": {
                        "waiting": {"type": "integer"},
                        "at_risk": {"type": "integer"},
                        "breached": {"type": "integer"},
                        "oldest_age_seconds": {"type": "number"},
                    },
                    "required": ["waiting", "at_risk", "breached", "oldest_age_seconds"],
                    "additionalProperties": False,
                },
                "waiting": {"type": "array", "items": _ref("Wait")},
            },
            "required": ["tenant", "now", "summary", "waiting"],
            "additionalProperties": False,
        },
    }


def _json_answer(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: Final = {
    "400": _json_answer(_ref("Problem"), "A bad query; each problem names its parameter."),
    "401": _json_answer(_ref("Problem"), "No token, or one that does not open this tenant."),
    "404": _json_answer(_ref("Problem"), "No such tenant."),
    "503": _json_answer(_ref("Problem"), "The KPI store (Redis) did not answer; retry."),
}
_CSV: Final = {"text/csv": {"schema": {"type": "string"}}}


def document() -> Schema:
    tenant = _param("tenant", "The tenant.", {"type": "string", "minLength": 1}, required=True)
    by = _param("by", "Group by this dimension.", _enum(DIMENSIONS))
    fmt = _param("format", "json (default) or csv (UTF-8 with a BOM).", _enum(FORMATS))
    period_names = ", ".join(RELATIVE)
    kpis_params = [
        tenant,
        _param("window", "A live window (not with a period); default today.", _enum(WINDOWS)),
        by,
        _param(
            "period",
            f"{period_names}, or a month 2017-03, quarter 2017-Q1, ISO week 2017-W11, day "
            "2017-03-15, in the tenant's time zone.",
            {"type": "string"},
        ),
        _param("from", "First day (inclusive), with to.", _DAY),
        _param("to", "Last day (inclusive), with from.", _DAY),
        _param("compare", "Add the other period's values and the change.", _enum(COMPARISONS)),
        _param("to_date", "Compare the elapsed days only.", _enum(("true", "false"))),
        fmt,
    ]
    series_params = [
        tenant,
        _param("kpi", "Comma-separated unlabelled KPI names.", {"type": "string"}, required=True),
        _param("step", "One point per step.", _enum(STEPS), required=True),
        _param("from", "First day (inclusive).", _DAY, required=True),
        _param("to", "Last day (inclusive).", _DAY, required=True),
        by,
        fmt,
    ]
    kpis_answer = {"oneOf": [_ref("WindowAnswer"), _ref("PeriodAnswer")]}
    unavailable = _json_answer(
        _ref("Problem"), "The period is past the day-bucket retention and not whole months."
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "SalesPulse read API", "version": "1"},
        "paths": {
            "/v1/kpis": {
                "get": {
                    "summary": "The KPI catalogue over a live window or a calendar period.",
                    "parameters": kpis_params,
                    "responses": {
                        "200": {
                            "description": "KPIs (JSON or CSV).",
                            "content": {"application/json": {"schema": kpis_answer}, **_CSV},
                        },
                        **_ERRORS,
                        "422": unavailable,
                    },
                }
            },
            "/v1/kpis/series": {
                "get": {
                    "summary": f"One point per step (at most {MAX_POINTS}), for charts.",
                    "parameters": series_params,
                    "responses": {
                        "200": {
                            "description": "The points (JSON or CSV).",
                            "content": {
                                "application/json": {"schema": _ref("SeriesAnswer")},
                                **_CSV,
                            },
                        },
                        **_ERRORS,
                        "422": unavailable,
                    },
                }
            },
            "/v1/waiting": {
                "get": {
                    "summary": "Clients waiting for a reply now.",
                    "parameters": [
                        tenant,
                        _param("team", "Only this team's waits.", {"type": "string"}),
                        _param("channel", "Only this channel's waits.", {"type": "string"}),
                        _param(
                            "limit",
                            "How many waits to list.",
                            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        ),
                    ],
                    "responses": {
                        "200": _json_answer(_ref("WaitingAnswer"), "The waiting list."),
                        **_ERRORS,
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _json_answer({"type": "object"}, "OpenAPI 3.1.")},
                }
            },
        },
        "components": {"schemas": schemas()},
    }


def openapi_routes() -> list[web.RouteDef]:
    body = document()

    async def get_openapi(_: web.Request) -> web.Response:
        return web.json_response(body)

    return [web.get("/v1/openapi.json", get_openapi)]
