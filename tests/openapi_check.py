"""Every /v1 JSON answer the test suite receives must match the OpenAPI document the
server publishes (metrics/api/openapi.py, `GET /v1/openapi.json`).

tests/conftest.py turns this on for every test: aiohttp's ClientResponse.read (which
json() and text() go through) is wrapped, and a GET answer of a documented /v1 path is
validated against the schema of its status; an undocumented status fails too.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import aiohttp
import jsonschema
import msgspec
import pytest

from metrics.api.openapi import document


@cache
def _document() -> dict[str, Any]:
    return document()


class OpenApiMismatch(AssertionError):
    pass


def check_answer(path: str, status: int, body: bytes) -> bool:
    """Validate one JSON answer; False when the path is not one the document describes."""
    spec = _document()
    operation = spec["paths"].get(path, {}).get("get")
    if operation is None:
        return False
    response = operation["responses"].get(str(status))
    if response is None:
        raise OpenApiMismatch(f"GET {path} answered {status}, which the OpenAPI document lacks")
    schema = response["content"]["application/json"]["schema"]
    try:
        jsonschema.validate(
            msgspec.json.decode(body),
            {"components": spec["components"], **schema},
            cls=jsonschema.Draft202012Validator,
        )
    except jsonschema.ValidationError as error:
        raise OpenApiMismatch(
            f"GET {path} {status} does not match the OpenAPI document: {error.message} "
            f"at {'/'.join(str(p) for p in error.absolute_path)}"
        ) from None
    return True


@pytest.fixture(autouse=True)
def validate_v1_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    original = aiohttp.ClientResponse.read

    async def read(self: aiohttp.ClientResponse) -> bytes:
        body = await original(self)
        if (
            self.method == "GET"
            and self.url.path.startswith("/v1/")
            and self.content_type == "application/json"
        ):
            check_answer(self.url.path, self.status, body)
        return body

    monkeypatch.setattr(aiohttp.ClientResponse, "read", read)
