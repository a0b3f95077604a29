"""The user sync (manager id → name) against local servers that answer as the four CRMs'
documented user lists do: pages, rate-limit answers, refused tokens; names land in
`staff:{tenant}` and the tenants file's `managers:` still wins when they are read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web

from handlers.enrichment.crm_rest.http import RetryPolicy
from handlers.enrichment.users import StaffStore, UserSync, UserSyncOptions, UserSyncService
from metrics.read.staff import StaffReader
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from tests.crm.support import (
    RATE_LIMITED_B24,
    RATE_LIMITED_HUBSPOT,
    Answer,
    FakeBitrix24,
    FakeCrm,
    FakeHubSpot,
)

pytestmark = pytest.mark.integration

FAST = UserSyncOptions(
    retry=RetryPolicy(max_attempts=4, first_backoff_s=0.02, max_backoff_s=0.3),
    bitrix24_rate_per_s=50.0,
    hubspot_rate_per_s=50.0,
    amocrm_rate_per_s=50.0,
    pipedrive_rate_per_s=50.0,
)
HS_TOKEN = "pat-eu1-test-token"  # noqa: S105 - test data
AMO_TOKEN = "amo-long-lived-token"  # noqa: S105 - test data
PD_TOKEN = "pd-api-token-0123"  # noqa: S105 - test data
SURNAMES = ("Коваленко", "Шевченко", "Бондаренко", "Ткаченко", "Мельник", "Кравченко")


def person(n: int) -> tuple[str, str]:
    return f"Олена{n}", SURNAMES[n % len(SURNAMES)]


class FakeBitrixUsers(FakeBitrix24):
    """user.get: 50 users a page, `next` the following page's `start` (Bitrix24 REST)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.users = [
            {
                "ID": str(n),
                "ACTIVE": True,
                "NAME": person(n)[0],
                "LAST_NAME": person(n)[1],
                "SECOND_NAME": "",
                "EMAIL": f"user{n}@example.com",
                "PERSONAL_MOBILE": "+380501234567",
            }
            for n in range(1, count + 1)
        ]

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        if method != "user.get":
            return super().default(method, params)
        start = int(params.get("start", 0))
        page: dict[str, Any] = {"result": self.users[start : start + 50], "total": len(self.users)}
        if start + 50 < len(self.users):
            page["next"] = start + 50
        return Answer(body={**page, "time": {}})


class FakeAmoCrm(FakeCrm):
    """GET /api/v4/users?page=&limit= with a bearer token; `_links.next` while more."""

    PAGE_MAX = 2  # the fake's own cap on limit, so that a few users make several pages

    def __init__(self, users: list[dict[str, Any]]) -> None:
        super().__init__()
        self.users = users

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        page, limit = int(params.get("page", 1)), min(int(params.get("limit", 50)), self.PAGE_MAX)
        rows = self.users[(page - 1) * limit : page * limit]
        if not rows:
            return Answer(204, None)
        links: dict[str, Any] = {"self": {"href": f"https://x.amocrm.ru/api/v4/users?page={page}"}}
        if page * limit < len(self.users):
            links["next"] = {"href": f"https://x.amocrm.ru/api/v4/users?page={page + 1}"}
        body = {"_total_items": len(self.users), "_page": page, "_links": links,
                "_embedded": {"users": rows}}  # fmt: skip
        return Answer(body=body)

    async def serve(self) -> str:
        async def users(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {AMO_TOKEN}":
                return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
            return await self._answer("users", dict(request.query))

        app = web.Application()
        app.router.add_get("/api/v4/users", users)
        return (await self.start(app)).rstrip("/")


class FakeHubSpotOwners(FakeHubSpot):
    """GET /crm/v3/owners?limit=&after=: `paging.next.after` while more."""

    def __init__(self, owners: list[dict[str, Any]]) -> None:
        super().__init__(HS_TOKEN)
        self.owners = owners

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        if method != "owners":
            return super().default(method, params)
        start, limit = int(params.get("after", 0)), min(int(params.get("limit", 100)), 2)
        body: dict[str, Any] = {"results": self.owners[start : start + limit]}
        if start + limit < len(self.owners):
            body["paging"] = {"next": {"after": str(start + limit), "link": "https://x/?after"}}
        return Answer(body=body)

    async def start(self, app: web.Application) -> str:
        async def owners(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
                return web.json_response({"category": "INVALID_AUTHENTICATION"}, status=401)
            return await self._answer("owners", dict(request.query))

        app.router.add_get("/crm/v3/owners", owners)
        return await super().start(app)


class FakePipedrive(FakeCrm):
    """GET /v1/users with x-api-token: every user in one answer."""

    def __init__(self, users: list[dict[str, Any]]) -> None:
        super().__init__()
        self.users = users

    def default(self, method: str, params: dict[str, Any]) -> Answer:
        return Answer(body={"success": True, "data": self.users})

    async def serve(self) -> str:
        async def users(request: web.Request) -> web.Response:
            if request.headers.get("x-api-token") != PD_TOKEN:
                return web.json_response({"success": False, "errorCode": 401}, status=401)
            return await self._answer("users", dict(request.query))

        app = web.Application()
        app.router.add_get("/v1/users", users)
        return (await self.start(app)).rstrip("/")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def keys(unique: str) -> KpiKeys:
    return KpiKeys(f"usersync-{unique}:")


async def stored_names(client: aioredis.Redis, key: str) -> dict[str, str]:
    raw = await client.hgetall(key)
    return {text(field): text(value) for field, value in raw.items()}


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def tenant(crm: dict[str, Any], **extra: Any) -> TenantConfig:
    return TenantConfig.model_validate({"crm": crm, **extra})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "B24_APP": "app-token", "HS_SECRET": "hs-secret", "HS_TOKEN": HS_TOKEN,
        "AMO_SECRET": "amo-secret", "AMO_TOKEN": AMO_TOKEN, "PD_PASSWORD": "pd-pass",
        "PD_TOKEN": PD_TOKEN,
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)


async def test_bitrix24_pages_by_start_through_a_rate_limit_answer(
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    session: aiohttp.ClientSession,
    redis_client: aioredis.Redis,
    keys: KpiKeys,
) -> None:
    fake = FakeBitrixUsers(120)
    fake.then("user.get", RATE_LIMITED_B24)
    url = await fake.serve()
    try:
        config = tenant({"bitrix24": {"application_token": {"env": "B24_APP"},
                                      "rest_url": {"env": "B24_REST"}}})  # fmt: skip
        monkeypatch.setenv("B24_REST", url)
        names = await UserSync(session, StaffStore(redis_client, keys), FAST).sync("b", config)
    finally:
        await fake.close()
    assert len(names) == 120
    assert names["1"] == "Олена1 Шевченко"
    assert names["120"] == "Олена120 Коваленко"
    # The rate-limited first call was repeated, then pages at start 50 and 100.
    assert [call.params.get("start", 0) for call in fake.calls_to("user.get")] == [0, 0, 50, 100]
    stored = await stored_names(redis_client, keys.staff("b"))
    assert stored["7"] == "Олена7 Шевченко"
    assert not any("@" in value or "+380" in value for value in stored.values())


async def test_amocrm_pages_by_number_while_next_is_linked_after_a_429(
    env: None, session: aiohttp.ClientSession, redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    users = [{"id": 100 + n, "name": f"Іван Петренко {n}", "email": f"i{n}@x.ua"} for n in range(5)]
    fake = FakeAmoCrm(users)
    fake.then("users", Answer(429, {"title": "Too Many Requests", "status": 429}))
    base = await fake.serve()
    try:
        amocrm = {"url_secret": {"env": "AMO_SECRET"}, "account_id": 29013640,
                  "access_token": {"env": "AMO_TOKEN"}, "api_base": base}  # fmt: skip
        config = tenant({"amocrm": amocrm})
        names = await UserSync(session, StaffStore(redis_client, keys), FAST).sync("a", config)
    finally:
        await fake.close()
    assert names == {str(100 + n): f"Іван Петренко {n}" for n in range(5)}
    assert [call.params["page"] for call in fake.calls_to("users")] == ["1", "1", "2", "3"]


async def test_hubspot_owners_follow_the_after_cursor_through_a_429(
    env: None, session: aiohttp.ClientSession, redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    owners = [
        {"id": "41629779", "email": "a@x.com", "firstName": "Anna", "lastName": "Smith"},
        {"id": "41629780", "email": "b@x.com", "firstName": "Bohdan", "lastName": ""},
        {"id": "41629781", "email": "c@x.com", "firstName": "", "lastName": ""},
    ]
    fake = FakeHubSpotOwners(owners)
    fake.then("owners", RATE_LIMITED_HUBSPOT)
    base = await fake.serve()
    try:
        hubspot = {"client_secret": {"env": "HS_SECRET"},
                   "access_token": {"env": "HS_TOKEN"}, "api_base": base}  # fmt: skip
        config = tenant({"hubspot": hubspot})
        names = await UserSync(session, StaffStore(redis_client, keys), FAST).sync("h", config)
    finally:
        await fake.close()
    # An owner without a name keeps showing as its id (no e-mail in its place).
    assert names == {"41629779": "Anna Smith", "41629780": "Bohdan"}
    assert [call.params.get("after") for call in fake.calls_to("owners")] == [None, None, "2"]


async def test_pipedrive_users_and_a_refused_crm_keeps_the_names_it_had(
    env: None, session: aiohttp.ClientSession, redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    fake = FakePipedrive([{"id": 1, "name": "Марія Іваненко", "active_flag": True},
                          {"id": 2, "name": "Ганна Литвиненко", "active_flag": False}])  # fmt: skip
    fake.then("users", Answer(429, {"success": False, "error": "Rate limit"}, {"Retry-After": "0"}))
    amo = FakeAmoCrm([])
    base, amo_base = await fake.serve(), await amo.serve()
    await redis_client.hset(keys.staff("p"), mapping={"77": "Kept From Before"})
    pipedrive = {"username": "u", "password": {"env": "PD_PASSWORD"},
                 "api_token": {"env": "PD_TOKEN"}, "api_base": base}  # fmt: skip
    try:
        config = tenant({
            "pipedrive": pipedrive,
            "amocrm": {"url_secret": {"env": "AMO_SECRET"}, "account_id": 1,
                       "access_token": {"env": "PD_TOKEN"}, "api_base": amo_base},  # refused
        })  # fmt: skip
        sync = UserSync(session, StaffStore(redis_client, keys), FAST)
        assert await sync.sync("p", config) == {"1": "Марія Іваненко", "2": "Ганна Литвиненко"}
        assert await stored_names(redis_client, keys.staff("p")) == {
            "1": "Марія Іваненко",
            "2": "Ганна Литвиненко",
            "77": "Kept From Before",
        }
        # Once every CRM answers, the list is replaced whole: a deleted user goes.
        await sync.sync("p", tenant({"pipedrive": pipedrive}))
        assert set(await redis_client.hkeys(keys.staff("p"))) == {b"1", b"2"}
    finally:
        await fake.close()
        await amo.close()
    assert len(fake.calls_to("users")) == 3  # the 429, then the answer, then the second sync


async def test_the_tenants_file_wins_over_the_crm_when_names_are_read(
    redis_url: str, redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    await StaffStore(redis_client, keys).save("t", {"7": "Olena K.", "9": "Петро"}, complete=True)
    config = {"managers": {"7": "Олена Коваленко"}, "wall": {"names": {"9": "P.", "11": "Ivan"}}}
    tenants = TenantDirectory(TenantsFile.model_validate({"tenants": {"t": config}}))
    reader = StaffReader(redis.Redis.from_url(redis_url), keys, tenants)
    assert reader.names("t") == {"7": "Олена Коваленко", "9": "Петро", "11": "Ivan"}


async def test_the_worker_service_syncs_every_tenant_at_its_start(
    env: None, redis_client: aioredis.Redis, keys: KpiKeys
) -> None:
    fake = FakePipedrive([{"id": 5, "name": "Богдан Мельник", "active_flag": True}])
    base = await fake.serve()
    pipedrive = {"username": "u", "password": {"env": "PD_PASSWORD"},
                 "api_token": {"env": "PD_TOKEN"}, "api_base": base}  # fmt: skip
    tenants = TenantDirectory(
        TenantsFile.model_validate({"tenants": {"kyiv": {"crm": {"pipedrive": pipedrive}}}})
    )
    service = UserSyncService(tenants, redis_client, keys, FAST)
    await service.start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await redis_client.hexists(keys.staff("kyiv"), "5"):
            assert asyncio.get_running_loop().time() < deadline, "no sync within 30 s"
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
        await fake.close()
    assert await stored_names(redis_client, keys.staff("kyiv")) == {"5": "Богдан Мельник"}
    assert len(fake.calls_to("users")) == 1  # then it waits for the interval (an hour)
