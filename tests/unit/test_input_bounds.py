"""The pure guards of the ingest: JSON nesting, form names and indexes, ASCII digits, dates,
and the redaction of credentials in dead letters."""

from __future__ import annotations

from datetime import UTC

import msgspec
import pytest

from handlers.bounded_json import MAX_JSON_DEPTH, check_nesting, decode_json, nesting_depth
from handlers.crm.common import ascii_int, from_any_time, from_iso
from handlers.crm.forms import MAX_KEY_CHARS, FormError, parse_form
from handlers.redaction import redact
from salespulse.core.errors import InvalidEventError


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        # Brackets inside strings, escaped quotes included, do not nest.
        (b'["[[[", "\\"[[[", {"k]": "}}"}]', 2),
        (b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}", 1001),
    ],
)
def test_nesting_depth_counts_arrays_and_objects_only(body: bytes, depth: int) -> None:
    assert nesting_depth(body) == depth


def test_json_deeper_than_the_limit_is_a_decode_error_not_a_recursion_error() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert decode_json(at_limit) is not None
    for levels in (MAX_JSON_DEPTH + 1, 1000, 100_000):
        with pytest.raises(msgspec.DecodeError, match="deeper than 64 levels"):
            check_nesting(b"[" * levels + b"]" * levels)


def test_form_names_and_indexes_are_bounded() -> None:
    with pytest.raises(FormError, match="longer than 512"):
        parse_form(b"a[" + b"1" * 5000 + b"]=1")
    with pytest.raises(FormError):
        parse_form(b"x" * (MAX_KEY_CHARS + 1) + b"=1")
    # 19 digits are no list index (past PHP's int keys): a plain key, no huge int().
    assert parse_form(b"a[1234567890123456789]=x") == {"a": {"1234567890123456789": "x"}}
    # Only ASCII digits index a list; "٣" (Arabic-Indic three) is a key.
    assert parse_form(b"a[%D9%A3]=x&b[1]=y&b[0]=z") == {"a": {"٣": "x"}, "b": ["z", "y"]}


def test_a_form_of_numbered_names_stays_a_mapping() -> None:
    assert parse_form(b"0=1&1=2") == {"0": "1", "1": "2"}
    assert parse_form(b"[]=1") == {"[]": "1"}


@pytest.mark.parametrize(
    ("text", "value"),
    [("1773239326000", 1773239326000), ("²", None), ("\uff11", None), ("9" * 19, None), ("", None)],
)
def test_ascii_int_takes_bounded_ascii_digits_only(text: str, value: int | None) -> None:
    assert ascii_int(text) == value


@pytest.mark.parametrize("value", ["²", "9" * 5000, "0001-01-01T00:30:00+01:00"])
def test_odd_times_are_422_problems(value: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        from_any_time(value, "meta.timestamp")
    assert caught.value.reason == "unsupported_payload"


def test_a_date_at_the_edge_of_the_calendar_in_utc_is_still_read() -> None:
    moment = from_iso("0001-01-01T00:30:00+00:00", "t")
    assert moment is not None
    assert moment.tzinfo == UTC


TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"  # noqa: S105 - test data


def test_bitrix24_credential_fields_are_redacted_however_they_are_spelled() -> None:
    body = (
        b"event=ONCRMDEALADD&auth%5Baccess_token%5D=AAA&auth[refresh_token]=RRR"
        b"&AUTH%5BApplication_Token%5D=one&auth%5Bapplication_token%5D=two"
        b"&auth%5Bapplication_token%5D%5B0%5D=three&auth%5Bmember_id%5D=m1&data%5BX%5D=%FF"
    )
    assert redact("bitrix24", body) == (
        b"event=ONCRMDEALADD&auth%5Baccess_token%5D=REDACTED&auth[refresh_token]=REDACTED"
        b"&AUTH%5BApplication_Token%5D=REDACTED&auth%5Bapplication_token%5D=REDACTED"
        b"&auth%5Bapplication_token%5D%5B0%5D=REDACTED&auth%5Bmember_id%5D=m1&data%5BX%5D=%FF"
    )


def test_a_truncated_form_keeps_no_part_of_a_credential() -> None:
    body = b"a=1&auth%5Bapplication_token%5D=" + TOKEN[:7].encode()
    assert redact("bitrix24", body) == b"a=1&auth%5Bapplication_token%5D=REDACTED"


def test_configured_secrets_are_redacted_anywhere_raw_or_percent_encoded() -> None:
    secret = "s3cr3t/with+chars"  # noqa: S105 - test data
    body = (
        b'{"note": "s3cr3t/with+chars", "url": "https://x/?k=s3cr3t%2Fwith%2Bchars"}'
        b"&q=s3cr3t%2Fwith%2Bchars"
    )
    kept = redact("pipedrive", body, [secret])
    assert b"s3cr3t" not in kept
    assert kept == b'{"note": "REDACTED", "url": "https://x/?k=REDACTED"}&q=REDACTED'


def test_bodies_without_credentials_stay_byte_for_byte() -> None:
    body = b'{"meta": {"id": "1"}, "data": "\xff"}'
    assert redact("hubspot", body, ["unrelated-secret"]) == body
    assert redact("amocrm", b"leads[add][0][id]=1") == b"leads[add][0][id]=1"
