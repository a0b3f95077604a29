"""The business calendar (salespulse/core/kpi/periods.py): names, comparisons, steps,
the bucket plan and prorated targets, by hand and for any input."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salespulse.core.kpi import periods
from salespulse.core.kpi.periods import Period, PeriodError

TODAY = date(2026, 11, 20)  # a Friday in Q4


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("today", "2026-11-20", "2026-11-20"),
        ("yesterday", "2026-11-19", "2026-11-19"),
        ("this_week", "2026-11-16", "2026-11-22"),
        ("last_week", "2026-11-09", "2026-11-15"),
        ("this_month", "2026-11-01", "2026-11-30"),
        ("last_month", "2026-10-01", "2026-10-31"),
        ("this_quarter", "2026-10-01", "2026-12-31"),
        ("last_quarter", "2026-07-01", "2026-09-30"),
        ("this_year", "2026-01-01", "2026-12-31"),
        ("last_year", "2025-01-01", "2025-12-31"),
        ("2017-03", "2017-03-01", "2017-03-31"),
        ("2016-02", "2016-02-01", "2016-02-29"),
        ("2017-Q1", "2017-01-01", "2017-03-31"),
        ("2017-W11", "2017-03-13", "2017-03-19"),
        ("2020-W53", "2020-12-28", "2021-01-03"),
        ("2017-03-15", "2017-03-15", "2017-03-15"),
    ],
)
def test_names(name: str, first: str, last: str) -> None:
    assert periods.named(name, TODAY) == Period(date.fromisoformat(first), date.fromisoformat(last))


def test_last_quarter_in_january_is_the_previous_years_fourth() -> None:
    assert periods.named("last_quarter", date(2027, 1, 5)) == Period(
        date(2026, 10, 1), date(2026, 12, 31)
    )


@pytest.mark.parametrize(
    ("name", "how", "first", "last"),
    [
        ("2017-03", "previous", "2017-02-01", "2017-02-28"),
        ("2017-Q1", "previous", "2016-10-01", "2016-12-31"),
        ("2017-W11", "previous", "2017-03-06", "2017-03-12"),
        ("2017-03-01", "previous", "2017-02-28", "2017-02-28"),
        ("2017-03", "last_year", "2016-03-01", "2016-03-31"),
        ("2016-02-29", "last_year", "2015-02-28", "2015-02-28"),
        ("2016-02", "last_year", "2015-02-01", "2015-02-28"),
    ],
)
def test_comparisons(name: str, how: str, first: str, last: str) -> None:
    other = periods.compared(periods.named(name, TODAY), how)
    assert other == Period(date.fromisoformat(first), date.fromisoformat(last))


def test_to_date_cuts_both_to_the_elapsed_days() -> None:
    month = periods.named("this_month", TODAY)
    now, before = periods.to_date(month, periods.compared(month, "previous"), TODAY)
    assert now == Period(date(2026, 11, 1), TODAY)
    assert before == Period(date(2026, 10, 1), date(2026, 10, 20))
    # 31 March so far against February: February has no 31st, it ends the cut.
    march = periods.named("2027-03", TODAY)
    _, feb = periods.to_date(march, periods.compared(march, "previous"), date(2027, 3, 31))
    assert feb.last == date(2027, 2, 28)
    with pytest.raises(PeriodError, match="contains today"):
        periods.to_date(periods.named("2017-03", TODAY), march, TODAY)


def test_the_bucket_plan_reads_months_past_the_retention_or_refuses() -> None:
    assert periods.bucket_plan(periods.named("this_week", TODAY), TODAY, 400).granularity == "d"
    old = periods.named("2017-Q1", TODAY)
    plan = periods.bucket_plan(old, TODAY, 400)
    assert (plan.granularity, plan.buckets) == ("mo", ["2017-01", "2017-02", "2017-03"])
    with pytest.raises(PeriodError) as refused:
        periods.bucket_plan(periods.named("2017-W11", TODAY), TODAY, 400)
    assert refused.value.status == 422
    assert "SALESPULSE_DAY_BUCKET_RETENTION_DAYS=400" in refused.value.problem
    # The oldest day still kept: today and the 399 before it.
    edge = TODAY - timedelta(days=399)
    assert periods.bucket_plan(Period(edge, edge), TODAY, 400).buckets == [edge.isoformat()]


def test_targets_prorate_by_days_of_each_month() -> None:
    assert periods.prorated(3100, periods.named("2026-10", TODAY)) == pytest.approx(3100)
    assert periods.prorated(3000, periods.named("2026-11-16", TODAY)) == pytest.approx(100)
    # 26-31 October (6 of 31) and 1 November (1 of 30)
    week = periods.named("2026-W44", TODAY)
    assert periods.prorated(930, week) == pytest.approx(930 * 6 / 31 + 930 / 30)


def attempt(parse: Callable[[], Period]) -> Period | PeriodError:
    try:
        return parse()
    except PeriodError as error:
        return error


@given(
    text=st.text(max_size=12) | st.from_regex(r"\d{4}-(\d{2}|Q\d|W\d{2})(-\d{2})?", fullmatch=True)
)
def test_any_period_text_is_a_period_or_a_named_400(text: str) -> None:
    period = attempt(lambda: periods.named(text, TODAY))
    if isinstance(period, PeriodError):
        assert (period.field, period.status) == ("period", 400)
        return
    for how in periods.COMPARISONS:
        assert periods.compared(period, how).first < period.first
    assert periods.step_count(period, "month") == len(periods.steps(period, "month"))


@given(
    first=st.dates(min_value=date(1960, 1, 1), max_value=date(2100, 1, 1)),
    length=st.integers(-3, 900),
    how=st.sampled_from(periods.COMPARISONS),
)
def test_any_day_range_compares_and_steps_or_is_a_named_400(
    first: date, length: int, how: str
) -> None:
    last = first + timedelta(days=length)
    period = attempt(lambda: periods.between(first.isoformat(), last.isoformat()))
    if isinstance(period, PeriodError):
        assert period.field == "from"  # after to, or before 1970
        return
    other = periods.compared(period, how)
    assert other.first < period.first
    if how == "previous" and period.months() is None:
        assert (other.days, other.last + timedelta(days=1)) == (period.days, period.first)
    for step in periods.STEPS:
        cuts = periods.steps(period, step)
        assert len(cuts) == periods.step_count(period, step)
        assert sum(cut.days for cut in cuts) == period.days
        assert all(a.last + timedelta(days=1) == b.first for a, b in itertools.pairwise(cuts))


def test_years_outside_the_calendar_are_refused_not_crashed() -> None:
    for text in ("0001-01", "9999-12", "9999-Q4", "1969-W01"):
        refused = attempt(partial(periods.named, text, TODAY))
        assert isinstance(refused, PeriodError)
        assert refused.field == "period"
    for first, last, field in (
        ("1969-12-31", "2000-01-01", "from"),
        ("2000-01-01", "9999-12-31", "to"),
    ):
        refused = attempt(partial(periods.between, first, last))
        assert isinstance(refused, PeriodError)
        assert refused.field == field
