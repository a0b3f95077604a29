"""JSON decoding with a nesting limit, for bodies from outside.

msgspec decodes nested arrays and objects recursively and gives up with a RecursionError
(not a DecodeError) near 1,000 levels, which an HTTP handler would answer 500. No CRM
payload or canonical event nests more than a handful of levels, so anything deeper than
``MAX_JSON_DEPTH`` is refused as malformed before msgspec sees it.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Final

import msgspec

MAX_JSON_DEPTH: Final = 64
# A JSON string, escapes included: brackets inside strings do not nest.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(set(range(256)) - set(b"[]{}"))
# Depth change per byte, indexed by the byte (only brackets remain when it is used).
_STEP: Final = [0] * 256
for _opening in b"[{":
    _STEP[_opening] = 1
for _closing in b"]}":
    _STEP[_closing] = -1


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body`` (0 for a scalar); linear, no recursion.

    For malformed JSON (an unclosed string, say) this may over-count: such a body is
    refused either way.
    """
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_nesting(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raises msgspec.DecodeError if ``body`` nests deeper than ``max_depth``."""
    # Fast path: fewer openers than the limit cannot nest past it.
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    if nesting_depth(body) > max_depth:
        raise msgspec.DecodeError(f"arrays and objects nest deeper than {max_depth} levels")


def decode_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``msgspec.json.decode`` that refuses deep nesting with a DecodeError."""
    check_nesting(body, max_depth)
    return msgspec.json.decode(body)
