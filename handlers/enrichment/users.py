"""Who the managers are: each tenant's CRM users (id → display name), fetched at the
worker's start and every ``SALESPULSE_USER_SYNC_INTERVAL_S``, kept in `staff:{tenant}`.

The ids are the ones the events carry as ``manager_id`` (Bitrix24 ASSIGNED_BY_ID, amoCRM
responsible_user_id, HubSpot hubspot_owner_id, Pipedrive owner_id), so the wall, the API
and Grafana can put a name beside them. Only a user's name is kept: no e-mail, phone or
anything of a client. Each CRM's list is read page by page through the same paced,
retried REST clients as the enrichment:

- Bitrix24 ``user.get``: 50 a page, ``start`` = the previous answer's ``next``;
- amoCRM ``GET /api/v4/users?page=N&limit=250``: the next page while ``_links.next``;
- HubSpot ``GET /crm/v3/owners?limit=100&after=…``: ``paging.next.after``;
- Pipedrive ``GET /v1/users``: everyone at once (``additional_data.pagination`` if given).

A CRM that fails (after its retries) is logged and leaves its names as they were.

The sync paces itself with its own limiters at the enrichment's rates: a few calls an hour
per portal (one per 50 to 250 users) beside the enrichment's stream of them, and a
rate-limit answer caused by the two together is retried like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from mode import Service
from redis.exceptions import RedisError

from handlers.crm.sources import reveal
from handlers.enrichment.crm_rest.bitrix24 import Bitrix24Client
from handlers.enrichment.crm_rest.http import RateLimiter, RestClient, RestError, RetryPolicy
from handlers.enrichment.crm_rest.hubspot import HubSpotClient
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFileError

logger = logging.getLogger(__name__)

Names = dict[str, str]
# A bound on pages per list (10,000+ users at the smallest page size): a CRM that keeps
# answering "next" cannot keep the sync busy for ever.
MAX_PAGES = 200
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class UserSyncOptions:
    interval_s: float = 3600.0
    http_timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bitrix24_rate_per_s: float = 2.0
    hubspot_rate_per_s: float = 10.0
    amocrm_rate_per_s: float = 5.0
    pipedrive_rate_per_s: float = 5.0


def user_name(*parts: object) -> str | None:
    """The non-empty text parts joined by a space, trimmed and bounded; None if nothing is
    left (a missing field is null or absent in these APIs, never a name)."""
    words = [" ".join(part.split()) for part in parts if isinstance(part, str)]
    name = " ".join(word for word in words if word)
    return name[:MAX_NAME_CHARS] if name else None


def _add(names: Names, user_id: object, name: str | None) -> None:
    if isinstance(user_id, str | int) and not isinstance(user_id, bool) and str(user_id) and name:
        names[str(user_id)] = name


def bitrix24_names(rows: list[Any], names: Names) -> None:
    """user.get rows: {"ID": "1", "NAME": "Олена", "LAST_NAME": "Коваленко", ...}."""
    for row in rows:
        if isinstance(row, dict):
            _add(names, row.get("ID"), user_name(row.get("NAME"), row.get("LAST_NAME")))


def amocrm_names(body: Any, names: Names) -> bool:
    """One /api/v4/users page into ``names``; True if the answer links a next page."""
    if not isinstance(body, dict):
        return False
    embedded = body.get("_embedded")
    users = embedded.get("users") if isinstance(embedded, dict) else None
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict):
            _add(names, user.get("id"), user_name(user.get("name")))
    links = body.get("_links")
    return isinstance(links, dict) and isinstance(links.get("next"), dict)


def hubspot_names(body: Any, names: Names) -> str | None:
    """One /crm/v3/owners page into ``names``; the next page's ``after`` cursor, if any."""
    if not isinstance(body, dict):
        return None
    results = body.get("results")
    for owner in results if isinstance(results, list) else []:
        if isinstance(owner, dict):
            name = user_name(owner.get("firstName"), owner.get("lastName"))
            _add(names, owner.get("id"), name)
    paging = body.get("paging")
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    return str(after) if isinstance(after, str | int) and str(after) else None


def pipedrive_names(body: Any, names: Names) -> int | None:
    """One /v1/users answer into ``names``; the next ``start`` if more are announced."""
    if not isinstance(body, dict):
        return None
    data = body.get("data")
    for user in data if isinstance(data, list) else []:
        if isinstance(user, dict):
            _add(names, user.get("id"), user_name(user.get("name")))
    extra = body.get("additional_data")
    pagination = extra.get("pagination") if isinstance(extra, dict) else None
    if isinstance(pagination, dict) and pagination.get("more_items_in_collection") is True:
        following = pagination.get("next_start")
        return following if isinstance(following, int) else None
    return None


class StaffStore:
    """`staff:{tenant}`: replaced whole when every CRM answered, else only added to."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys) -> None:
        self._client = client
        self._keys = keys

    async def save(self, tenant: str, names: Names, *, complete: bool) -> None:
        key = self._keys.staff(tenant)
        async with self._client.pipeline(transaction=True) as pipe:
            if complete:
                pipe.delete(key)  # a user deleted in the CRM goes too
            for manager, name in names.items():
                pipe.hset(key, manager, name)
            await pipe.execute()


class UserSync:
    """Fetches every configured CRM's users of a tenant and stores their names."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        store: StaffStore,
        options: UserSyncOptions,
        on_call: Callable[[str, str], None] = lambda crm, outcome: None,
    ) -> None:
        def pace(rate: float) -> RateLimiter:
            return RateLimiter(rate, max(1, int(rate)))

        common: dict[str, Any] = {"retry": options.retry, "timeout_s": options.http_timeout_s}
        self._store = store
        self.bitrix24 = Bitrix24Client(
            session,
            limiter=pace(options.bitrix24_rate_per_s),
            dictionary_ttl_s=1.0,  # no dictionaries here
            on_call=lambda outcome: on_call("bitrix24", outcome),
            **common,
        )
        self.hubspot = HubSpotClient(
            session,
            limiter=pace(options.hubspot_rate_per_s),
            dictionary_ttl_s=1.0,
            on_call=lambda outcome: on_call("hubspot", outcome),
            **common,
        )
        self.amocrm = RestClient(
            session,
            limiter=pace(options.amocrm_rate_per_s),
            on_call=lambda outcome: on_call("amocrm", outcome),
            **common,
        )
        self.pipedrive = RestClient(
            session,
            limiter=pace(options.pipedrive_rate_per_s),
            on_call=lambda outcome: on_call("pipedrive", outcome),
            **common,
        )

    async def sync(self, tenant: str, config: TenantConfig) -> Names:
        """Every configured CRM of the tenant; stores and returns the names fetched."""
        fetchers = self._fetchers(config)
        if not fetchers:
            return {}
        names: Names = {}
        complete = True
        for crm, fetch in fetchers.items():
            try:
                names.update(await fetch())
            except (RestError, TenantsFileError) as exc:
                # The class and reason only: a message could name a URL with a key in it.
                complete = False
                logger.warning(
                    "user sync: %s of tenant %s failed (%s, %s); its names stay as they were",
                    crm, tenant, type(exc).__name__, getattr(exc, "reason", "secret"),
                )  # fmt: skip
        await self._store.save(tenant, names, complete=complete)
        return names

    def _fetchers(self, config: TenantConfig) -> dict[str, Callable[[], Awaitable[Names]]]:
        crm = config.crm
        fetchers: dict[str, Callable[[], Awaitable[Names]]] = {}
        b24 = crm.bitrix24
        if b24 is not None and b24.rest_url is not None:
            portal = b24.member_id or b24.domain or "bitrix24"
            rest_url = b24.rest_url
            fetchers["bitrix24"] = lambda: self._bitrix24(reveal(rest_url), portal)
        if crm.amocrm is not None and crm.amocrm.access_token and crm.amocrm.api_base:
            amo, base, token = crm.amocrm, crm.amocrm.api_base, crm.amocrm.access_token
            fetchers["amocrm"] = lambda: self._amocrm(base, reveal(token), str(amo.account_id))
        if crm.hubspot is not None and crm.hubspot.access_token is not None:
            hub, hub_token = crm.hubspot, crm.hubspot.access_token
            portal_id = str(hub.portal_id or "hubspot")
            fetchers["hubspot"] = lambda: self._hubspot(hub.api_base, reveal(hub_token), portal_id)
        if crm.pipedrive is not None and crm.pipedrive.api_token is not None:
            pd, pd_token = crm.pipedrive, crm.pipedrive.api_token
            company = str(pd.company_id or "pipedrive")
            fetchers["pipedrive"] = lambda: self._pipedrive(pd.api_base, reveal(pd_token), company)
        return fetchers

    async def _bitrix24(self, rest_url: str, portal: str) -> Names:
        names: Names = {}
        start = 0
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"start": start} if start else {}
            body = await self.bitrix24.call(rest_url, portal, "user.get", params, whole=True)
            rows = body.get("result") if isinstance(body, dict) else None
            bitrix24_names(rows if isinstance(rows, list) else [], names)
            following = body.get("next") if isinstance(body, dict) else None
            if not isinstance(following, int) or following <= start:
                break
            start = following
        return names

    async def _amocrm(self, api_base: str, token: str, portal: str) -> Names:
        names: Names = {}
        url = f"{api_base.rstrip('/')}/api/v4/users"
        # Pages by number, not by following _links.next: an href could lead the token
        # to another host.
        for page in range(1, MAX_PAGES + 1):
            body = await self.amocrm.json_get(
                url,
                portal,
                headers={"Authorization": f"Bearer {token}"},
                params={"page": str(page), "limit": "250"},
                what="amocrm GET /api/v4/users",
            )
            if not amocrm_names(body, names):
                break
        return names

    async def _hubspot(self, api_base: str, token: str, portal: str) -> Names:
        names: Names = {}
        after: str | None = None
        for _ in range(MAX_PAGES):
            params = {"limit": "100", **({"after": after} if after else {})}
            body = await self.hubspot.get(api_base, token, portal, "/crm/v3/owners", params)
            after = hubspot_names(body, names)
            if after is None:
                break
        return names

    async def _pipedrive(self, api_base: str, token: str, portal: str) -> Names:
        names: Names = {}
        url = f"{api_base.rstrip('/')}/v1/users"
        start = 0
        for _ in range(MAX_PAGES):
            body = await self.pipedrive.json_get(
                url,
                portal,
                headers={"x-api-token": token},
                params={"start": str(start)} if start else {},
                what="pipedrive GET /v1/users",
            )
            following = pipedrive_names(body, names)
            if following is None or following <= start:
                break
            start = following
        return names


class UserSyncService(Service):
    """The worker's periodic sync of every tenant in the tenants file."""

    def __init__(
        self,
        tenants: TenantDirectory,
        redis_client: aioredis.Redis,
        keys: KpiKeys,
        options: UserSyncOptions,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._tenants = tenants
        self._store = StaffStore(redis_client, keys)
        self._options = options

    async def on_started(self) -> None:
        self.add_future(self._sync_forever())

    async def _sync_forever(self) -> None:
        async with aiohttp.ClientSession() as session:
            sync = UserSync(session, self._store, self._options)
            while not self.should_stop:
                await self.sync_all(sync)
                await self.sleep(self._options.interval_s)

    async def sync_all(self, sync: UserSync) -> None:
        for tenant in self._tenants.names():
            try:
                await sync.sync(tenant, self._tenants.get(tenant))
            except (RedisError, OSError) as exc:
                logger.warning("user sync: tenant %s not stored: %r", tenant, exc)


def build_user_sync(
    settings: Settings, tenants: TenantDirectory, redis_client: aioredis.Redis
) -> UserSyncService:
    options = UserSyncOptions(
        interval_s=settings.user_sync_interval_s,
        http_timeout_s=settings.enrichment_http_timeout_s,
        retry=RetryPolicy.of(settings),
        bitrix24_rate_per_s=settings.bitrix24_rate_per_s,
        hubspot_rate_per_s=settings.hubspot_rate_per_s,
        amocrm_rate_per_s=settings.amocrm_rate_per_s,
        pipedrive_rate_per_s=settings.pipedrive_rate_per_s,
    )
    return UserSyncService(tenants, redis_client, settings.kpi_keys(), options)
