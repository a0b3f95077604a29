"""HubSpot CRM API v3: one deal (GET /crm/v3/objects/deals/{id}) and the deal pipelines
(GET /crm/v3/pipelines/deals, cached), with a bearer token.

Paced per portal; 429 (Retry-After honoured), 5xx and timeouts are retried with backoff;
404 is a deleted deal, 401/403 refused credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from handlers.crm.hubspot import DEAL_PROPERTIES, stage_kinds
from handlers.enrichment.crm_rest.http import (
    MISSING_STAGE_REFRESH_S,
    PermanentRestError,
    RateLimiter,
    RestClient,
    RetryPolicy,
    TtlCache,
)
from salespulse.core.events import StageKind

Pipelines = dict[str, dict[str, StageKind]]


class HubSpotClient(RestClient):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        limiter: RateLimiter,
        retry: RetryPolicy,
        timeout_s: float,
        dictionary_ttl_s: float,
        on_call: Callable[[str], None] = lambda outcome: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            session, limiter=limiter, retry=retry, timeout_s=timeout_s, on_call=on_call
        )
        self._pipelines: TtlCache[str, Pipelines] = TtlCache(dictionary_ttl_s, clock=clock)

    async def deal(self, api_base: str, token: str, portal: str, deal_id: str) -> Mapping[str, Any]:
        path = f"/crm/v3/objects/deals/{deal_id}"
        body = await self.get(
            api_base, token, portal, path, {"properties": ",".join(DEAL_PROPERTIES)}
        )
        if not isinstance(body, dict):
            raise PermanentRestError("the deal answer is not an object", reason="rest_rejected")
        return body

    async def pipelines(
        self, api_base: str, token: str, portal: str, *, must_know: str | None = None
    ) -> Pipelines:
        """Pipeline → stage → kind, cached; refetched once if ``must_know`` is a stage the
        cached copy lacks and the copy is older than a minute."""
        kinds = self._pipelines.get(portal)
        age = self._pipelines.age(portal)
        missing = (
            must_know is not None
            and kinds is not None
            and not any(must_know in stages for stages in kinds.values())
        )
        if kinds is None or (missing and age is not None and age > MISSING_STAGE_REFRESH_S):
            body = await self.get(api_base, token, portal, "/crm/v3/pipelines/deals", {})
            kinds = stage_kinds(body if isinstance(body, dict) else {})
            self._pipelines.put(portal, kinds)
        return kinds

    async def get(
        self, api_base: str, token: str, portal: str, path: str, params: dict[str, str]
    ) -> Any:
        return await self.json_get(
            f"{api_base.rstrip('/')}{path}",
            portal,
            headers={"Authorization": f"Bearer {token}"},
            params=params,
            # The path only: a URL in a message may hold a secret.
            what=f"hubspot GET {path}",
            not_found="record_not_found",
            detail=_category,
        )


def _category(raw: bytes) -> str:
    """HubSpot errors: {"status": "error", "category": "OBJECT_NOT_FOUND", ...}."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ""
    return (
        str(body.get("category") or body.get("errorType") or "") if isinstance(body, dict) else ""
    )
