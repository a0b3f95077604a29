"""Credentials out of a webhook body before it is kept on the dead-letter topic.

A dead letter is the sender's raw body, so operators can read and replay it. Some CRMs
put credentials in the body: Bitrix24 sends ``auth[application_token]`` (the webhook's
secret: whoever has it can forge the tenant's webhooks) and OAuth tokens. Two passes:

- by field: every form field a CRM uses for credentials (``CREDENTIAL_FIELDS``) keeps its
  name and gets the value ``REDACTED``, however often it occurs and however its name is
  percent-encoded;
- by value: every secret configured for the tenant's CRM (tenants file), raw or
  percent-encoded, is replaced by ``REDACTED`` wherever it occurs in the body.

Everything else stays byte for byte. Request headers (Authorization, signatures) are
never kept at all; the amoCRM URL secret is never part of the recorded origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus, unquote_to_bytes

from handlers.crm.common import CrmName

REDACTED: Final = b"REDACTED"
# Field paths whose value is a credential, lower case, matched as a prefix of the name's
# path (``auth[application_token][0]`` too). HubSpot and Pipedrive sign or authenticate
# in headers and amoCRM in the URL: their bodies carry no credential fields.
CREDENTIAL_FIELDS: Final[dict[CrmName, tuple[tuple[str, ...], ...]]] = {
    "bitrix24": (
        ("auth", "application_token"),
        ("auth", "access_token"),
        ("auth", "refresh_token"),
    ),
    "amocrm": (),
    "hubspot": (),
    "pipedrive": (),
}
_BRACKETS = re.compile(r"[\[\]]+")


def redact(crm: CrmName, body: bytes, secrets: Iterable[str] = ()) -> bytes:
    """``body`` with the CRM's credential fields and the given secret values redacted."""
    fields = CREDENTIAL_FIELDS[crm]
    if fields:
        body = _redact_form_fields(body, fields)
    return _redact_values(body, secrets)


def _redact_form_fields(body: bytes, fields: tuple[tuple[str, ...], ...]) -> bytes:
    """Form pairs split on ``&`` as the parser does; works on any bytes, even a body that
    is not UTF-8 or was cut short (a truncated pair keeps its name, loses its value)."""
    pairs = body.split(b"&")
    for index, pair in enumerate(pairs):
        name, equals, _ = pair.partition(b"=")
        if equals and _is_credential(name, fields):
            pairs[index] = name + equals + REDACTED
    return b"&".join(pairs)


def _is_credential(raw_name: bytes, fields: tuple[tuple[str, ...], ...]) -> bool:
    name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8", "replace")
    # Looser than the form parser on purpose: a malformed name is redacted too.
    path = [part.strip() for part in _BRACKETS.split(name.lower()) if part.strip()]
    return any(tuple(path[: len(field)]) == field for field in fields)


def _redact_values(body: bytes, secrets: Iterable[str]) -> bytes:
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
            body = body.replace(form.encode(), REDACTED)
    return body
