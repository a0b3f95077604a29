"""BatchHistogram.observe_ages counts exactly what one-by-one observation would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from salespulse.core.batch_histogram import BatchHistogram

BOUNDS = (-1.0, 0.0, 0.005, 0.05, 0.1, 1.0, 10.0)


def _state(histogram: BatchHistogram) -> tuple[list[int], float]:
    return list(histogram._counts), histogram._sum


def _pair() -> tuple[BatchHistogram, BatchHistogram]:
    return (
        BatchHistogram("a_seconds", "a", BOUNDS, CollectorRegistry()),
        BatchHistogram("b_seconds", "b", BOUNDS, CollectorRegistry()),
    )


instants = st.lists(st.floats(min_value=-20.0, max_value=20.0, allow_nan=False), max_size=200)


@given(instants, st.floats(min_value=-5.0, max_value=5.0, allow_nan=False))
def test_ages_land_in_the_buckets_one_by_one_observation_picks(ats: list[float], now: float):
    one_by_one, batched = _pair()
    one_by_one.observe_many(max(0.0, now - t) for t in ats)
    batched.observe_ages(ats, now)
    counts, total = _state(batched)
    expected_counts, expected_total = _state(one_by_one)
    assert counts == expected_counts
    assert math.isclose(total, expected_total, rel_tol=1e-9, abs_tol=1e-9)


def test_values_on_a_bound_count_in_that_bound_and_future_instants_as_zero():
    _, histogram = _pair()
    now = 100.0
    # ages: 0.05 (on a bound), 0 (now), -3 (an instant after now: clock skew), 11 (+Inf)
    histogram.observe_ages([now - 0.05, now, now + 3.0, now - 11.0], now)
    counts, total = _state(histogram)
    assert counts == [0, 2, 0, 1, 0, 0, 0, 1]  # -1, 0, 0.005, 0.05, 0.1, 1, 10, +Inf
    assert math.isclose(total, 11.05)
    [family] = histogram.collect()
    cumulative = {s.labels.get("le"): s.value for s in family.samples if s.name.endswith("_bucket")}
    assert cumulative["0.0"] == 2
    assert cumulative["+Inf"] == 4


def test_an_empty_batch_changes_nothing():
    _, histogram = _pair()
    histogram.observe_ages([], 5.0)
    assert _state(histogram) == ([0] * (len(BOUNDS) + 1), 0.0)
