"""Time buckets: which stored bucket of each granularity an instant falls in.

Every increment is written to one bucket per granularity but `w`; a window is read as
a fixed set of buckets (docs/kpi-semantics.md, Windows):

    m   UTC minute         15m = 15 of them, 1h = 60
    h   UTC hour           24h = 24 of them
    d   local day          today; week = the 7 days of its local ISO week
    w   local ISO week     no longer written (BucketNamer.levels)
    mo  local month        month
    all                    all

A week is read as the sum of its day buckets (summed inside Redis, like the 1h window's
60 minutes) rather than written per event: at a few hundred managers almost every event
writes fields of its own in each bucket it touches, so one bucket less is a fifth less
Redis work per event (issue 19). The day buckets hold every increment a week bucket
held, so `w` buckets that an older version wrote read the same and simply expire.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

GRANULARITIES: Final = ("m", "h", "d", "w", "mo", "all")
_WEEK: Final = GRANULARITIES.index("w")  # named, never written (BucketNamer.levels)
US_PER_MINUTE: Final = 60_000_000
US_PER_HOUR: Final = 60 * US_PER_MINUTE
_UNKNOWN: Final = -(1 << 62)  # an hour's offset not worked out yet
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE: Final = _EPOCH.date()


def to_us(instant: datetime) -> int:
    """Exact integer microseconds since the epoch.

    Integer timedelta arithmetic: exact at any magnitude, and about half the cost of
    ``timestamp()`` (which asks the tzinfo for its offset); it runs twice per event.
    A naive datetime keeps timestamp()'s meaning, local time.
    """
    try:
        since = instant - _EPOCH
    except TypeError:  # naive
        return int(instant.timestamp()) * 1_000_000 + instant.microsecond
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


# No instant is this much older than its receipt: its day bucket is always written.
NO_DAY_HORIZON: Final = 1 << 62


def day_horizon_us(retention_days: int) -> int:
    """How much older than its receipt an instant may be and still write its `d` bucket.

    A period is read from day buckets only from ``today - (retention - 1)`` on
    (periods.bucket_plan), and today only moves on: an older day's bucket is never read
    again, though a replayed history wrote it and kept it another ``retention`` days (a
    two-year replay: ~45 % of its events, the least aggregated of their writes). An
    instant older than its receipt by this is on such a day in its zone: the retention
    would do in one offset; a day more covers a zone whose offset changed by up to a day
    in between (Samoa skipped 30 December 2011), and one more is spare.
    """
    return (retention_days + 2) * 86_400 * 1_000_000


class SkippedDay(str):
    """The local day of an instant whose `d` bucket is not written (past the retention,
    see day_horizon_us): still named in its Written tuple, because the dedupe ids and
    marks of the fold are kept by day."""

    __slots__ = ()


def local_names(day: date) -> tuple[str, str, str]:
    iso = day.isocalendar()
    return day.isoformat(), f"{iso.year}-W{iso.week:02d}", f"{day.year}-{day.month:02d}"


Names = tuple[str, str, str, str, str, str]
# Names with the buckets not written replaced by None (the week; see skip_level).
Written = tuple[str | None, ...]


def skip_level(us: int, received: int | None, day_horizon: int = NO_DAY_HORIZON) -> int:
    """How many short granularities an instant skips: 0, 1 (minute), 2 (minute, hour) or
    3 (minute, hour, day).

    Minute and hour buckets serve only the 15m/1h/24h windows, read after the events'
    receipt: an instant more than 59 minutes (23 hours) older than the receipt of what
    moved it can never be inside such a window again, so its minute (hour) bucket is not
    written. Old history then costs no short buckets; history older than the day-bucket
    retention (``day_horizon``, day_horizon_us) no day bucket either.
    """
    if received is not None:
        if us < received - day_horizon:
            return 3
        if us // US_PER_HOUR < received // US_PER_HOUR - 23:
            return 2
        if us // US_PER_MINUTE < received // US_PER_MINUTE - 59:
            return 1
    return 0


class BucketNamer:
    """Names the six buckets of an instant for one zone; memoised per minute.

    Use :func:`namer_for`: the memo then lives as long as the process, not a batch.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self._zone = zone
        # minute → its written names at each skip level (the week never, see WRITTEN):
        # the fold keys its sums by these tuples, so handing out the same objects spares
        # building one per increment. Hot loops may read it directly (one lookup per
        # event), falling back to levels().
        self.by_minute: dict[int, tuple[Written, Written, Written, Written]] = {}
        self._names: dict[int, Names] = {}
        # UTC hour → the zone's offset (s) throughout it, and local day (days since the
        # epoch) → its names: a replayed history has a minute of its own for nearly every
        # event, and working out the local day took most of a new minute's cost.
        self._hour_offsets: dict[int, int | None] = {}
        self._days: dict[int, tuple[str, str, str]] = {}
        # a local day's names → what an instant of it writes at skip levels 2 and 3
        self._day_level: dict[tuple[str, str, str], tuple[Written, Written]] = {}

    def minute_names(self, minute: int) -> Names:
        """The six bucket names of a UTC minute (since the epoch)."""
        names = self._names.get(minute)
        if names is None:
            if len(self._names) > 200_000:
                self._names.clear()
            local = self._local_names(minute)
            names = (str(minute), str(minute // 60), local[0], local[1], local[2], "all")
            self._names[minute] = names
        return names

    def _local_names(self, minute: int) -> tuple[str, str, str]:
        """(day, week, month) names of a UTC minute's local day.

        The local day is (UTC seconds + offset) // 86,400 whatever the offset (even the
        +2:02:04 of Kyiv mean time): what needs working out is the offset, memoised per
        UTC hour when the hour's first and last instants share it (no clock change in
        between: it would take two within the hour to come back). An hour with a change
        is worked out per minute.
        """
        hour = minute // 60
        offset = self._hour_offsets.get(hour, _UNKNOWN)
        if offset is _UNKNOWN:
            start_us = hour * US_PER_HOUR
            first = from_us(start_us).astimezone(self._zone).utcoffset()
            last = from_us(start_us + US_PER_HOUR - 1).astimezone(self._zone).utcoffset()
            offset = int(first.total_seconds()) if first == last and first is not None else None
            if len(self._hour_offsets) > 200_000:
                self._hour_offsets.clear()
            self._hour_offsets[hour] = offset
        if offset is None:
            return local_names(from_us(minute * US_PER_MINUTE).astimezone(self._zone).date())
        day = (minute * 60 + offset) // 86_400
        names = self._days.get(day)
        if names is None:
            if len(self._days) > 200_000:
                self._days.clear()
            names = self._days[day] = local_names(_EPOCH_DATE + timedelta(days=day))
        return names

    def levels(self, minute: int) -> tuple[Written, Written, Written, Written]:
        """The names a UTC minute writes at skip levels 0 to 3."""
        levels = self.by_minute.get(minute)
        if levels is None:
            if len(self.by_minute) > 200_000:
                self.by_minute.clear()
            names = self.minute_names(minute)
            written = (*names[:_WEEK], None, *names[_WEEK + 1 :])
            day, past = _day_levels(names[2:5])
            levels = (written, (None, *written[1:]), day, past)
            self.by_minute[minute] = levels
        return levels

    def written_at(self, minute: int, level: int) -> Written:
        """``levels(minute)[level]``; a day-level one (history) without naming the minute.

        A replayed history has a minute of its own for nearly every event: naming each
        (and memoising its three tuples) cost more than the rest of its bucket work.
        """
        levels = self.by_minute.get(minute)
        if levels is not None:
            return levels[level]
        if level < 2:
            return self.levels(minute)[level]
        local = self._local_names(minute)
        written = self._day_level.get(local)
        if written is None:
            if len(self._day_level) > 200_000:
                self._day_level.clear()
            written = self._day_level[local] = _day_levels(local)
        return written[level - 2]

    def names(self, us: int) -> Names:
        return self.minute_names(us // US_PER_MINUTE)

    def written(self, us: int, received: int | None, day_horizon: int = NO_DAY_HORIZON) -> Written:
        """The names to write, short buckets skipped by :func:`skip_level`."""
        return self.written_at(us // US_PER_MINUTE, skip_level(us, received, day_horizon))


def _day_levels(local: tuple[str, str, str]) -> tuple[Written, Written]:
    """What an instant of a local day (day, week, month) writes at skip levels 2 and 3."""
    day, _, month = local
    return (None, None, day, None, month, "all"), (None, None, SkippedDay(day), None, month, "all")


def window_buckets(window: str, now: datetime, zone: ZoneInfo) -> tuple[str, list[str]]:
    """(granularity, bucket names) that make up a window at `now`."""
    us = to_us(now)
    if window == "15m":
        minute = us // US_PER_MINUTE
        return "m", [str(minute - back) for back in range(15)]
    if window == "1h":
        minute = us // US_PER_MINUTE
        return "m", [str(minute - back) for back in range(60)]
    if window == "24h":
        hour = us // US_PER_HOUR
        return "h", [str(hour - back) for back in range(24)]
    local_day = now.astimezone(zone).date()
    day, _, month = local_names(local_day)
    if window == "today":
        return "d", [day]
    if window == "week":
        monday = local_day - timedelta(days=local_day.weekday())
        return "d", [(monday + timedelta(days=n)).isoformat() for n in range(7)]
    if window == "month":
        return "mo", [month]
    if window == "all":
        return "all", ["all"]
    raise ValueError(f"unknown window {window!r}")


_namers: dict[str, BucketNamer] = {}


def namer_for(zone: ZoneInfo) -> BucketNamer:
    """The process-wide namer of a zone (its memo survives from batch to batch)."""
    namer = _namers.get(zone.key)
    if namer is None:
        namer = _namers[zone.key] = BucketNamer(zone)
    return namer
