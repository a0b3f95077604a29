"""The OpenAPI document (metrics/api/openapi.py) is valid JSON Schema 2020-12 throughout,
names every parameter the strict query accepts, and the suite's check rejects an answer
that strays from it."""

from __future__ import annotations

import jsonschema
import msgspec
import pytest

from metrics.api.openapi import document
from metrics.api.query import KPIS_PARAMS, SERIES_PARAMS
from tests.openapi_check import OpenApiMismatch, check_answer


def test_every_schema_is_valid_json_schema() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0"
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_documented_parameters_are_the_accepted_ones() -> None:
    paths = document()["paths"]
    kpis = [p["name"] for p in paths["/v1/kpis"]["get"]["parameters"]]
    series = [p["name"] for p in paths["/v1/kpis/series"]["get"]["parameters"]]
    assert sorted(kpis) == sorted(KPIS_PARAMS)
    assert sorted(series) == sorted(SERIES_PARAMS)


def test_the_check_rejects_a_wrong_answer_and_an_undocumented_status() -> None:
    problem = {"error": "invalid_query", "problems": [{"field": "by", "problem": "one of …"}]}
    assert check_answer("/v1/kpis", 400, msgspec.json.encode(problem))
    with pytest.raises(OpenApiMismatch, match="problems"):
        check_answer("/v1/kpis", 400, msgspec.json.encode({"error": "invalid_query"}))
    with pytest.raises(OpenApiMismatch, match="418"):
        check_answer("/v1/kpis", 418, b"{}")
    assert not check_answer("/v1/events", 202, b"{}")  # ingest: not the read API's document
