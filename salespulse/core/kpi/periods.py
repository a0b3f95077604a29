"""The business calendar: named periods → local days → stored buckets. Pure.

A period is a run of whole local days of the tenant's zone (inclusive first and last
day). Day buckets (`d`) are named by local date (salespulse/core/kpi/buckets.py), so a
period is read as the sum of its day buckets: exact, and DST-correct by construction (a
23- or 25-hour day is one bucket like any other). Periods older than the day-bucket
retention are read from month buckets (`mo`) when they are whole months; otherwise they
cannot be answered (`PeriodError`, HTTP 422).

Names (docs/kpi-semantics.md, "Periods"):

    today yesterday this_week last_week this_month last_month this_quarter last_quarter
    this_year last_year          relative to the tenant's local today
    2017-03  2017-Q1  2017-W11  2017-03-15      a calendar month, quarter, ISO week, day
    from=2017-03-01&to=2017-03-31               inclusive days
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

RELATIVE: Final = (
    "today",
    "yesterday",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_quarter",
    "last_quarter",
    "this_year",
    "last_year",
)
COMPARISONS: Final = ("previous", "last_year")
STEPS: Final = ("day", "week", "month")

# Years a period may name: KPIs are stored from the epoch on, and a margin both sides
# keeps every comparison and step inside what `date` can hold (year 1 to 9999).
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 9998
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class PeriodError(ValueError):
    """A period that cannot be named or answered; ``field`` is the query parameter."""

    def __init__(self, field: str, problem: str, *, status: int = 400) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


@dataclass(frozen=True)
class Period:
    """Inclusive local days [first, last]."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def day_names(self) -> list[str]:
        return [(self.first + timedelta(days=i)).isoformat() for i in range(self.days)]

    def months(self) -> list[str] | None:
        """The month names it is made of when it is whole months, else None."""
        if self.first.day != 1 or (self.last + timedelta(days=1)).day != 1:
            return None
        names = []
        year, month = self.first.year, self.first.month
        while (year, month) <= (self.last.year, self.last.month):
            names.append(f"{year}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return names

    def start(self, zone: ZoneInfo) -> datetime:
        """The instant the period starts: local midnight of its first day (aware)."""
        return _midnight(self.first, zone)

    def end(self, zone: ZoneInfo) -> datetime:
        """The instant it ends (exclusive): local midnight after its last day."""
        return _midnight(self.last + timedelta(days=1), zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    # In UTC: two aware datetimes of one zone subtract as wall times (29 March in Berlin
    # would last 24 hours, not 23). A midnight in a DST gap resolves with fold=0 to the
    # offset before the gap, the instant the day starts; day buckets are named by date,
    # so bucket reads do not depend on this instant.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _month_span(year: int, month: int, count: int = 1) -> Period:
    first = date(year, month, 1)
    end_index = year * 12 + month - 1 + count
    end = date(end_index // 12, end_index % 12 + 1, 1)
    return Period(first, end - timedelta(days=1))


def _add_months(day: date, months: int) -> tuple[int, int]:
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def relative(name: str, today: date) -> Period:
    """A named period relative to the tenant's local today."""
    if name == "today":
        return Period(today, today)
    if name == "yesterday":
        day = today - timedelta(days=1)
        return Period(day, day)
    monday = today - timedelta(days=today.weekday())
    if name == "this_week":
        return Period(monday, monday + timedelta(days=6))
    if name == "last_week":
        return Period(monday - timedelta(days=7), monday - timedelta(days=1))
    if name in ("this_month", "last_month"):
        year, month = _add_months(today, 0 if name == "this_month" else -1)
        return _month_span(year, month)
    quarter_month = (today.month - 1) // 3 * 3 + 1
    if name in ("this_quarter", "last_quarter"):
        year, month = _add_months(today.replace(month=quarter_month), 0 if "this" in name else -3)
        return _month_span(year, month, 3)
    if name in ("this_year", "last_year"):
        year = today.year if name == "this_year" else today.year - 1
        return Period(date(year, 1, 1), date(year, 12, 31))
    raise PeriodError("period", _PERIOD_PROBLEM)


_PERIOD_PROBLEM = (
    f"one of {', '.join(RELATIVE)}, or a month (2017-03), quarter (2017-Q1), "
    "ISO week (2017-W11) or day (2017-03-15)"
)


def parse_day(field: str, text: str) -> date:
    if not _DAY.fullmatch(text):
        raise PeriodError(field, "a day as YYYY-MM-DD")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PeriodError(field, "a day as YYYY-MM-DD (no such date)") from None
    _check_year(field, day.year)
    return day


def _check_year(field: str, year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise PeriodError(field, f"a year from {MIN_YEAR} to {MAX_YEAR}")


def named(text: str, today: date) -> Period:
    """`period=`: a relative name or a calendar name."""
    if text in RELATIVE:
        return relative(text, today)
    if len(text) >= 4 and text[:4].isdigit():
        _check_year("period", int(text[:4]))
    if match := _MONTH.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        if 1 <= month <= 12 and year >= 1:
            return _month_span(year, month)
    elif match := _QUARTER.fullmatch(text):
        year = int(match[1])
        if year >= 1:
            return _month_span(year, (int(match[2]) - 1) * 3 + 1, 3)
    elif match := _WEEK.fullmatch(text):
        year, week = int(match[1]), int(match[2])
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise PeriodError("period", f"{year} has no ISO week {week}") from None
        return Period(monday, monday + timedelta(days=6))
    elif _DAY.fullmatch(text):
        day = parse_day("period", text)
        return Period(day, day)
    raise PeriodError("period", _PERIOD_PROBLEM)


def between(first_text: str, last_text: str) -> Period:
    """`from=&to=`: inclusive days; `from` after `to` is refused."""
    first, last = parse_day("from", first_text), parse_day("to", last_text)
    if first > last:
        raise PeriodError("from", "after to")
    return Period(first, last)


def compared(period: Period, how: str) -> Period:
    """The period a comparison reads: the one before it, or the same one a year earlier.

    Whole months compare with whole months (March with February, Q2 with Q1); other
    periods with as many days right before (a week with the week before). A year earlier
    keeps the calendar dates (29 February → 28 February).
    """
    months = period.months()
    if how == "previous":
        if months is not None:
            year, month = _add_months(period.first, -len(months))
            return _month_span(year, month, len(months))
        return Period(period.first - timedelta(days=period.days), period.first - timedelta(days=1))
    if how == "last_year":
        if months is not None:
            return _month_span(period.first.year - 1, period.first.month, len(months))
        return Period(_year_before(period.first), _year_before(period.last))
    raise PeriodError("compare", f"one of {', '.join(COMPARISONS)}")


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def to_date(period: Period, other: Period, today: date) -> tuple[Period, Period]:
    """Both periods cut to the elapsed part: the first days up to today, the same count.

    Day resolution: day buckets are the finest kept beyond two days, so the other
    period's last day counts whole, while today counts so far (docs/kpi-semantics.md).
    """
    if not period.first <= today <= period.last:
        raise PeriodError("to_date", "needs a period that contains today")
    elapsed = (today - period.first).days
    other_last = min(other.first + timedelta(days=elapsed), other.last)
    return Period(period.first, today), Period(other.first, other_last)


@dataclass(frozen=True)
class BucketPlan:
    """What a period reads: granularity `d` or `mo`, and the bucket names."""

    granularity: str
    buckets: list[str]


def bucket_plan(period: Period, today: date, retention_days: int) -> BucketPlan:
    """Day buckets while every day is within the retention, else whole months.

    A day bucket lives `retention_days` after its last write, and the last write of a
    day's bucket is at the latest that day's end plus the lateness: a day from
    ``today - (retention_days - 1)`` on is always there. Month buckets live
    SALESPULSE_MONTH_BUCKET_RETENTION_DAYS (five years) after the month's last write.
    """
    oldest = today - timedelta(days=retention_days - 1)
    if period.first >= oldest:
        return BucketPlan("d", period.day_names())
    months = period.months()
    if months is None:
        raise PeriodError(
            "period",
            f"days before {oldest.isoformat()} are past the day-bucket retention "
            f"(SALESPULSE_DAY_BUCKET_RETENTION_DAYS={retention_days}); ask for whole months",
            status=422,
        )
    return BucketPlan("mo", months)


def step_count(period: Period, step: str) -> int:
    """How many points `steps` makes, without making them (a limit is checked first)."""
    if step == "day":
        return period.days
    if step == "week":
        monday = period.first - timedelta(days=period.first.weekday())
        return (period.last - monday).days // 7 + 1
    if step == "month":
        return (
            (period.last.year - period.first.year) * 12 + period.last.month - period.first.month + 1
        )
    raise PeriodError("step", f"one of {', '.join(STEPS)}")


def steps(period: Period, step: str) -> list[Period]:
    """The period cut into consecutive days, ISO weeks or months (clipped to it)."""
    if step not in STEPS:
        raise PeriodError("step", f"one of {', '.join(STEPS)}")
    out: list[Period] = []
    first = period.first
    while first <= period.last:
        if step == "day":
            last = first
        elif step == "week":
            last = first + timedelta(days=6 - first.weekday())
        else:
            year, month = _add_months(first, 1)
            last = date(year, month, 1) - timedelta(days=1)
        last = min(last, period.last)
        out.append(Period(first, last))
        first = last + timedelta(days=1)
    return out


def prorated(monthly: float, period: Period) -> float:
    """A monthly target spread over a period: each day holds 1/(days in its month)."""
    total = 0.0
    day = period.first
    while day <= period.last:
        year, month = _add_months(day, 1)
        month_end = date(year, month, 1) - timedelta(days=1)
        chunk_last = min(month_end, period.last)
        total += monthly * ((chunk_last - day).days + 1) / month_end.day
        day = chunk_last + timedelta(days=1)
    return total
