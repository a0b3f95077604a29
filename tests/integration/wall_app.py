"""A running SalesPulse with wall screens configured, for the wall's integration tests."""

from __future__ import annotations

import hashlib
import json
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


# Two offices as the users run them: Kyiv in hryvnias (Ukrainian), Moscow in
# roubles (Russian). 30-character Cyrillic full names and 7-digit amounts: what used to be
# cut off (`Олена Ковале…`, `UAH 35…`).
OFFICES = """
tenants:
  kyiv:
    timezone: Europe/Kyiv
    currency: UAH
    locale: uk
    teams:
      sales: {name: "Київ · відділ продажів", managers: ["1", "2", "3", "4", "5", "6", "7", "8"]}
    targets:
      managers: {"1": {revenue: "9000000"}, "2": {revenue: "12000000"}, "3": {deals_won: 4},
                 "4": {revenue: "2500000"}}
    sla:
      basis: calendar
      policies: [{channel: chat, first_response: 1h, warning: 30m}]
    wall:
      names: NAMES
      screens:
        office: {token: {file: TOKEN_FILE}, rows: 8}
  moskva:
    timezone: Europe/Moscow
    currency: RUB
    locale: ru
    teams:
      sales: {name: "Москва · отдел продаж", managers: ["1", "2", "3", "4", "5", "6", "7", "8"]}
    targets: {managers: {"1": {revenue: "9000000"}, "2": {revenue: "12000000"}}}
    sla:
      basis: calendar
      policies: [{channel: chat, first_response: 1h, warning: 30m}]
    wall:
      names: NAMES
      screens:
        office: {token: {file: TOKEN_FILE}, rows: 8}
"""
# Each exactly 30 characters (checked by the tests that use them).
LONG_NAMES = {
    "1": "Олександра Вишневецька-Ковалів",
    "2": "Костянтин Володимирович Шевчук",
    "3": "Анастасія Ярославівна Гриценко",
    "4": "Святослав Олександрович Ткачук",
    "5": "Єлизавета Миколаївна Бондарчук",
    "6": "Владислав Станіславович Гончар",
    "7": "Маргарита Вікторівна Кравченко",
    "8": "Ростислав Вячеславович Лисенко",
}


@dataclass(frozen=True)
class Wall:
    base: str
    token: str
    port: int
    tenant: str = TENANT

    def url(self, base: str | None = None, **query: str) -> str:
        params = {"tenant": self.tenant, "token": self.token, **query}
        text = "&".join(f"{key}={value}" for key, value in params.items())
        return f"{base or self.base}/wall?{text}"


@contextmanager
def running_wall(settings: Settings, tmp_path: Path, tenants_yaml: str = TENANTS) -> Iterator[Wall]:
    """SalesPulse with the tenants file given; every office screen opens with one token."""
    token = uuid.uuid4().hex
    token_file = tmp_path / "office-token"
    token_file.write_text(token)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        tenants_yaml.replace("TOKEN_FILE", str(token_file))
        .replace("NORTH_SHA", hashlib.sha256(NORTH_TOKEN.encode()).hexdigest())
        .replace("NAMES", json.dumps(LONG_NAMES, ensure_ascii=False))
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


def won(deal: str, amount: str, currency: str, **fields: Any) -> dict[str, Any]:
    """A deal won (its stage moved to a won stage) for ``amount`` in ``currency``."""
    return event(
        "deal_stage_changed",
        **{
            "entity_id": deal,
            "pipeline": "sales",
            "stage_to": "won",
            "stage_kind": "won",
            "amount": amount,
            "currency": currency,
            **fields,
        },
    )


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
