"""A running SalesPulse with wall screens configured, for the wall's integration tests."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from salespulse.core.settings import Settings
from tests.integration.processes import salespulse_process

TENANT = "wallco"
NORTH_TOKEN = "north-wall-token"  # noqa: S105 - a test token

TENANTS = """
tenants:
  wallco:
    timezone: UTC
    teams: {north: {managers: ["17", "42"]}, south: {managers: ["5"]}}
    targets: {managers: {"17": {revenue: "30000", deals_won: 30}}}
    sla:
      basis: calendar
      policies: [{channel: chat, first_response: 3s, warning: 2s}]
    wall:
      names: {"17": Anna, "42": Boris}
      screens:
        office: {token: {file: TOKEN_FILE}, title: Wall test office}
        north: {token_sha256: NORTH_SHA, team: north}
"""


@dataclass(frozen=True)
class Wall:
    base: str
    token: str
    port: int

    def url(self, base: str | None = None, **query: str) -> str:
        params = {"tenant": TENANT, "token": self.token, **query}
        text = "&".join(f"{key}={value}" for key, value in params.items())
        return f"{base or self.base}/wall?{text}"


@contextmanager
def running_wall(settings: Settings, tmp_path: Path) -> Iterator[Wall]:
    token = uuid.uuid4().hex
    token_file = tmp_path / "office-token"
    token_file.write_text(token)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        TENANTS.replace("TOKEN_FILE", str(token_file)).replace(
            "NORTH_SHA", hashlib.sha256(NORTH_TOKEN.encode()).hexdigest()
        )
    )
    with salespulse_process("run", settings, tmp_path / "run.log", tenants_file=tenants):
        port = settings.http_port
        yield Wall(f"http://127.0.0.1:{port}", token, port)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"wall-{uuid.uuid4().hex}",
        "tenant": TENANT,
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "manager_id": "17",
        **fields,
    }


def call(**fields: Any) -> dict[str, Any]:
    defaults = {"direction": "out", "answered": True, "duration_s": 42, "channel": "phone"}
    return event("call", **{**defaults, **fields})


def chat(conversation: str, direction: str) -> dict[str, Any]:
    """A chat message of manager 42 (Boris); ids only, as the ingest takes them."""
    return event(
        "message",
        manager_id="42",
        direction=direction,
        channel="chat",
        conversation_id=conversation,
    )


async def post(session: aiohttp.ClientSession, base: str, body: object) -> None:
    async with session.post(f"{base}/v1/events", json=body) as response:
        assert response.status == 202, await response.text()
