"""faust's own web pages do not answer on the product's port; SalesPulse's routes do.

faust mounts a status page at ``/``, its table router at ``/router/`` and table listing at
``/table/`` (and, in debug, ``/stats/`` and ``/graph/``) on the web server it runs for us.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from salespulse.core.settings import Settings
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

FAUST_PAGES = ("/", "/router/", "/table/", "/stats/", "/graph/", "/performance/")


def status_of(url: str, data: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"} if data else {}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_faust_pages_answer_404_while_our_routes_answer(settings: Settings, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("run", settings, tmp_path / "run.log"):
        assert {page: status_of(base + page) for page in FAUST_PAGES} == dict.fromkeys(
            FAUST_PAGES, 404
        )
        assert status_of(f"{base}/healthz") == 200
        assert status_of(f"{base}/readyz") == 200
        assert status_of(f"{base}/metrics") == 200
        # The ingest is routed: a body that is not JSON is refused by it, not unknown.
        assert status_of(f"{base}/v1/events", data=b"not json") == 400
        # The KPI API is routed: a query without a tenant is refused by it (400), not unknown.
        assert status_of(f"{base}/v1/kpis") == 400
