"""A JSON GET with a token header, paced and retried as every CRM REST call: what amoCRM
(`Authorization: Bearer`, long-lived token) and Pipedrive (`x-api-token`) need for their
user lists.

The call itself is RestClient.json_get (crm_rest/http.py), as HubSpot's.
"""

from __future__ import annotations

from typing import Any

from handlers.enrichment.crm_rest.http import (
    RestClient,
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
        return await self.json_get(url, portal, headers=headers, params=params, what=what)
