"""Pure parsing of an ingest body into canonical events, or problems naming each field."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from handlers.bounded_json import check_nesting
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import CrmEvent, ValidatedEvent, semantic_problems

_body_decoder = msgspec.json.Decoder(ValidatedEvent | list[ValidatedEvent])
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_PATH_PART = re.compile(r"\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)")


def parse_events(
    body: bytes, received_at: datetime | None, *, backfill: bool = False
) -> list[CrmEvent]:
    """Decode one event or a JSON array of them; all or nothing.

    ``received_at`` stamps every event; None keeps what each event carries (a backfill
    of recorded history, whose lateness counts from its original receipt). ``backfill``
    stamps every event's flag of that name: the sender's header decides, not the body.

    Raises InvalidEventError with reason ``malformed_json``, ``invalid_event`` or
    ``empty_batch``; each problem names the array index (if any), the field and what is wrong.
    """
    try:
        check_nesting(body)  # deeper input would be a RecursionError in msgspec: a 500
        decoded = _body_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidEventError("invalid_event", [_problem_from(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise InvalidEventError("malformed_json", [{"problem": f"malformed JSON: {exc}"}]) from None
    # ValidatedEvent is a CrmEvent; the list is typed as the base the callers expect.
    events: list[CrmEvent] = list(decoded) if isinstance(decoded, list) else [decoded]
    if not events:
        raise InvalidEventError("empty_batch", [{"problem": "the array holds no events"}])
    if received_at is not None:  # stamped first: occurred_at is bounded by the receipt
        events = [msgspec.structs.replace(event, received_at=received_at) for event in events]
    if any(event.backfill != backfill for event in events):
        events = [msgspec.structs.replace(event, backfill=backfill) for event in events]
    problems: list[dict[str, object]] = []
    for index, event in enumerate(events):
        for name, text in semantic_problems(event):
            problem: dict[str, object] = {"field": name, "problem": text}
            if isinstance(decoded, list):
                problem["index"] = index
            problems.append(problem)
    if problems:
        raise InvalidEventError("invalid_event", problems)
    return events


def _problem_from(message: str) -> dict[str, object]:
    """Turn msgspec's 'Expected `int`, got `str` - at `$[1].duration_s`' into parts."""
    problem: dict[str, object] = {}
    text = message
    path_match = _PATH.search(message)
    field_path = ""
    if path_match:
        text = message[: path_match.start()]
        field_path = path_match.group("path")
    missing = _MISSING.search(text)
    parts = _PATH_PART.findall(field_path)
    names = [name for _, name in parts if name]
    indexes = [int(index) for index, _ in parts if index]
    if indexes:
        problem["index"] = indexes[0]
    if missing:
        names.append(missing.group("field"))
        text = "required field is missing"
    if names:
        problem["field"] = ".".join(names)
    problem["problem"] = text
    return problem
