"""The batch oracle for periods: every KPI of a run of local days, recomputed from scratch.

Written from docs/kpi-semantics.md ("Periods") alone, as tests/oracle/batch.py is for
windows: a period is the instants from the local midnight of its first day to the local
midnight after its last day, in the tenant's zone; the calendar names and comparisons are
worked out here with plain date arithmetic, not with salespulse/core/kpi/periods.py.
Snapshot KPIs (open, ready, stuck deals) are states, not sums: they are left out.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DEFAULT_LATENESS_S
from salespulse.core.tenants import TenantConfig
from tests.oracle.batch import _deals, _local_midnight, _Span, counted_events, span_components

_SNAPSHOT_HEADS = ("open:", "ready:", "stuck:")


def period_components(
    events: Sequence[CrmEvent],
    config: TenantConfig,
    tenant: str,
    first: date,
    last: date,
    by: str | None,
    lateness_s: int = DEFAULT_LATENESS_S,
) -> dict[str, dict[str, int]]:
    """{group: {component: int}} over the local days [first, last], snapshot KPIs left out."""
    zone = config.zone
    span = _Span(_local_midnight(first, zone), _local_midnight(last + timedelta(days=1), zone))
    counted = counted_events(events, tenant, lateness_s, config)
    deals = _deals(counted, config)
    groups = span_components(counted, deals, config, span, by, all_time=False).components()
    for group in groups.values():
        for name in [name for name in group if name.startswith(_SNAPSHOT_HEADS)]:
            del group[name]
    return {name: group for name, group in groups.items() if group or name == ""}


def calendar_days(name: str) -> tuple[date, date]:
    """A calendar name's first and last day: 2017-03, 2017-Q1, 2017-W11, 2017-03-15."""
    if "-Q" in name:
        year, quarter = int(name[:4]), int(name[-1])
        first_month = 3 * quarter - 2
        return date(year, first_month, 1), _month_last(year, first_month + 2)
    if "-W" in name:
        year, week = int(name[:4]), int(name[6:])
        # ISO week 1 holds the year's first Thursday; its Monday starts the week.
        jan4 = date(year, 1, 4)
        monday = jan4 - timedelta(days=jan4.weekday()) + timedelta(weeks=week - 1)
        return monday, monday + timedelta(days=6)
    if len(name) == 7:
        year, month = int(name[:4]), int(name[5:])
        return date(year, month, 1), _month_last(year, month)
    day = date.fromisoformat(name)
    return day, day


def _month_last(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def previous_days(first: date, last: date) -> tuple[date, date]:
    """compare=previous: the same number of whole months before, else as many days before."""
    whole_months = first.day == 1 and (last + timedelta(days=1)).day == 1
    if whole_months:
        months = (last.year - first.year) * 12 + last.month - first.month + 1
        start_year, start_month = first.year, first.month - months
        while start_month < 1:
            start_year, start_month = start_year - 1, start_month + 12
        end_year, end_month = first.year, first.month - 1
        if end_month < 1:
            end_year, end_month = end_year - 1, 12
        return date(start_year, start_month, 1), _month_last(end_year, end_month)
    length = (last - first).days + 1
    return first - timedelta(days=length), first - timedelta(days=1)


def local_day(instant: datetime, config: TenantConfig) -> date:
    return instant.astimezone(config.zone).date()
