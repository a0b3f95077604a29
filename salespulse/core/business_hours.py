"""Business hours: when a tenant (or a team) is open, and how much open time lies between
two instants. Pure: no I/O (public holidays come from the `holidays` package, which ships
its data).

    business_hours:
      timezone: Europe/Berlin
      weekly: {mon: ["09:00-13:00", "14:00-18:00"], tue: ["09:00-18:00"], sat: []}
      country: DE            # public holidays of this country ...
      subdivision: BY        # ... and, optionally, of this state / province
      days_off: [2026-12-24, 2026-12-31]

Definitions (docs/kpi-semantics.md style):

* A day is *closed* when it is a public holiday of `country` (`subdivision`), a
  `days_off` date, or a weekday without ranges. Weekdays not named in `weekly` have no
  ranges; when `weekly` is not given at all it is Monday–Friday 09:00–18:00.
* On an open local day D, each range "HH:MM-HH:MM" is open from the instant the
  tenant's wall clock shows the start on D until it shows the end (`24:00`: the next
  midnight). Open time is *elapsed* time, so on a DST day a 09:00-18:00 range is still
  9 h and a 00:00-24:00 range is 23 h or 25 h.
* A wall time skipped by a spring-forward change opens/closes at the change; a repeated
  wall time (autumn) means its first occurrence.
* `business_seconds(start, end)` is the measure of open time in [start, end), with both
  instants floored to the whole second, so that it is an integer and exactly additive:
  bs(a, c) == bs(a, b) + bs(b, c) for a ≤ b ≤ c.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# next_open looks this far ahead; a calendar closed for longer is treated as never opening.
_LOOKAHEAD_DAYS = 800

# (start, end) in minutes after local midnight, 0 ≤ start < end ≤ 1440.
Minutes = tuple[int, int]


def parse_range(text: str) -> Minutes:
    """ "09:00-18:00" → (540, 1080); ValueError naming the range and the problem."""
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM, e.g. '09:00-18:00'")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    for hours, minutes in ((h1, m1), (h2, m2)):
        if minutes > 59 or hours > 24 or (hours == 24 and minutes):
            raise ValueError(f"{text!r}: {hours:02d}:{minutes:02d} is not a time of day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= end:
        # Ranges across midnight are written as two days' ranges; saying so beats guessing.
        raise ValueError(f"{text!r}: start must be before end (split a range across midnight)")
    return start, end


def _default_weekly() -> dict[Weekday, tuple[str, ...]]:
    return {day: ("09:00-18:00",) for day in WEEKDAYS[:5]}


class BusinessHours(BaseModel):
    """One calendar: weekly hours, zone, public holidays and custom days off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    weekly: dict[Weekday, tuple[str, ...]] = Field(default_factory=_default_weekly)
    # ISO 3166 code the `holidays` package knows (e.g. DE, RU, US); None: no public holidays.
    country: str | None = None
    subdivision: str | None = None
    days_off: frozenset[date] = frozenset()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _valid_ranges(cls, value: dict[Weekday, tuple[str, ...]]) -> dict[Weekday, tuple[str, ...]]:
        for day, ranges in value.items():
            try:
                parsed = sorted(parse_range(text) for text in ranges)
            except ValueError as exc:
                raise ValueError(f"{day}: {exc}") from None
            for (_, end), (start, _) in pairwise(parsed):
                if start < end:
                    raise ValueError(f"{day}: ranges overlap: {list(ranges)}")
        return value

    @model_validator(mode="after")
    def _known_country(self) -> BusinessHours:
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("subdivision needs a country")
            return self
        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(f"country: {self.country!r} has no public-holiday calendar")
        if self.subdivision is not None and self.subdivision not in supported[self.country]:
            raise ValueError(
                f"subdivision: {self.subdivision!r} is not a subdivision of {self.country}; "
                f"known: {', '.join(supported[self.country]) or 'none'}"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _floor_second(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"an aware datetime is needed, got {instant!r}")
    seconds = (instant - _EPOCH) // _SECOND
    return _EPOCH + timedelta(seconds=seconds)


class BusinessCalendar:
    """Open time of one :class:`BusinessHours`. Cheap to query; build once per config."""

    def __init__(self, config: BusinessHours) -> None:
        self.config = config
        self._zone = config.zone
        self._ranges: dict[int, tuple[Minutes, ...]] = {
            index: tuple(sorted(parse_range(text) for text in config.weekly.get(day, ())))
            for index, day in enumerate(WEEKDAYS)
        }
        self._holidays_by_year: dict[int, frozenset[date]] = {}

    @cached_property
    def _ever_open(self) -> bool:
        return any(self._ranges.values())

    def _public_holidays(self, year: int) -> frozenset[date]:
        # Built per year on first use and kept: the `holidays` objects compute lazily and
        # are not meant to be shared across threads, a frozenset is.
        held = self._holidays_by_year.get(year)
        if held is None:
            days: frozenset[date] = frozenset()
            if self.config.country is not None:
                found = holidays.country_holidays(
                    self.config.country, subdiv=self.config.subdivision, years=year
                )
                days = frozenset(found)
            held = self._holidays_by_year[year] = days
        return held

    def is_closed_day(self, day: date) -> bool:
        """A holiday, a custom day off, or a weekday without hours."""
        return (
            not self._ranges[day.weekday()]
            or day in self.config.days_off
            or day in self._public_holidays(day.year)
        )

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant the local wall clock shows `wall` (naive), see module docstring."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:
            return first
        # Skipped by a spring-forward change: fold=1 reads it with the later offset, which
        # lands before the change; the change lies between the two readings. Bisect to it
        # (at most ~12 steps for a one-hour gap; only on such rare boundaries).
        low = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        high = first
        low_offset = low.astimezone(self._zone).utcoffset()
        while high - low > _SECOND:
            middle = _floor_second(low + (high - low) / 2)
            if middle.astimezone(self._zone).utcoffset() == low_offset:
                low = middle
            else:
                high = middle
        return high

    def open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open [from, until) UTC intervals of one local day; empty on a closed day."""
        if self.is_closed_day(day):
            return []
        midnight = datetime.combine(day, time())
        intervals = []
        for start, end in self._ranges[day.weekday()]:
            opens = self._instant(midnight + timedelta(minutes=start))
            closes = self._instant(midnight + timedelta(minutes=end))
            if opens < closes:  # a range wholly inside a skipped hour has no time at all
                intervals.append((opens, closes))
        return intervals

    def _local_day(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    def business_seconds(self, start: datetime, end: datetime) -> int:
        """Open seconds in [start, end); 0 when start ≥ end. Iterates days, not seconds."""
        start, end = _floor_second(start), _floor_second(end)
        if start >= end:
            return 0
        total = timedelta()
        day, last = self._local_day(start), self._local_day(end)
        while day <= last:
            for opens, closes in self.open_intervals(day):
                overlap = min(closes, end) - max(opens, start)
                if overlap > timedelta():
                    total += overlap
            day += timedelta(days=1)
        return total // _SECOND

    def is_open(self, at: datetime) -> bool:
        """Whether the instant lies inside an open interval (from inclusive, until not)."""
        at = _floor_second(at)
        return any(
            opens <= at < closes for opens, closes in self.open_intervals(self._local_day(at))
        )

    def next_open(self, at: datetime) -> datetime | None:
        """`at` (to the second) when open, else the next instant that opens; in UTC.

        None when nothing opens within ~2 years (no weekly hours, or all days off).
        """
        at = _floor_second(at)
        if not self._ever_open:
            return None
        day = self._local_day(at)
        for _ in range(_LOOKAHEAD_DAYS):
            for opens, closes in self.open_intervals(day):
                if at < closes:
                    return max(opens, at)
            day += timedelta(days=1)
        return None
