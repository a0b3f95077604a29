"""Business hours: worked examples (weekend, holidays, DST, days off) and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from salespulse.core.business_hours import BusinessCalendar, BusinessHours, parse_range

BERLIN = ZoneInfo("Europe/Berlin")
MOSCOW = ZoneInfo("Europe/Moscow")
HOUR = 3600


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def calendar(**fields: object) -> BusinessCalendar:
    fields.setdefault("timezone", "Europe/Berlin")
    return BusinessCalendar(BusinessHours.model_validate(fields))


GERMANY = calendar(country="DE")


def test_a_reply_inside_business_hours_counts_all_its_time() -> None:
    # Tuesday 2026-11-17, 10:00 → 10:45
    assert GERMANY.business_seconds(berlin(2026, 11, 17, 10), berlin(2026, 11, 17, 10, 45)) == 2700


def test_a_reply_outside_business_hours_counts_only_open_time() -> None:
    # Tuesday 17:30 → Wednesday 09:15: 30 min before closing + 15 min after opening
    start, end = berlin(2026, 11, 17, 17, 30), berlin(2026, 11, 18, 9, 15)
    assert GERMANY.business_seconds(start, end) == 45 * 60
    # Wholly at night: nothing
    assert GERMANY.business_seconds(berlin(2026, 11, 17, 19), berlin(2026, 11, 18, 8)) == 0


def test_across_a_weekend() -> None:
    # Friday 2026-11-20 17:00 → Monday 2026-11-23 10:00: 1 h Friday + 1 h Monday
    assert GERMANY.business_seconds(berlin(2026, 11, 20, 17), berlin(2026, 11, 23, 10)) == 2 * HOUR


def test_across_a_german_public_holiday() -> None:
    # 2026-10-03 (German Unity Day) is a Saturday; 2026-12-25/26 are Fri/Sat. Use Christmas:
    # Thursday 2026-12-24 17:00 → Monday 2026-12-28 10:00 = 1 h (Thu) + 1 h (Mon).
    start, end = berlin(2026, 12, 24, 17), berlin(2026, 12, 28, 10)
    assert GERMANY.business_seconds(start, end) == 2 * HOUR
    assert calendar().business_seconds(start, end) == 2 * HOUR + 9 * HOUR  # no country
    assert GERMANY.is_closed_day(date(2026, 10, 3))
    assert not GERMANY.is_open(berlin(2026, 12, 25, 10))


def test_across_the_russian_new_year_holidays() -> None:
    russia = calendar(timezone="Europe/Moscow", country="RU")
    # Tuesday 2025-12-30 17:00 → Monday 2026-01-12 10:00: Dec 31 and Jan 9 are substituted
    # days off, Jan 1–8 holidays, 10–11 the weekend: 1 h (Dec 30) + 1 h (Jan 12).
    start = datetime(2025, 12, 30, 17, tzinfo=MOSCOW)
    end = datetime(2026, 1, 12, 10, tzinfo=MOSCOW)
    assert russia.business_seconds(start, end) == 2 * HOUR
    assert russia.next_open(datetime(2026, 1, 1, 12, tzinfo=MOSCOW)) == datetime(
        2026, 1, 12, 9, tzinfo=MOSCOW
    )


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_a_nine_to_six_day_is_nine_hours_on_dst_change_days(day: date) -> None:
    every_day = calendar(weekly={"sun": ["09:00-18:00"]})
    start = datetime.combine(day, datetime.min.time(), BERLIN)
    assert every_day.business_seconds(start, start + timedelta(days=1)) == 9 * HOUR


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)])
def test_round_the_clock_counts_elapsed_time_on_dst_change_days(day: date, hours: int) -> None:
    always = calendar(weekly={"sun": ["00:00-24:00"]})
    start = datetime.combine(day, datetime.min.time(), BERLIN)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), BERLIN)
    assert always.business_seconds(start, end) == hours * HOUR


def test_a_wait_across_the_spring_change_counts_real_seconds() -> None:
    # Friday 2026-03-27 17:00 CET → Monday 2026-03-30 10:00 CEST: 1 h + 1 h
    assert GERMANY.business_seconds(berlin(2026, 3, 27, 17), berlin(2026, 3, 30, 10)) == 2 * HOUR


def test_a_range_starting_in_the_skipped_hour_opens_at_the_change() -> None:
    early = calendar(weekly={"sun": ["02:30-04:00"]})
    assert early.open_intervals(date(2026, 3, 29)) == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC))
    ]


def test_a_custom_day_off_is_closed() -> None:
    with_day_off = calendar(country="DE", days_off=["2026-11-18"])
    start, end = berlin(2026, 11, 17, 17), berlin(2026, 11, 19, 10)
    assert GERMANY.business_seconds(start, end) == HOUR + 9 * HOUR + HOUR
    assert with_day_off.business_seconds(start, end) == 2 * HOUR


def test_several_ranges_a_day_and_days_without_any() -> None:
    split = calendar(weekly={"mon": ["09:00-13:00", "14:00-18:00"], "sat": ["10:00-12:00"]})
    monday = date(2026, 11, 16)
    assert split.business_seconds(berlin(2026, 11, 16, 12), berlin(2026, 11, 16, 15)) == 2 * HOUR
    assert not split.is_open(berlin(2026, 11, 16, 13, 30))
    assert split.is_open(berlin(2026, 11, 16, 14))
    assert not split.is_open(berlin(2026, 11, 16, 18))  # closing instant is not open
    assert split.next_open(berlin(2026, 11, 16, 13, 30)) == berlin(2026, 11, 16, 14)
    assert split.next_open(berlin(2026, 11, 16, 18)) == berlin(2026, 11, 21, 10)  # Saturday
    assert split.is_closed_day(monday + timedelta(days=1))  # Tuesday has no ranges


def test_next_open_is_the_instant_itself_when_open_and_none_when_never() -> None:
    at = berlin(2026, 11, 17, 11, 5, 7)
    assert GERMANY.next_open(at) == at
    assert calendar(weekly={}).next_open(at) is None


def test_empty_or_reversed_spans_are_zero() -> None:
    at = berlin(2026, 11, 17, 11)
    assert GERMANY.business_seconds(at, at) == 0
    assert GERMANY.business_seconds(at, at - timedelta(hours=1)) == 0


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        GERMANY.business_seconds(datetime(2026, 11, 17, 9), berlin(2026, 11, 17, 10))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weekly": {"mon": ["9-18"]}}, "mon: '9-18': expected HH:MM-HH:MM"),
        ({"weekly": {"mon": ["18:00-09:00"]}}, "start must be before end"),
        ({"weekly": {"mon": ["09:00-25:00"]}}, "25:00 is not a time of day"),
        ({"weekly": {"mon": ["09:00-13:00", "12:00-18:00"]}}, "mon: ranges overlap"),
        ({"weekly": {"monday": ["09:00-18:00"]}}, "weekly.monday"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"country": "XX"}, "'XX' has no public-holiday calendar"),
        ({"country": "DE", "subdivision": "ZZ"}, "'ZZ' is not a subdivision of DE"),
        ({"subdivision": "BY"}, "subdivision needs a country"),
        ({"days_off": ["2026-13-01"]}, "days_off"),
    ],
)
def test_bad_configs_name_the_problem(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BusinessHours.model_validate(fields)


def test_parse_range_accepts_end_of_day() -> None:
    assert parse_range("00:00-24:00") == (0, 1440)


def test_config_is_frozen() -> None:
    config = BusinessHours()
    with pytest.raises(ValidationError):
        config.timezone = "UTC"  # type: ignore[misc]


# Around both 2026 EU changes and a German holiday, to the microsecond.
instants = st.datetimes(
    min_value=datetime(2026, 3, 20),  # noqa: DTZ001 (hypothesis bounds are naive)
    max_value=datetime(2026, 11, 10),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, BERLIN, MOSCOW]),
)
CALENDARS = [
    GERMANY,
    calendar(weekly={"sun": ["00:00-24:00"], "sat": ["02:15-02:45", "03:00-04:00"]}),
    calendar(timezone="America/New_York", country="US", days_off=["2026-07-06"]),
]


@settings(deadline=None)
@given(st.lists(instants, min_size=3, max_size=3), st.sampled_from(CALENDARS))
def test_business_seconds_are_additive_and_bounded(
    points: list[datetime], cal: BusinessCalendar
) -> None:
    a, b, c = sorted(points)
    whole = cal.business_seconds(a, c)
    assert whole == cal.business_seconds(a, b) + cal.business_seconds(b, c)
    assert 0 <= whole <= (c - a).total_seconds() + 1


@settings(deadline=None)
@given(instants, st.sampled_from(CALENDARS))
def test_next_open_is_open_and_nothing_is_open_before_it(
    at: datetime, cal: BusinessCalendar
) -> None:
    opens = cal.next_open(at)
    assert opens is not None
    assert cal.is_open(opens)
    assert cal.business_seconds(at, opens) == 0
    # Compared in UTC: Python never calls a wall time in a DST gap equal across zones.
    assert cal.is_open(at) == (opens == at.replace(microsecond=0).astimezone(UTC))
