"""Bitrix24 REST through an inbound webhook URL (https://<portal>/rest/<user>/<key>/).

Calls are paced per portal (Bitrix24 allows about 2 requests/s), transient failures
(5xx, timeouts, QUERY_LIMIT_EXCEEDED) are retried with backoff, and stage dictionaries
(crm.status.list) are cached. Errors come as ``{"error": CODE, "error_description": ...}``;
a missing record is HTTP 400 with an empty code and "Not found".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import msgspec

from handlers.crm.bitrix24_records import stage_dictionary, stage_kinds
from handlers.enrichment.crm_rest.http import (
    MISSING_STAGE_REFRESH_S,
    PermanentRestError,
    RateLimiter,
    RestClient,
    RetryPolicy,
    TransientRestError,
    TtlCache,
    with_retries,
)
from salespulse.core.events import StageKind

GET_METHOD = {"deal": "crm.deal.get", "lead": "crm.lead.get", "activity": "crm.activity.get"}
_AUTH_ERRORS = frozenset(
    {
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "ACCESS_DENIED",
        "expired_token",
        "invalid_token",
        "insufficient_scope",
        "WRONG_AUTH_TYPE",
    }
)
_LIMIT_ERRORS = frozenset({"QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"})
# A stage dictionary has a few dozen entries; crm.status.list pages by 50.
_MAX_PAGES = 20


class Bitrix24Client(RestClient):
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
        self._stages: TtlCache[tuple[str, str], dict[str, StageKind]] = TtlCache(
            dictionary_ttl_s, clock=clock
        )

    async def record(
        self, rest_url: str, portal: str, entity: str, record_id: str
    ) -> Mapping[str, Any]:
        """crm.deal.get / crm.lead.get / crm.activity.get."""
        result = await self.call(rest_url, portal, GET_METHOD[entity], {"id": int(record_id)})
        if not isinstance(result, dict):
            raise PermanentRestError(
                f"{GET_METHOD[entity]} returned no record", reason="rest_rejected"
            )
        return result

    async def stage_kinds(
        self, rest_url: str, portal: str, category_id: str, *, must_know: str | None = None
    ) -> dict[str, StageKind]:
        """Stage → kind of one deal funnel, cached; refetched once if ``must_know`` is a stage
        the cached copy lacks (a stage made since) and the copy is older than a minute."""
        key = (portal, category_id)
        kinds = self._stages.get(key)
        age = self._stages.age(key)
        stale = must_know is not None and kinds is not None and must_know not in kinds
        if kinds is None or (stale and age is not None and age > MISSING_STAGE_REFRESH_S):
            rows: list[Mapping[str, Any]] = []
            start: int | None = 0
            for _ in range(_MAX_PAGES):
                params: dict[str, Any] = {
                    "filter": {"ENTITY_ID": stage_dictionary(category_id)},
                    "order": {"SORT": "ASC"},
                }
                if start:
                    params["start"] = start
                page, start = await self._page(rest_url, portal, "crm.status.list", params)
                rows += [row for row in page if isinstance(row, dict)]
                if not start:
                    break
            kinds = stage_kinds(rows)
            self._stages.put(key, kinds)
        return kinds

    async def _page(
        self, rest_url: str, portal: str, method: str, params: dict[str, Any]
    ) -> tuple[list[Any], int | None]:
        body = await self.call(rest_url, portal, method, params, whole=True)
        result = body.get("result") if isinstance(body, dict) else None
        following = body.get("next") if isinstance(body, dict) else None
        return (result if isinstance(result, list) else []), (
            following if isinstance(following, int) else None
        )

    async def call(
        self,
        rest_url: str,
        portal: str,
        method: str,
        params: dict[str, Any],
        *,
        whole: bool = False,
    ) -> Any:
        """One REST method, paced and retried; the `result` (or the whole body)."""
        url = f"{rest_url.rstrip('/')}/{method}"

        async def attempt() -> Any:
            await self._limiter.acquire(portal)
            try:
                async with self._session.post(url, json=params, timeout=self._timeout) as response:
                    raw = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The class only: a URL in the message may hold the webhook key.
                raise TransientRestError(f"{method}: {type(exc).__name__}") from None
            body = _json(raw)
            if status == 200 and isinstance(body, dict) and "result" in body:
                self._on_call("ok")
                return body if whole else body["result"]
            error = _classify(method, status, body)
            if isinstance(error, TransientRestError):
                self._on_call("retried")
                if isinstance(body, dict) and body.get("error") in _LIMIT_ERRORS:
                    self._limiter.hold(portal)
            else:
                self._on_call("failed")
            raise error

        return await with_retries(f"bitrix24 {method}", attempt, self._retry)


def _json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _classify(method: str, status: int, body: Any) -> TransientRestError | PermanentRestError:
    code = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    what = f"{method}: HTTP {status} {code or '-'} {description}".strip()
    if code in _LIMIT_ERRORS or status >= 500 or status == 429:
        return TransientRestError(what)
    if code in _AUTH_ERRORS or status in (401, 403):
        return PermanentRestError(what, reason="rest_auth_failed")
    if "not found" in description.lower():
        return PermanentRestError(what, reason="record_not_found")
    return PermanentRestError(what, reason="rest_rejected")
