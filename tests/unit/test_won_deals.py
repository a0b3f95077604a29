"""WonDeals.in_buckets yields exactly the won deals whose instant falls in the buckets."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from metrics.read.won_deals import WonRecord, prepare_won
from salespulse.core.kpi.buckets import GRANULARITIES, BucketNamer, to_us

# Around DST changes (and a month end) in zones whose change falls at midnight or 02:00.
_AROUND = to_us(datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
_SPAN_US = 9 * 86_400 * 1_000_000

records = st.lists(
    st.tuples(
        st.integers(min_value=_AROUND - _SPAN_US, max_value=_AROUND + _SPAN_US),
        st.sampled_from(["c1", "c2", "c3", None]),
    ),
    max_size=60,
)


@given(records, st.sampled_from(["Europe/Berlin", "Asia/Beirut", "America/Havana", "UTC"]))
def test_each_bucket_yields_the_deals_won_in_it(won: list[tuple[int, str | None]], zone: str):
    namer = BucketNamer(ZoneInfo(zone))
    rows: list[WonRecord] = [
        (us, f"d-{n}", 100, client, None, ("m", "t", "p", "s"))
        for n, (us, client) in enumerate(won)
    ]
    prepared = prepare_won(rows, namer)
    for index, granularity in enumerate(GRANULARITIES):
        names = {namer.names(r[0])[index] for r in rows}
        for name in names:
            expected = sorted(
                i for i, r in enumerate(prepared.records) if namer.names(r[0])[index] == name
            )
            assert sorted(prepared.in_buckets(granularity, [name])) == expected
        assert list(prepared.in_buckets(granularity, ["no-such-bucket"])) == []


def test_records_are_ordered_by_instant_then_deal_and_repeats_marked():
    rows: list[WonRecord] = [
        (20, "d-b", 5, "c1", None, ("m", "t", "p", "s")),
        (10, "d-z", 7, "c1", None, ("m", "t", "p", "s")),
        (20, "d-a", None, None, None, ("m", "t", "p", "s")),
    ]
    prepared = prepare_won(rows, BucketNamer(ZoneInfo("UTC")))
    assert [r[1] for r in prepared.records] == ["d-z", "d-a", "d-b"]
    assert prepared.first == [True, False, False]
    assert prepared.repeat == [False, False, True]
    assert prepared.revenue_by_client == {"c1": 12}
