"""A backfilled history writes no minute or hour buckets (issue 19, write amplification).

Minute and hour buckets serve only the 15m, 1h and 24h windows. A replayed event keeps
its own, historical receipt; the fold is told when the batch is applied, so an event more
than an hour (a day) older than that writes no minute (hour) bucket, while the same event
received live still does (a window read at its receipt could see it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import to_us
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
