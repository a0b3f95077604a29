"""What every SalesPulse HTTP edge answers and reads the same way (ingest and webhooks)."""

from __future__ import annotations

import msgspec
from aiohttp import web

RETRY_AFTER_S = 5
# An oversized body is kept on the dead-letter topic only up to this many bytes.
DEAD_LETTER_PREFIX_BYTES = 256 * 1024


def json_response(status: int, payload: object) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


def broker_unavailable() -> web.Response:
    """503: nothing was accepted; the sender should retry after a while."""
    response = json_response(
        503,
        {
            "error": "broker_unavailable",
            "problems": [
                {"problem": "the event broker did not acknowledge; nothing was accepted, retry"}
            ],
        },
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def unauthorized(*, basic: bool = False, bearer: bool = False) -> web.Response:
    """401, one answer for every failed check: no hint which one failed."""
    response = json_response(
        401,
        {"error": "unauthorized", "problems": [{"problem": "the sender is not authenticated"}]},
    )
    if basic:
        response.headers["WWW-Authenticate"] = 'Basic realm="salespulse"'
    elif bearer:
        response.headers["WWW-Authenticate"] = 'Bearer realm="salespulse"'
    return response


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


async def read_body(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes (+1 to notice more), never the whole of a huge body.

    Returns (body, too_large); an oversized body keeps only its head (for the dead letter).
    """
    if request.content_length is not None and request.content_length > limit:
        return await request.content.read(DEAD_LETTER_PREFIX_BYTES), True
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:DEAD_LETTER_PREFIX_BYTES], True
