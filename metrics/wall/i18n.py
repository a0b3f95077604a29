"""The wall's translation catalogues: one JSON file per locale in ``catalogues/``. Pure.

A key maps to a string with ``{placeholders}``, or, where a count decides the words, to
its CLDR plural forms (`one`/`few`/`many`/`other` for uk and ru, `one`/`other` for en),
chosen with Babel's plural rules. The page gets the whole catalogue and a table of plural
forms (``plural_table``), so the counts it ticks on its own are worded the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import get_args

from babel import Locale as BabelLocale

from salespulse.core.tenants.base import Locale

LOCALES: tuple[str, ...] = get_args(Locale)
Entry = str | dict[str, str]
# For integers the plural form of en, uk and ru depends on n mod 100 (and mod 10) only,
# so forms of 0..199 give every integer's: n ≥ 200 has the form of 100 + n mod 100.
PLURAL_TABLE_SIZE = 200


def plural_forms(locale: str) -> frozenset[str]:
    """The CLDR plural forms a locale's catalogue must give for each counted key."""
    return frozenset(BabelLocale.parse(locale).plural_form.tags) | {"other"}


@cache
def catalogue(locale: str) -> Catalogue:
    if locale not in LOCALES:
        raise ValueError(f"no catalogue for locale {locale!r}")
    path = resources.files("metrics.wall").joinpath("catalogues", f"{locale}.json")
    entries: dict[str, Entry] = json.loads(path.read_text(encoding="utf-8"))
    return Catalogue(locale, entries)


@dataclass(frozen=True)
class Catalogue:
    locale: str
    entries: Mapping[str, Entry]

    def text(self, key: str, **params: object) -> str:
        entry = self.entries[key]
        if not isinstance(entry, str):
            raise TypeError(f"{self.locale}:{key} is counted: use plural()")
        return entry.format(**params)

    def plural(self, key: str, n: int, **params: object) -> str:
        entry = self.entries[key]
        if isinstance(entry, str):
            raise TypeError(f"{self.locale}:{key} is not counted: use text()")
        form = BabelLocale.parse(self.locale).plural_form(n)
        return entry.get(form, entry["other"]).format(n=n, **params)

    def plural_table(self) -> list[str]:
        rule = BabelLocale.parse(self.locale).plural_form
        return [rule(n) for n in range(PLURAL_TABLE_SIZE)]

    def for_page(self) -> dict[str, object]:
        """What the page needs to word its own strings: the entries and the plural table."""
        return {"entries": dict(self.entries), "plural_table": self.plural_table()}
