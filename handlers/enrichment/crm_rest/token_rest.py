"""A JSON GET with a token header, paced and retried as every CRM REST call: what amoCRM
(`Authorization: Bearer`, long-lived token) and Pipedrive (`x-api-token`) need for their
user lists.

429 (Retry-After honoured), 5xx and timeouts are retried with backoff; 401/403 are
refused credentials, any other 4xx a rejected request; 204 (amoCRM: an empty list) is None.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from handlers.enrichment.crm_rest.http import (
    PermanentRestError,
    RestClient,
    TransientRestError,
    retry_after,
    with_retries,
)


class TokenRestClient(RestClient):
    async def get(
        self,
        url: str,
        portal: str,
        *,
        headers: dict[str, str],
        params: dict[str, str],
        what: str,
    ) -> Any:
        """``what`` names the call in errors and logs: never the URL or headers (secrets)."""

        async def attempt() -> Any:
            await self._limiter.acquire(portal)
            try:
                async with self._session.get(
                    url,
                    params=params,
                    headers={"Accept": "application/json", **headers},
                    timeout=self._timeout,
                ) as response:
                    raw = await response.read()
                    status = response.status
                    wait = retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientRestError(f"{what}: {type(exc).__name__}") from None
            if status == 204:
                self._on_call("ok")
                return None
            if status == 200:
                self._on_call("ok")
                try:
                    return msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    raise PermanentRestError(
                        f"{what}: the answer is not JSON", reason="rest_rejected"
                    ) from None
            message = f"{what}: HTTP {status}"
            if status == 429 or status >= 500:
                self._on_call("retried")
                self._limiter.hold(portal, wait)
                raise TransientRestError(message, retry_after_s=wait)
            self._on_call("failed")
            if status in (401, 403):
                raise PermanentRestError(message, reason="rest_auth_failed")
            raise PermanentRestError(message, reason="rest_rejected")

        return await with_retries(what, attempt, self._retry)
