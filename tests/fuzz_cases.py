"""Seeded fuzz inputs for the ingest: ``POST /v1/events`` and the four CRM webhooks.

Bodies are the real CRM payloads of tests/crm/payloads (and canonical events) mutated:
truncated, bytes flipped, values replaced by odd ones (superscript and non-ASCII digits,
huge numbers, NaN, dates out of range, RTL marks, NUL), JSON nested up to 10,000 deep,
form names with indexes of thousands of digits or nested past the limit, invalid UTF-8,
duplicated credentials, wrong content types, empty and oversized bodies (with and
without Content-Length), and random bytes. Most cases carry the sender's valid
credentials, added after the mutation (HubSpot v3 signature, Pipedrive basic auth, amoCRM
URL secret, Bitrix24 application token), so the parsers behind the checks are reached;
the rest carry wrong or no credentials and must be neither kept nor answered 5xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

import msgspec

from tests.crm.support import B24_MEMBER, B24_TOKEN, PAYLOADS, SECRET_ENV, payload

Route = Literal["events", "bitrix24", "amocrm", "hubspot", "pipedrive"]
ROUTES: Final[tuple[Route, ...]] = ("events", "bitrix24", "amocrm", "hubspot", "pipedrive")
JSON_TYPE: Final = "application/json"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
ODD_CONTENT_TYPES: Final = (
    "text/plain",
    "application/xml",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
    "",
)
# Replaces a JSON value whole, unquoted: numbers and literals no encoder would write.
RAW_TOKENS: Final = (
    b"1" * 5000,
    b"-" + b"9" * 400,
    b"1e309",
    b"-1e309",
    b"1e308",
    b"NaN",
    b"Infinity",
    b"-0",
    b"10000000000000000000000000000000",
    b"[" * 1000 + b"]" * 1000,
    b'"\\ud800"',
    b'"\\u0000"',
)
ODD_TEXTS: Final = (
    "²",
    "²:00",
    "١٢٣",
    "\uff11\uff12\uff13",
    "\u202eevil",
    "\x00",
    "",
    " ",
    "-1",
    "9" * 5000,
    "1e400",
    "NaN",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-13-45T99:99:99Z",
    "a" * 3000,
)
ODD_JSON_VALUES: Final[tuple[object, ...]] = (
    *ODD_TEXTS,
    None,
    True,
    -1,
    0,
    1.5,
    [],
    {},
    {"value": "²"},
    [1, [2, [3]]],
)
ODD_FORM_NAMES: Final = (
    "a[" + "1" * 5000 + "]",
    "a[" + "7" * 30 + "]",
    "x" + "[a]" * 40,
    "x" + "[" * 100,
    "0",
    "[]",
    "a[²]",
    "a[\u0661]",
    "auth[application_token][]",
    "x" * 600,
)
EVENTS: Final = (
    {
        "event_id": "fz-1",
        "tenant": "acme",
        "type": "call",
        "occurred_at": "2026-11-22T08:00:00Z",
        "direction": "in",
        "answered": True,
        "duration_s": 42,
        "channel": "phone",
        "manager_id": "5",
    },
    {
        "event_id": "fz-2",
        "tenant": "acme",
        "type": "deal_stage_changed",
        "occurred_at": "2026-11-22T09:00:00+03:00",
        "entity_id": "d1",
        "pipeline": "sales",
        "stage_to": "won",
        "stage_kind": "won",
        "amount": "1500.50",
        "currency": "USD",
    },
    {
        "event_id": "fz-3",
        "tenant": "acme",
        "type": "message",
        "occurred_at": "2026-11-22T08:00:00Z",
        "direction": "in",
        "channel": "chat",
        "conversation_id": "talk-9",
    },
)


@dataclass
class Case:
    route: Route
    body: bytes
    content_type: str
    # Valid credentials were added: a rejected body must be dead-lettered (or, where its
    # CRM's check needs more than it could read, discarded and counted).
    authentic: bool
    chunked: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""


def fixtures(route: Route) -> list[bytes]:
    if route == "events":
        return [msgspec.json.encode(event) for event in EVENTS] + [msgspec.json.encode(EVENTS)]
    suffix = ".form" if route in ("bitrix24", "amocrm") else ".json"
    names = sorted(p.name for p in PAYLOADS.glob(f"{route}_*{suffix}") if "_rest_" not in p.name)
    return [payload(name) for name in names]


class CaseMaker:
    """One seeded stream of cases; ``oversize`` is the body limit the app runs with."""

    def __init__(self, seed: int, body_limit: int) -> None:
        self.rng = random.Random(seed)
        self.limit = body_limit
        self.bases = {route: fixtures(route) for route in ROUTES}

    def case(self, route: Route) -> Case:
        rng = self.rng
        form = route in ("bitrix24", "amocrm")
        body = rng.choice(self.bases[route])
        mutations: list[Callable[[bytes, bool], bytes]] = [
            self._truncate,
            self._flip,
            self._odd_value,
            self._odd_value,
            self._insert_raw,
            self._deep,
            self._invalid_utf8,
            self._duplicate,
            self._random_bytes,
            self._empty,
            self._odd_name,
        ]
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            body = rng.choice(mutations)(body, form)
        chunked = False
        if rng.random() < 0.01:
            body = self._oversized(body, form)
            chunked = rng.random() < 0.5
        content_type = FORM_TYPE if form else JSON_TYPE
        if rng.random() < 0.05:
            content_type = rng.choice((*ODD_CONTENT_TYPES, JSON_TYPE if form else FORM_TYPE))
        authentic = route == "events" or rng.random() < 0.8
        if route == "bitrix24":
            body = self._bitrix24_token(body, authentic)
        return Case(route, body, content_type, authentic, chunked)

    # --- mutations ------------------------------------------------------------------

    def _truncate(self, body: bytes, form: bool) -> bytes:
        return body[: self.rng.randrange(len(body) + 1)]

    def _flip(self, body: bytes, form: bool) -> bytes:
        if not body:
            return body
        data = bytearray(body)
        for _ in range(self.rng.randint(1, 3)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return bytes(data)

    def _odd_value(self, body: bytes, form: bool) -> bytes:
        if form:
            pairs = body.split(b"&")
            index = self.rng.randrange(len(pairs))
            name = pairs[index].partition(b"=")[0]
            pairs[index] = name + b"=" + quote(self.rng.choice(ODD_TEXTS)).encode()
            return b"&".join(pairs)
        try:
            document = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):  # already broken: leave it so
            return body
        raw = self.rng.random() < 0.3
        marker = "@@raw@@"
        replaced = _replace_leaf(document, self.rng, marker if raw else _odd(self.rng))
        encoded = msgspec.json.encode(replaced)
        return encoded.replace(b'"@@raw@@"', self.rng.choice(RAW_TOKENS)) if raw else encoded

    def _insert_raw(self, body: bytes, form: bool) -> bytes:
        at = self.rng.randrange(len(body) + 1)
        piece = (
            self.rng.choice(RAW_TOKENS) if not form else quote(self.rng.choice(ODD_TEXTS)).encode()
        )
        return body[:at] + piece + body[at:]

    def _deep(self, body: bytes, form: bool) -> bytes:
        levels = self.rng.choice((10, 33, 63, 64, 65, 100, 1000, 5000, 10_000))
        if form:
            return body + b"&x" + b"[a]" * levels + b"=1"
        if self.rng.random() < 0.5:
            return b'{"x":' + b"[" * levels + b"]" * levels + b"}"
        return b'[{"x":' * levels + b"1" + b"}]" * levels

    def _invalid_utf8(self, body: bytes, form: bool) -> bytes:
        at = self.rng.randrange(len(body) + 1)
        piece = self.rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"%FF", b"%C3%28"))
        return body[:at] + piece + body[at:]

    def _duplicate(self, body: bytes, form: bool) -> bytes:
        if form:
            return body + b"&auth%5Bapplication_token%5D=dup&" + body.split(b"&")[0]
        return body.replace(b"{", b'{"event_id": "dup", "portalId": 1, ', 1)

    def _random_bytes(self, body: bytes, form: bool) -> bytes:
        return self.rng.randbytes(self.rng.randrange(200))

    def _empty(self, body: bytes, form: bool) -> bytes:
        return b""

    def _odd_name(self, body: bytes, form: bool) -> bytes:
        if not form:
            return body
        return body + b"&" + quote(self.rng.choice(ODD_FORM_NAMES), safe="[]").encode() + b"=1"

    def _oversized(self, body: bytes, form: bool) -> bytes:
        size = self.limit + 1 + self.rng.randrange(3 * self.limit)
        filler = b"&pad=" if form else b" "
        return body + filler + b"x" * size

    def _bitrix24_token(self, body: bytes, authentic: bool) -> bytes:
        """The last write wins: appended, the right token (or a wrong one) is what counts."""
        token = B24_TOKEN if authentic else self.rng.choice(("", "wrong", B24_TOKEN[:-1] + "x"))
        return (
            body
            + b"&auth%5Bapplication_token%5D="
            + token.encode()
            + b"&auth%5Bmember_id%5D="
            + B24_MEMBER.encode()
        )


def _odd(rng: random.Random) -> Any:
    return rng.choice(ODD_JSON_VALUES)


def _replace_leaf(document: Any, rng: random.Random, value: object) -> Any:
    """A copy of ``document`` with one randomly chosen node (any depth) set to ``value``."""
    if isinstance(document, dict) and document and rng.random() < 0.8:
        key = rng.choice(sorted(document))
        return {**document, key: _replace_leaf(document[key], rng, value)}
    if isinstance(document, list) and document and rng.random() < 0.8:
        index = rng.randrange(len(document))
        copy = list(document)
        copy[index] = _replace_leaf(document[index], rng, value)
        return copy
    return value


# --- credentials -------------------------------------------------------------------------

AMO_SECRET: Final = SECRET_ENV["ACME_AMO_SECRET"]


def sign(case: Case, base_url: str, rng: random.Random, now_ms: int) -> None:
    """Path and headers: valid credentials for an authentic case, wrong or none else."""
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    path = {
        "events": "/v1/events",
        "bitrix24": "/v1/webhooks/bitrix24/acme",
        "amocrm": f"/v1/webhooks/amocrm/acme/{AMO_SECRET if case.authentic else 'wrong'}",
        "hubspot": "/v1/webhooks/hubspot/acme",
        "pipedrive": "/v1/webhooks/pipedrive/acme",
    }[case.route]
    if case.route == "hubspot":
        secret = SECRET_ENV["ACME_HUBSPOT_SECRET"] if case.authentic else "not-the-secret"
        timestamp = str(now_ms)
        if not case.authentic and rng.random() < 0.5:
            timestamp = rng.choice(("²", "1" * 5000, "", "-5"))
        source = b"POST" + (base_url + path).encode() + case.body + timestamp.encode()
        digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
        headers["X-HubSpot-Signature-v3"] = base64.b64encode(digest).decode()
        headers["X-HubSpot-Request-Timestamp"] = timestamp
    if case.route == "pipedrive" and (case.authentic or rng.random() < 0.5):
        password = SECRET_ENV["ACME_PIPEDRIVE_PASSWORD"] if case.authentic else "wrong"
        token = base64.b64encode(f"salespulse:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    case.headers = headers
    case.path = path
