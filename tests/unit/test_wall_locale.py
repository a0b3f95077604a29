"""The wall's words and numbers per locale: catalogues complete, formats as CLDR writes them.

Expectations are CLDR's (as Babel ships them): uk and ru group thousands with a no-break
space and put the symbol after the amount; en puts it before; a symbol made of letters
(`UAH`) is kept apart from the digits by a no-break space (CLDR currencySpacing).
"""

from __future__ import annotations

import re
import string
from datetime import date

import pytest
from babel import Locale

from metrics.wall.formatting import Formatter
from metrics.wall.i18n import LOCALES, PLURAL_TABLE_SIZE, catalogue, plural_forms

NB = "\u00a0"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_catalogue_has_every_key_of_english_with_the_same_placeholders():
    english = catalogue("en").entries
    for locale in LOCALES:
        entries = catalogue(locale).entries
        assert set(entries) == set(english), locale
        for key, entry in entries.items():
            texts = [entry] if isinstance(entry, str) else list(entry.values())
            reference = english[key]
            wanted = placeholders(reference if isinstance(reference, str) else reference["other"])
            assert isinstance(entry, str) == isinstance(reference, str), (locale, key)
            for text in texts:
                assert text.strip(), (locale, key)
                assert placeholders(text) == wanted, (locale, key, text)


def test_every_counted_key_gives_exactly_the_plural_forms_of_its_locale():
    assert plural_forms("uk") == plural_forms("ru") == {"one", "few", "many", "other"}
    assert plural_forms("en") == {"one", "other"}
    for locale in LOCALES:
        for key, entry in catalogue(locale).entries.items():
            if not isinstance(entry, str):
                assert set(entry) == plural_forms(locale), (locale, key)


@pytest.mark.parametrize(
    ("locale", "n", "expected"),
    [
        ("uk", 1, "1 хвилину тому"),
        ("uk", 3, "3 хвилини тому"),
        ("uk", 5, "5 хвилин тому"),
        ("uk", 11, "11 хвилин тому"),
        ("uk", 21, "21 хвилину тому"),
        ("uk", 24, "24 хвилини тому"),
        ("ru", 1, "1 минуту назад"),
        ("ru", 2, "2 минуты назад"),
        ("ru", 12, "12 минут назад"),
        ("ru", 101, "101 минуту назад"),
        ("en", 1, "1 minute ago"),
        ("en", 2, "2 minutes ago"),
        ("en", 0, "0 minutes ago"),
    ],
)
def test_plurals_follow_cldr_rules(locale, n, expected):
    assert catalogue(locale).plural("ago.minutes", n) == expected


@pytest.mark.parametrize("locale", LOCALES)
def test_the_pages_plural_table_words_large_counts_as_babel_does(locale):
    """The page picks table[n] below the table's size, else table[100 + n mod 100]."""
    table = catalogue(locale).plural_table()
    assert len(table) == PLURAL_TABLE_SIZE
    for n in (0, 1, 2, 5, 11, 21, 111, 121, 1001, 1_000_002, 12_345):
        shown = table[n] if n < PLURAL_TABLE_SIZE else table[100 + n % 100]
        assert shown == Locale.parse(locale).plural_form(n), (locale, n)


@pytest.mark.parametrize(
    ("locale", "currency", "full", "short"),
    [
        ("uk", "UAH", f"1{NB}250{NB}000{NB}₴", f"1,25{NB}млн{NB}₴"),
        ("ru", "RUB", f"1{NB}250{NB}000{NB}₽", f"1,25{NB}млн{NB}₽"),
        ("ru", "UAH", f"1{NB}250{NB}000{NB}₴", f"1,25{NB}млн{NB}₴"),
        ("en", "USD", "$1,250,000", "$1.25M"),
        ("en", "UAH", f"UAH{NB}1,250,000", f"UAH{NB}1.25M"),
        ("en", "RUB", f"RUB{NB}1,250,000", f"RUB{NB}1.25M"),
        ("uk", "USD", f"1{NB}250{NB}000{NB}USD", f"1,25{NB}млн{NB}USD"),
    ],
)
def test_money_in_whole_units_and_compact_by_cldr(locale, currency, full, short):
    money = Formatter(locale, currency)
    assert money.money(1_250_000) == full
    assert money.money(1_250_000.4) == full  # whole units on the wall
    assert money.money_compact(1_250_000) == short
    assert money.money_both(1_250_000) == {"full": full, "short": short}


@pytest.mark.parametrize(
    ("locale", "currency", "amount", "expected"),
    [
        ("uk", "UAH", 3_020_000, f"3,02{NB}млн{NB}₴"),
        ("uk", "UAH", 350_000, f"350{NB}тис.{NB}₴"),
        ("ru", "RUB", 350_000, f"350{NB}тыс.{NB}₽"),
        ("en", "USD", 3_020_000, "$3.02M"),
        ("en", "USD", 350_000, "$350K"),
        ("uk", "UAH", 950, f"950{NB}₴"),  # small amounts stay whole
    ],
)
def test_compact_forms(locale, currency, amount, expected):
    assert Formatter(locale, currency).money_compact(amount) == expected


def test_no_amount_is_a_dash_in_every_locale():
    for locale in LOCALES:
        formats = Formatter(locale, "UAH")
        assert formats.money(None) == formats.money_compact(None) == "—"
        assert formats.number(None) == formats.percent(None) == formats.duration(None) == "—"


@pytest.mark.parametrize(
    ("locale", "number", "percent", "signed"),
    [
        ("uk", f"12{NB}345,6", "42%", "−8%"),
        ("ru", f"12{NB}345,6", f"42{NB}%", f"−8{NB}%"),
        ("en", "12,345.6", "42%", "−8%"),
    ],
)
def test_numbers_and_percentages(locale, number, percent, signed):
    formats = Formatter(locale, "USD")
    assert formats.number(12_345.6) == number
    assert formats.number(7) == "7"
    assert formats.percent(0.42) == percent
    assert formats.signed_percent(-0.08) == signed
    assert formats.signed_percent(0.12).startswith("+12")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("uk", ["45 с", "5 хв 3 с", "2 год 5 хв", "5 хв"]),
        ("ru", ["45 с", "5 мин 3 с", "2 ч 5 мин", "5 мин"]),
        ("en", ["45 sec", "5 min 3 sec", "2 hr 5 min", "5 min"]),
    ],
)
def test_durations_with_short_unit_names(locale, expected):
    formats = Formatter(locale, "USD")
    shown = [formats.duration(s) for s in (45, 303, 7500, 300)]
    assert [re.sub(r"\s", " ", text) for text in shown] == expected


@pytest.mark.parametrize(
    ("locale", "expected"), [("uk", "4 грудня"), ("ru", "4 декабря"), ("en", "December 4")]
)
def test_a_day_as_the_locale_names_it(locale, expected):
    assert Formatter(locale, "USD").day(date(2026, 12, 4)) == expected
