"""Reading a tenant takes its token: /v1/kpis, /v1/waiting and /metrics against the real
Redis, and a JSON 503 while that Redis is down."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from metrics.api.kpis import kpi_routes
from metrics.api.read_access import ReadAccess
from metrics.api.waiting import waiting_routes
from metrics.collectors.kpi import KpiCollector
from metrics.exposition import metrics_routes
from metrics.read.kpi_reader import KpiReader
from salespulse.app.embedded import start_redis
from salespulse.core.access import TokenTable
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration

OPERATOR = "operator-read-token-0123"
ACME = "acme-grafana-read-token"
GLOBEX = "globex-reports-token-012"
TENANTS_YAML = """
tenants:
  acme: {tokens: {read: {grafana: {token_sha256: ACME_SHA}}}}
  globex: {tokens: {read: {reports: {token_sha256: GLOBEX_SHA}}}}
"""
Client = TestClient[web.Request, web.Application]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tenants(tmp_path: Path) -> TenantDirectory:
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS_YAML.replace("ACME_SHA", sha(ACME)).replace("GLOBEX_SHA", sha(GLOBEX)))
    return Settings(tenants_file=path).tenant_directory()


def read_app(reader: KpiReader, tenants: TenantDirectory, operator: str | None) -> web.Application:
    access = ReadAccess(TokenTable.of("read", tenants, operator))
    app = web.Application()
    app.add_routes(kpi_routes(reader, tenants, access))
    app.add_routes(waiting_routes(reader.waiting_reader(), tenants, reader.tenants, access))
    return app


@pytest.fixture
async def client(
    settings: Settings, redis_url: str, tenants: TenantDirectory, redis_client: aioredis.Redis
) -> AsyncIterator[Client]:
    keys = KpiKeys(settings.redis_key_prefix)
    sink = RedisKpiSink(redis_client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=3600)
    calls = [make_event("a-1"), make_event("a-2"), make_event("g-1", tenant="globex")]
    # A tenant with data in Redis that the tenants file does not list.
    calls.append(make_event("s-1", tenant="stray"))
    await KpiApplier(sink, tenants, keys).apply(calls, {})
    reader = KpiReader(redis.Redis.from_url(redis_url), keys, tenants)
    async with TestClient(TestServer(read_app(reader, tenants, OPERATOR))) as test_client:
        yield test_client


async def kpis(client: Client, tenant: str, headers: dict[str, str]) -> tuple[int, object]:
    response = await client.get(
        "/v1/kpis", params={"tenant": tenant, "window": "all"}, headers=headers
    )
    return response.status, await response.json()


async def test_a_tenants_token_reads_that_tenant_and_nothing_else(client: Client) -> None:
    status, body = await kpis(client, "acme", bearer(ACME))
    assert status == 200
    assert isinstance(body, dict)
    assert body["total"]["calls"] == 2
    status, body = await kpis(client, "globex", bearer(GLOBEX))
    assert (status, body["total"]["calls"]) == (200, 1)  # type: ignore[index]
    response = await client.get("/v1/waiting", params={"tenant": "acme"}, headers=bearer(ACME))
    assert response.status == 200
    assert (await response.json())["tenant"] == "acme"


async def test_unknown_tenant_and_wrong_token_get_one_and_the_same_401(client: Client) -> None:
    refused = [
        ("acme", {}),  # no token
        ("acme", bearer(ACME + "x")),
        ("acme", bearer(GLOBEX)),  # another tenant's token
        ("acme", {"Authorization": ACME}),  # not a bearer
        ("nosuch", {}),
        ("nosuch", bearer(ACME)),  # a valid token, a tenant that does not exist
        ("stray", bearer(ACME)),  # data in Redis, but not this token's tenant
    ]
    answers = []
    for tenant, headers in refused:
        for path in ("/v1/kpis", "/v1/waiting"):
            response = await client.get(path, params={"tenant": tenant}, headers=headers)
            answers.append(
                (response.status, await response.read(), response.headers["WWW-Authenticate"])
            )
    assert {status for status, _, _ in answers} == {401}
    assert len(set(answers)) == 1, "the answer must not tell an unknown tenant from a bad token"
    body, challenge = answers[0][1:]
    assert b'"error":"unauthorized"' in body
    assert challenge == 'Bearer realm="salespulse"'


async def test_the_operators_token_reads_every_tenant(client: Client) -> None:
    assert (await kpis(client, "acme", bearer(OPERATOR)))[0] == 200
    status, body = await kpis(client, "stray", bearer(OPERATOR))
    assert (status, body["total"]["calls"]) == (200, 1)  # type: ignore[index]
    # Whoever may read every tenant may also learn which exist.
    assert (await kpis(client, "nosuch", bearer(OPERATOR)))[0] == 404
    # The token in the URL opens nothing: it would end up in logs and browser history.
    response = await client.get("/v1/kpis", params={"tenant": "acme", "token": OPERATOR})
    assert response.status == 401


async def test_a_bad_query_is_still_400_naming_the_parameter(client: Client) -> None:
    response = await client.get(
        "/v1/kpis", params={"tenant": "acme", "window": "year"}, headers=bearer(ACME)
    )
    assert response.status == 400
    assert (await response.json())["problems"][0]["field"] == "window"


async def test_while_redis_is_down_the_read_apis_answer_a_json_503_then_recover(
    settings: Settings, tenants: TenantDirectory, tmp_path: Path
) -> None:
    keys = KpiKeys(settings.redis_key_prefix)
    store = start_redis(tmp_path / "redis")
    port = store.port
    reader = KpiReader(redis.Redis(port=port, socket_timeout=5), keys, tenants)
    paths = ("/v1/kpis", "/v1/waiting")
    auth = bearer(OPERATOR)
    try:
        async with TestClient(TestServer(read_app(reader, tenants, OPERATOR))) as client:
            for path in paths:
                response = await client.get(path, params={"tenant": "acme"}, headers=auth)
                assert response.status == 200, path
            store.stop()
            for tenant in ("acme", "stray"):  # listed in the file, or looked up in Redis
                for path in paths:
                    response = await client.get(path, params={"tenant": tenant}, headers=auth)
                    assert response.status == 503, (path, tenant)
                    assert response.content_type == "application/json"
                    assert (await response.json())["error"] == "kpi_store_unavailable"
                    assert response.headers["Retry-After"] == "5"
            store = start_redis(tmp_path / "redis", port=port)
            for path in paths:
                response = await client.get(path, params={"tenant": "acme"}, headers=auth)
                assert response.status == 200, path
    finally:
        store.stop()


@pytest.fixture
async def scrape_client(
    settings: Settings, redis_url: str, tenants: TenantDirectory
) -> AsyncIterator[Client]:
    registry = CollectorRegistry(auto_describe=False)
    reader = KpiReader(redis.Redis.from_url(redis_url), KpiKeys(settings.redis_key_prefix), tenants)
    registry.register(KpiCollector(reader, tenants))
    app = web.Application()
    app.add_routes(metrics_routes(registry, token=OPERATOR, basic=("prometheus", GLOBEX)))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_metrics_asks_for_its_bearer_token_or_basic_auth(scrape_client: Client) -> None:
    for headers in (bearer(OPERATOR), basic("prometheus", GLOBEX)):
        response = await scrape_client.get("/metrics", headers=headers)
        assert response.status == 200, headers
        assert "salespulse_kpi_store_up 1.0" in await response.text()
    refused = [
        {},
        bearer(OPERATOR + "x"),
        basic("prometheus", OPERATOR),
        basic("grafana", GLOBEX),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": OPERATOR},
    ]
    for headers in refused:
        response = await scrape_client.get("/metrics", headers=headers)
        assert response.status == 401, headers
        assert (await response.json())["error"] == "unauthorized"
        assert "salespulse_" not in await response.text()
