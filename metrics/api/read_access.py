"""What both JSON read APIs (/v1/kpis, /v1/waiting) answer alike: who may read a tenant,
and a KPI store that does not answer."""

from __future__ import annotations

from aiohttp import web

from salespulse.core.access import TokenTable, bearer_token
from salespulse.core.json_responses import RETRY_AFTER_S, json_response, unauthorized


class ReadAccess:
    """Bearer read tokens (salespulse/core/access.py); with none configured, reads are open."""

    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    def denied(self, request: web.Request, tenant: str) -> web.Response | None:
        """401 unless the request's token opens ``tenant``. Checked before anything is
        looked up, so an unknown tenant gets exactly the answer of a wrong token."""
        if not self._tokens.enforced:
            return None
        token = bearer_token(request.headers.get("Authorization", ""))
        return None if self._tokens.opens(tenant, token) else unauthorized(bearer=True)


def kpi_store_unavailable() -> web.Response:
    """503: Redis did not answer; the reader should retry (nothing is wrong with the query)."""
    response = json_response(
        503,
        {
            "error": "kpi_store_unavailable",
            "problems": [{"problem": "the KPI store (Redis) did not answer; retry"}],
        },
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response
