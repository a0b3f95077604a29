"""PHP-style form bodies (``a[b][0][c]=1``), as Bitrix24 and amoCRM post them, rebuilt.

``parse_form`` follows PHP's ``parse_str``: bracket segments nest, ``[]`` appends, the last
write to a key wins, text after the last closing bracket is ignored. A mapping whose keys
are all decimal integers becomes a list in index order (``leads[status][0]``, ``[1]``...).
Values are percent-decoded UTF-8 (``+`` is a space); anything else is a ``FormError``.
"""

from __future__ import annotations

import re
from typing import TypeAlias
from urllib.parse import parse_qsl

from salespulse.core.errors import InvalidEventError

FormValue: TypeAlias = str | dict[str, "FormValue"] | list["FormValue"]
FormDict: TypeAlias = dict[str, FormValue]

MAX_FIELDS = 20_000
MAX_DEPTH = 32
# A field name (``data[FIELDS][UF_CRM_1712345678]``) longer than this is refused.
MAX_KEY_CHARS = 512
# Only this many ASCII digits make a list index, as PHP's int keys stop at 2**63: a longer
# run stays a plain key (and never meets Python's 4,300-digit int-string limit).
MAX_INDEX_DIGITS = 18
_SEGMENT = re.compile(r"\[([^\]]*)\]")


class FormError(InvalidEventError):
    """The body is not a form we can read (reason ``malformed_payload``)."""

    def __init__(self, problem: str) -> None:
        super().__init__("malformed_payload", [{"problem": problem}])


def parse_form(body: bytes, *, max_fields: int = MAX_FIELDS) -> FormDict:
    """Decode an ``application/x-www-form-urlencoded`` body into nested dicts and lists."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8 (percent-encoded or raw)") from None
    except ValueError as exc:
        raise FormError(f"the form has too many fields: {exc}") from None
    root: dict[str, object] = {}
    for name, value in pairs:
        if len(name) > MAX_KEY_CHARS:
            raise FormError(f"a field name is longer than {MAX_KEY_CHARS} characters")
        path = key_path(name)
        if path:
            _assign(root, path, value)
    # The root stays a mapping even when every name is a number (``0=1``): callers read
    # it by name, and a list there was a 500.
    return {key: _listify(child) for key, child in root.items()}


def key_path(name: str) -> list[str]:
    """``a[b][]`` → ``["a", "b", ""]``; a name with an unclosed ``[`` is taken literally."""
    start = name.find("[")
    if start <= 0:
        return [name] if name else []
    head = name[:start]
    segments: list[str] = []
    position = start
    while position < len(name) and name[position] == "[":
        match = _SEGMENT.match(name, position)
        if match is None:
            if not segments:  # PHP: no well-formed segment at all → one literal key
                return [name]
            break
        segments.append(match.group(1))
        position = match.end()
    if len(segments) > MAX_DEPTH:
        raise FormError(f"a key nests deeper than {MAX_DEPTH} levels")
    return [head, *segments]


def _assign(root: dict[str, object], path: list[str], value: str) -> None:
    node = root
    for index, segment in enumerate(path):
        key = segment if segment else str(_next_index(node))
        if index == len(path) - 1:
            node[key] = value
            return
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}  # PHP: a deeper key replaces an earlier scalar
            node[key] = child
        node = child


def _next_index(node: dict[str, object]) -> int:
    numbers = [int(key) for key in node if _is_index(key)]
    return max(numbers) + 1 if numbers else 0


def _listify(node: object) -> FormValue:
    if isinstance(node, str):
        return node
    assert isinstance(node, dict)  # narrowing: _assign builds only str and dict
    converted = {key: _listify(child) for key, child in node.items()}
    if converted and all(_is_index(key) for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _is_index(key: str) -> bool:
    """A list index: ASCII digits only (``str.isdecimal`` takes "٣" too), bounded."""
    return 0 < len(key) <= MAX_INDEX_DIGITS and key.isascii() and key.isdigit()


def get(node: FormValue | None, *path: str | int) -> FormValue | None:
    """Walk dict keys and list indexes; None where the path does not exist."""
    for step in path:
        if isinstance(node, dict):
            node = node.get(str(step))
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            return None
    return node


def text(node: FormValue | None, *path: str | int) -> str | None:
    """The string at ``path``, stripped; None if absent, empty or not a string."""
    value = get(node, *path)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def items(node: FormValue | None) -> list[FormDict]:
    """The mappings of an indexed group (list, or a mapping of odd keys), in order."""
    if isinstance(node, list):
        values = node
    elif isinstance(node, dict):
        values = list(node.values())
    else:
        return []
    return [value for value in values if isinstance(value, dict)]
