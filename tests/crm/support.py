"""Fixture payloads, tenants, and local HTTP servers that speak Bitrix24's and HubSpot's
documented REST protocols (answers, errors, rate limits and slowness are scripted)."""

from __future__ import annotations

import asyncio
import copy
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from salespulse.core.tenants import TenantDirectory, TenantsFile

PAYLOADS = Path(__file__).parent / "payloads"
# The token in the bitrix24_*.form payloads (invented, as in CRM-WEBHOOKS.md).
B24_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"  # noqa: S105 - test data
B24_MEMBER = "d897063e1ce7c5eb9f04b9751eef5915"
AMO_ACCOUNT = 29013640
HUBSPOT_PORTAL = 48975575
SECRET_ENV = {
    "ACME_B24_TOKEN": B24_TOKEN,
    "ACME_AMO_SECRET": "amo-url-secret-0f9e8d7c",
    "ACME_HUBSPOT_SECRET": "hs-client-secret-1a2b3c",
    "ACME_HUBSPOT_TOKEN": "pat-eu1-test-token",
    "ACME_PIPEDRIVE_PASSWORD": "pd-pass-9z8y",
}


def payload(name: str) -> bytes:
    """A fixture body exactly as on the wire (files end with a newline for editors)."""
    return (PAYLOADS / name).read_bytes().rstrip(b"\n")


def payload_json(name: str) -> Any:
    return msgspec.json.decode(payload(name))


def tenants(
    *,
    b24_rest: bool = False,
    hubspot_api: str = "https://api.hubapi.com",
    **extra: Any,
) -> TenantDirectory:
    """Tenant `acme` with all four CRMs; secrets by environment variable (see SECRET_ENV;
    ``b24_rest``: the REST URL too, from ACME_B24_REST)."""
    bitrix24: dict[str, Any] = {
        "application_token": {"env": "ACME_B24_TOKEN"},
        "member_id": B24_MEMBER,
        "pipeline_map": {"1": "sales"},
        "stage_map": {"C1:WON": "won"},
    }
    if b24_rest:
        bitrix24["rest_url"] = {"env": "ACME_B24_REST"}
    config: dict[str, Any] = {
        "timezone": "Europe/Moscow",
        "currency": "RUB",
        "crm": {
            "bitrix24": bitrix24,
            "amocrm": {
                "url_secret": {"env": "ACME_AMO_SECRET"},
                "account_id": AMO_ACCOUNT,
                "pipeline_map": {"5389528": "sales"},
            },
            "hubspot": {
                "client_secret": {"env": "ACME_HUBSPOT_SECRET"},
                "access_token": {"env": "ACME_HUBSPOT_TOKEN"},
                "api_base": hubspot_api,
                "portal_id": HUBSPOT_PORTAL,
            },
            "pipedrive": {
                "username": "salespulse",
                "password": {"env": "ACME_PIPEDRIVE_PASSWORD"},
                "company_id": 13923453,
            },
        },
        **extra,
    }
    return TenantDirectory(TenantsFile.model_validate({"tenants": {"acme": config}}))


@dataclass
class Answer:
    """One scripted answer: status, JSON body, extra headers, and a delay before it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float


class FakeCrm(ABC):
    """Scripted answers per method first, then the default handler; every call recorded."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: dict[str, deque[Answer]] = {}
        self.server: TestServer | None = None

    def then(self, method: str, *answers: Answer) -> None:
        self.script.setdefault(method, deque()).extend(answers)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def _answer(self, method: str, params: dict[str, Any]) -> web.Response:
        self.calls.append(Call(method, params, time.monotonic()))
        queued = self.script.get(method)
        answer = queued.popleft() if queued else self.default(method, params)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return web.Response(
            status=answer.status,
            body=msgspec.json.encode(answer.body),
            content_type="application/json",
            headers=answer.headers,
        )

    @abstractmethod
    def default(self, method: str, params: dict[str, Any]) -> Answer:
        """The answer to a call that no test scripted."""

    async def start(self, app: web.Application) -> str:
        self.server = TestServer(app)
        await self.server.start_server()
        return str(self.server.make_url("/"))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


class FakeBitrix24(FakeCrm):
    """POST /rest/<user>/<key>/<method> with a JSON body, as an inbound webhook URL takes."""

    KEY = "/rest/1/x7k2p9q4w1e8r5t3/"

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.dictionaries: dict[str, list[dict[str, Any]]] = {}

    def add(self, method: str, record: dict[str, Any]) -> None:
        self.records[(method, str(record["ID"]))] = copy.deepcopy(record)

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        if method == "crm.status.list":
            entity = params.get("filter", {}).get("ENTITY_ID")
            rows = self.dictionaries.get(entity, [])
            return Answer(body={"result": rows, "total": len(rows), "time": {}})
        record = self.records.get((method, str(params.get("id", params.get("ID")))))
        if record is None:
            return Answer(400, {"error": "", "error_description": "Not found"})
        return Answer(body={"result": record, "time": {}})

    async def serve(self) -> str:
        app = web.Application()

        async def handle(request: web.Request) -> web.Response:
            if request.match_info["key"] != self.KEY.split("/")[3]:
                return web.json_response(
                    {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"},
                    status=401,
                )
            params = await request.json() if request.can_read_body else {}
            return await self._answer(request.match_info["method"], params)

        app.router.add_post("/rest/1/{key}/{method}", handle)
        base = await self.start(app)
        return base.rstrip("/") + self.KEY


class FakeHubSpot(FakeCrm):
    """GET /crm/v3/objects/deals/{id} and GET /crm/v3/pipelines/deals, bearer token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.deals: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, Any] = {"results": []}

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        if method == "pipelines":
            return Answer(body=self.pipelines)
        deal = self.deals.get(params["id"])
        if deal is None:
            return Answer(
                404,
                {
                    "status": "error",
                    "message": "Object not found.  objectId are usually numeric.",
                    "correlationId": "a1b2c3d4-0000-4000-8000-000000000000",
                    "category": "OBJECT_NOT_FOUND",
                },
            )
        return Answer(body=deal)

    async def serve(self) -> str:
        app = web.Application()

        def authorised(request: web.Request) -> bool:
            return request.headers.get("Authorization") == f"Bearer {self.token}"

        unauthorised = {
            "status": "error",
            "message": "Authentication credentials not found.",
            "category": "INVALID_AUTHENTICATION",
        }

        async def deal(request: web.Request) -> web.Response:
            if not authorised(request):
                return web.json_response(unauthorised, status=401)
            params = {"id": request.match_info["id"], **request.query}
            return await self._answer("deal", params)

        async def pipelines(request: web.Request) -> web.Response:
            if not authorised(request):
                return web.json_response(unauthorised, status=401)
            return await self._answer("pipelines", {})

        app.router.add_get("/crm/v3/objects/deals/{id}", deal)
        app.router.add_get("/crm/v3/pipelines/deals", pipelines)
        return (await self.start(app)).rstrip("/")


RATE_LIMITED_B24 = Answer(
    503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
)
RATE_LIMITED_HUBSPOT = Answer(
    429,
    {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "SECONDLY",
        "groupName": "publicapi:oauth:12345:48975575",
    },
    headers={"Retry-After": "1"},
)
