"""What every SalesPulse HTTP edge answers and reads the same way (ingest and webhooks)."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import StreamReader, web

from salespulse.core.errors import InvalidEventError

RETRY_AFTER_S = 5
FORM_TYPE = "application/x-www-form-urlencoded"
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


class BodyTimeoutError(Exception):
    """The request body did not arrive within the read timeout."""


async def read_body(request: web.Request, limit: int, timeout_s: float) -> tuple[bytes, bool]:
    """At most ``limit`` bytes (+1 to notice more), never the whole of a huge body.

    Returns (body, too_large); an oversized body keeps only its first
    ``DEAD_LETTER_PREFIX_BYTES`` (for the dead letter), or all of it if shorter.
    Raises BodyTimeoutError if the body takes longer than ``timeout_s`` to arrive: a
    slow sender must not hold a connection and a handler for as long as it likes.
    """
    stream = request.content
    declared = request.content_length
    if stream.is_eof() and declared is not None and declared <= limit:
        # The whole body arrived with its headers (every webhook and most batches): no
        # wait is possible, so no timer (two timer handles were a tenth of a request's CPU).
        return await _read_body(stream, declared, limit)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(stream, declared, limit)
    except TimeoutError:
        raise BodyTimeoutError(f"the body did not arrive within {timeout_s:g} s") from None


async def _read_body(stream: StreamReader, declared: int | None, limit: int) -> tuple[bytes, bool]:
    if declared is not None and declared > limit:
        return await _read_up_to(stream, DEAD_LETTER_PREFIX_BYTES), True
    body = await _read_up_to(stream, limit + 1)
    if len(body) <= limit:
        return body, False
    head = body[:DEAD_LETTER_PREFIX_BYTES]
    return head + await _read_up_to(stream, DEAD_LETTER_PREFIX_BYTES - len(head)), True


async def _read_up_to(stream: StreamReader, size: int) -> bytes:
    """``size`` bytes, or fewer only at the end of the body: one ``read(n)`` returns
    whatever has arrived, which cut dead letters short."""
    chunks: list[bytes] = []
    missing = size
    while missing > 0:
        chunk = await stream.read(min(65536, missing))
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


async def body_timeout(request: web.Request, error: BodyTimeoutError) -> web.StreamResponse:
    """408, sent, and the connection closed: the rest of a slow body is not waited for."""
    response = json_response(
        408,
        {
            "error": "body_read_timeout",
            "problems": [{"problem": str(error)}],
            "dead_lettered": False,
        },
    )
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    # Else aiohttp would keep reading (and discarding) the slow body for its lingering
    # time (10 s) before closing; the transport still flushes the answer first.
    request.protocol.force_close()
    return response


def too_large_error(limit: int) -> InvalidEventError:
    return InvalidEventError("body_too_large", [{"problem": f"body exceeds {limit} bytes"}])


def check_envelope(request: web.Request, too_large: bool, limit: int, *, form: bool) -> None:
    """Raises InvalidEventError for an oversized body or the wrong Content-Type (a form,
    or JSON)."""
    if too_large:
        raise too_large_error(limit)
    content_type = request.content_type
    ok = content_type == FORM_TYPE if form else is_json(content_type)
    if not ok:
        expected = FORM_TYPE if form else "application/json"
        raise InvalidEventError(
            "unsupported_media_type",
            [{"problem": f"Content-Type must be {expected}, got {content_type or 'none'!r}"}],
        )
