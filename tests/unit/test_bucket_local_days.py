"""BucketNamer's quarter-hour memo of local days equals working each minute out alone,
in zones with half- and quarter-hour offsets, clock changes at midnight, and the odd
local-mean-time offsets of old dates (salespulse/core/kpi/buckets.py)."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import pytest

from salespulse.core.kpi.buckets import US_PER_MINUTE, BucketNamer, from_us, local_names

ZONES = [
    "Europe/Kyiv",  # LMT +2:02:04 until 1880, then +2:02:04 Kyiv mean time until 1924
    "Europe/Moscow",  # +2:30:17 and +3:31:19 in 1916-1919
    "Asia/Kathmandu",  # +5:45
    "Asia/Kolkata",  # +5:30
    "Australia/Lord_Howe",  # a half-hour clock change
    "America/St_Johns",  # -3:30 with summer time
    "America/Havana",  # clocks change at midnight
    "Asia/Tehran",
    "Pacific/Chatham",  # +12:45
    "UTC",
]


def _minutes_around_clock_changes(zone: ZoneInfo, year: int) -> list[int]:
    """Every minute of the two days around each change of the zone's offset in a year."""
    start = int(from_us(0).replace(year=year).timestamp()) // 60
    minutes: list[int] = []
    previous = None
    for hour in range(0, 366 * 24):
        minute = start + hour * 60
        offset = from_us(minute * US_PER_MINUTE).astimezone(zone).utcoffset()
        if previous is not None and offset != previous:
            minutes += range(minute - 24 * 60, minute + 24 * 60)
        previous = offset
    return minutes


@pytest.mark.parametrize("zone_name", ZONES)
def test_local_day_of_every_minute_as_worked_out_alone(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    minutes = [rng.randrange(-50 * 525_960, 70 * 525_960) for _ in range(20_000)]
    for year in (1919, 1924, 2025):
        minutes += _minutes_around_clock_changes(zone, year)
    namer = BucketNamer(zone)
    for minute in minutes:
        alone = local_names(from_us(minute * US_PER_MINUTE).astimezone(zone).date())
        assert namer.minute_names(minute)[2:5] == alone, (zone_name, minute)


@pytest.mark.parametrize("zone_name", ["Europe/Kyiv", "Asia/Kathmandu", "America/Havana"])
def test_written_at_a_level_is_that_level_of_the_minute_s_names(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    minutes = [rng.randrange(-50 * 525_960, 70 * 525_960) for _ in range(5_000)]
    minutes += _minutes_around_clock_changes(zone, 2025)[::7]
    by_level, reference = BucketNamer(zone), BucketNamer(zone)
    for minute in minutes:
        level = minute % 3
        assert by_level.written_at(minute, level) == reference.levels(minute)[level], minute
