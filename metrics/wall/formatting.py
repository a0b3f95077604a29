"""Numbers, money, percentages and durations as the tenant's locale writes them. Pure.

Everything the wall shows is formatted here, on the server, from CLDR data (Babel), so a
TV set to en-US shows a Ukrainian office `1 250 000 ₴` and never `UAH 1,250,000.00`.
The wall shows whole currency units: cents are noise five metres away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from functools import cache

from babel import Locale
from babel.dates import format_skeleton
from babel.numbers import (
    NumberPattern,
    format_compact_currency,
    format_decimal,
    format_percent,
    get_currency_symbol,
    parse_pattern,
)
from babel.units import format_unit

NBSP = "\u00a0"
# At or beyond this the compact form (`3,02 млн ₴`) is offered beside the full one.
COMPACT_FROM = 10_000


@cache
def _locale(tag: str) -> Locale:
    return Locale.parse(tag)


@cache
def _whole_money_pattern(tag: str) -> NumberPattern:
    """The locale's standard currency pattern without the fraction digits."""
    pattern = parse_pattern(_locale(tag).currency_formats["standard"])
    pattern.frac_prec = (0, 0)
    return pattern


def _spaced(text: str, symbol: str) -> str:
    """CLDR's currencySpacing: a symbol ending (or starting) with a letter, such as `UAH`,
    is kept apart from the digits by a no-break space (`UAH 1,250`, not `UAH1,250`).
    Babel leaves this rule out, so it is applied here."""
    if not symbol or (not symbol[-1].isalpha() and not symbol[0].isalpha()):
        return text
    at = text.find(symbol)
    if at < 0:
        return text
    end = at + len(symbol)
    if end < len(text) and symbol[-1].isalpha() and text[end].isdigit():
        text = text[:end] + NBSP + text[end:]
    if at > 0 and symbol[0].isalpha() and text[at - 1].isdigit():
        text = text[:at] + NBSP + text[at:]
    return text


@dataclass(frozen=True)
class Formatter:
    """Formats for one locale (`en`, `uk`, `ru`) and one currency (ISO code)."""

    locale: str
    currency: str
    _symbol: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_symbol", get_currency_symbol(self.currency, locale=_locale(self.locale))
        )

    def money(self, value: float | None) -> str:
        """Whole units in the locale's pattern: `1 250 000 ₴`, `$1,250,000`, `—` for none."""
        if value is None or not math.isfinite(value):
            return "—"
        text = _whole_money_pattern(self.locale).apply(
            round(value), _locale(self.locale), currency=self.currency, currency_digits=False
        )
        return _spaced(text, self._symbol)

    def money_compact(self, value: float | None) -> str:
        """The CLDR short form, up to two decimals: `3,02 млн ₴`, `$3.02M`, `350 тис. ₴`."""
        if value is None or not math.isfinite(value):
            return "—"
        if abs(value) < COMPACT_FROM:
            return self.money(value)
        text = format_compact_currency(
            value, self.currency, locale=_locale(self.locale), fraction_digits=2
        )
        return _spaced(text, self._symbol)

    def money_both(self, value: float | None) -> dict[str, str]:
        """Both forms: the page shows the full one and falls back to the short if it must."""
        return {"full": self.money(value), "short": self.money_compact(value)}

    def number(self, value: float | None, digits: int = 1) -> str:
        """A count or measure, grouped as the locale groups (`12 345`), up to ``digits``."""
        if value is None or not math.isfinite(value):
            return "—"
        pattern = "#,##0" + ("." + "#" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=_locale(self.locale))

    def percent(self, ratio: float | None) -> str:
        """A whole percentage in the locale's pattern: `42%` (en, uk), `42 %` (ru)."""
        if ratio is None or not math.isfinite(ratio):
            return "—"
        return format_percent(ratio, locale=_locale(self.locale))

    def signed_percent(self, ratio: float) -> str:
        """A change as a percentage with its sign, `+12%` or `−8%` (a real minus sign)."""
        text = self.percent(abs(ratio))
        whole = round(abs(ratio) * 100)
        return ("−" if ratio < 0 and whole else "+") + text

    def duration(self, seconds: float | None) -> str:
        """At most two units, short CLDR unit names: `45 sec`, `5 min 3 sec`, `2 ч 5 мин`."""
        if seconds is None or not math.isfinite(seconds):
            return "—"
        s = max(0, round(seconds))
        hours, minutes, secs = s // 3600, s % 3600 // 60, s % 60
        if hours:
            parts = [(hours, "duration-hour"), (minutes, "duration-minute")]
        elif minutes:
            parts = [(minutes, "duration-minute"), (secs, "duration-second")]
        else:
            parts = [(secs, "duration-second")]
        shown = [
            format_unit(amount, unit, length="short", locale=_locale(self.locale))
            for index, (amount, unit) in enumerate(parts)
            if amount or index == 0
        ]
        return " ".join(shown)

    def day(self, value: date) -> str:
        """A day of the month as the locale names it: `4 грудня`, `4 декабря`, `December 4`."""
        return format_skeleton("MMMMd", value, locale=_locale(self.locale))
