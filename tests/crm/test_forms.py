"""The PHP-bracket form parser on real wire bodies and PHP's edge cases."""

from __future__ import annotations

import pytest

from handlers.crm.forms import FormError, get, items, key_path, parse_form, text
from tests.crm.support import payload


def test_a_bitrix24_call_end_rebuilds_nested_keys() -> None:
    form = parse_form(payload("bitrix24_call_end_missed.form"))
    assert form["event"] == "ONVOXIMPLANTCALLEND"
    assert text(form, "data", "CALL_FAILED_CODE") == "304"
    assert text(form, "data", "CALL_START_DATE") == "2026-03-11T17:28:46+03:00"
    assert text(form, "auth", "client_endpoint") == "https://acme.bitrix24.ru/rest/"


def test_indexed_groups_become_lists_and_cyrillic_is_decoded() -> None:
    form = parse_form(payload("bitrix24_openline_message.form"))
    messages = get(form, "data", "DATA")
    assert isinstance(messages, list)
    assert len(messages) == 2
    assert text(messages, 0, "message", "text") == "Здравствуйте! Сколько стоит доставка в Казань?"
    assert text(messages, 1, "message", "text") == "Спасибо"


def test_amocrm_items_custom_fields_and_tags() -> None:
    form = parse_form(payload("amocrm_leads_status.form"))
    [lead] = items(get(form, "leads", "status"))
    assert lead["name"] == "Заявка с сайта"
    assert text(lead, "custom_fields", 0, "values", 0, "value") == "Сайт"
    assert text(lead, "tags", 0, "name") == "Сайт"
    assert text(form, "account", "_links", "self") == "https://acme.amocrm.ru"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"a[]=x&a[]=y", {"a": ["x", "y"]}),
        (b"a[2]=z&a[]=w", {"a": ["z", "w"]}),  # [] appends after the highest index
        (b"a=1&a[b]=2", {"a": {"b": "2"}}),  # a deeper key replaces a scalar
        (b"a[b]=2&a=1", {"a": "1"}),  # ... and the last write wins
        (b"a=1&a=2", {"a": "2"}),
        (b"a[b]c=1", {"a": {"b": "1"}}),  # text after the last bracket is ignored
        (b"a[b=1", {"a[b": "1"}),  # an unclosed bracket is literal
        (b"flag&x=", {"flag": "", "x": ""}),
        (b"q=a+b%2Bc", {"q": "a b+c"}),
        (b"", {}),
        (b"&&", {}),
    ],
)
def test_php_parse_str_semantics(body: bytes, expected: dict[str, object]) -> None:
    assert parse_form(body) == expected


def test_mixed_keys_stay_a_mapping() -> None:
    assert parse_form(b"x[0]=a&x[k]=b") == {"x": {"0": "a", "k": "b"}}


@pytest.mark.parametrize(
    "body",
    [b"name=%FF%FE", b"name=\xff"],
    ids=["percent-encoded-latin1", "raw-invalid-utf8"],
)
def test_a_body_that_is_not_utf8_is_a_form_error(body: bytes) -> None:
    with pytest.raises(FormError) as caught:
        parse_form(body)
    assert caught.value.reason == "malformed_payload"


def test_too_many_fields_and_too_deep_keys_are_refused() -> None:
    with pytest.raises(FormError, match="too many"):
        parse_form(b"&".join(b"k%d=1" % i for i in range(11)), max_fields=10)
    with pytest.raises(FormError, match="deeper"):
        key_path("a" + "[x]" * 40)


def test_helpers_tolerate_missing_paths() -> None:
    form = parse_form(b"a[b]=%20%20&c[0][d]=1")
    assert text(form, "a", "b") is None  # blank
    assert text(form, "a", "zz") is None
    assert get(form, "c", 5) is None
    assert items(get(form, "c")) == [{"d": "1"}]
    assert items(get(form, "a", "b")) == []
