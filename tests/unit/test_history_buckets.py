"""A backfilled history writes no minute or hour buckets (issue 19, write amplification),
and no day bucket of a day past the day-bucket retention.

Minute and hour buckets serve only the 15m, 1h and 24h windows. A replayed event keeps
its own, historical receipt; the fold is told when the batch is applied, so an event more
than an hour (a day) older than that writes no minute (hour) bucket, while the same event
received live still does (a window read at its receipt could see it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import day_horizon_us, to_us
from salespulse.core.kpi.periods import Period, PeriodError, bucket_plan
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory, TenantsFile
from streams.fold import fold_batch
from streams.sla_fold import WaitLimit, fold_conversations
from tests.helpers import make_event

KEYS = KpiKeys("t:")
TENANTS = TenantDirectory(TenantsFile())
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def granularities(increments: dict[tuple[str, str, str], dict[str, int]]) -> set[str]:
    return {granularity for _, granularity, _ in increments}


def history(ago: timedelta, *, backfill: bool) -> list[CrmEvent]:
    at = NOW - ago
    deal = {"entity_id": "d-1", "received_at": at + timedelta(seconds=1), "backfill": backfill}
    return [
        make_event("c", "call", occurred_at=at, received_at=at + timedelta(seconds=1),
                   backfill=backfill),
        make_event("d", "deal_created", occurred_at=at, **deal),
        make_event("s", "deal_stage_changed", occurred_at=at + timedelta(minutes=1), **deal),
    ]  # fmt: skip


def test_backfilled_history_writes_only_day_month_and_all_buckets() -> None:
    applied = to_us(NOW)
    two_days = fold_batch(history(timedelta(days=2), backfill=True), TENANTS, KEYS, {},
                          applied_at_us=applied)  # fmt: skip
    assert granularities(two_days.increments) == {"d", "mo", "all"}
    # three hours back: still inside the 24h window, so its hour bucket stays
    hours = fold_batch(history(timedelta(hours=3), backfill=True), TENANTS, KEYS, {},
                       applied_at_us=applied)  # fmt: skip
    assert granularities(hours.increments) == {"h", "d", "mo", "all"}
    # ten minutes back: every granularity, as live
    recent = fold_batch(history(timedelta(minutes=10), backfill=True), TENANTS, KEYS, {},
                        applied_at_us=applied)  # fmt: skip
    assert granularities(recent.increments) == {"m", "h", "d", "mo", "all"}


def test_live_events_keep_their_receipt_as_the_reference() -> None:
    """Not a backfill: the receipt is when the ingest took it (a worker catching up on a
    backlog must still fill the windows read at those receipts)."""
    live = fold_batch(history(timedelta(days=2), backfill=False), TENANTS, KEYS, {},
                      applied_at_us=to_us(NOW))  # fmt: skip
    assert granularities(live.increments) == {"m", "h", "d", "mo", "all"}
    totals = fold_batch(history(timedelta(days=2), backfill=True), TENANTS, KEYS, {},
                        applied_at_us=to_us(NOW))  # fmt: skip
    day = {k: v for k, v in live.increments.items() if k[1] != "m" and k[1] != "h"}
    assert day == totals.increments  # the same counts where a read can see them


def test_backfilled_response_times_skip_short_buckets_too() -> None:
    at = NOW - timedelta(days=2)

    def conversation(backfill: bool) -> list[CrmEvent]:
        return [
            make_event(f"in-{backfill}", "message", occurred_at=at, direction="in",
                       received_at=at, backfill=backfill),
            make_event(f"out-{backfill}", "message", occurred_at=at + timedelta(minutes=3),
                       direction="out", received_at=at + timedelta(minutes=3),
                       backfill=backfill),
        ]  # fmt: skip

    limit = WaitLimit(now_us=to_us(NOW), default_max_wait_s=7 * 86_400)
    replayed = fold_conversations(conversation(True), TENANTS, KEYS, {}, limit)
    assert granularities(replayed.increments) == {"d", "mo", "all"}
    live = fold_conversations(conversation(False), TENANTS, KEYS, {}, limit)
    assert granularities(live.increments) == {"m", "h", "d", "mo", "all"}


def test_a_day_past_the_retention_writes_its_month_and_all_time_but_no_day_bucket() -> None:
    applied, horizon = to_us(NOW), day_horizon_us(400)
    for ago, day_written in ((timedelta(days=380), True), (timedelta(days=420), False)):
        events = history(ago, backfill=True)
        everything = fold_batch(events, TENANTS, KEYS, {}, applied_at_us=applied)
        kept = fold_batch(events, TENANTS, KEYS, {}, applied_at_us=applied,
                          day_horizon=horizon)  # fmt: skip
        assert ("d" in granularities(kept.increments)) is day_written, ago
        # the month and all-time buckets (what a period that old is read from) count the same
        assert kept.increments == {k: v for k, v in everything.increments.items()
                                   if day_written or k[1] != "d"}  # fmt: skip
        # the ids to mark are still kept by the event's own day
        assert kept.marked == everything.marked
        assert kept.event_ids == everything.event_ids
    # a live event (its receipt near it) writes its day whatever the horizon
    live = fold_batch(history(timedelta(days=420), backfill=False), TENANTS, KEYS, {},
                      applied_at_us=applied, day_horizon=horizon)  # fmt: skip
    assert "d" in granularities(live.increments)
    at = NOW - timedelta(days=420)
    chat = [
        make_event("in", "message", occurred_at=at, received_at=at, backfill=True),
        make_event("out", "message", occurred_at=at + timedelta(minutes=3), direction="out",
                   received_at=at + timedelta(minutes=3), backfill=True),
    ]  # fmt: skip
    limit = WaitLimit(now_us=applied, default_max_wait_s=7 * 86_400)
    replies = fold_conversations(chat, TENANTS, KEYS, {}, limit, day_horizon=horizon)
    assert granularities(replies.increments) == {"mo", "all"}


ZONES = ("Pacific/Kiritimati", "Europe/Kyiv", "UTC", "America/Sao_Paulo", "Pacific/Pago_Pago")
# hypothesis takes naive bounds and gives aware instants (timezones=)
_FIRST, _LAST = datetime(2000, 1, 1), datetime(2090, 1, 1)  # noqa: DTZ001


@given(
    received=st.datetimes(_FIRST, _LAST, timezones=st.just(UTC)),
    older=st.timedeltas(timedelta(0), timedelta(days=3)),
    # the first reads after the receipt are the strictest (today only moves on)
    later=st.timedeltas(timedelta(0), timedelta(days=2)),
    retention=st.integers(8, 2000),
    zone=st.sampled_from(ZONES),
)
def test_no_read_ever_asks_for_a_day_bucket_that_was_not_written(
    received: datetime, older: timedelta, later: timedelta, retention: int, zone: str
) -> None:
    """An instant past the horizon lies on a day that every later read, in any zone,
    refuses as a day (periods.bucket_plan: whole months only)."""
    horizon = timedelta(microseconds=day_horizon_us(retention))
    instant = received - horizon - timedelta(microseconds=1) - older
    local = ZoneInfo(zone)
    day = instant.astimezone(local).date()
    today = (received + later).astimezone(local).date()
    with pytest.raises(PeriodError):
        bucket_plan(Period(day, day), today, retention)
