"""The DDSketch of salespulse/core/kpi/sketch.py: ≤ 1 % relative error, merge = union."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from salespulse.core.kpi.sketch import GAMMA, DDSketch, bin_key, bin_value, quantile

# Durations in µs up to two years, negative ones (won before created) and zeros included.
values = st.integers(min_value=-(2 * 365 * 86_400 * 10**6), max_value=2 * 365 * 86_400 * 10**6)
samples = st.lists(values, min_size=1, max_size=300)
percents = st.sampled_from([1, 10, 25, 50, 75, 90, 95, 99, 100])


def exact_percentile(sample: list[int], percent: int) -> int:
    """Nearest rank: the ⌈percent × n / 100⌉-th smallest value."""
    ordered = sorted(sample)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1]


@given(samples, percents)
def test_a_percentile_is_within_one_percent_of_the_exact_one(
    sample: list[int], percent: int
) -> None:
    estimate = DDSketch.of(sample).quantile(percent)
    exact = exact_percentile(sample, percent)
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * abs(exact)


@given(samples, samples)
def test_merging_two_sketches_is_the_sketch_of_the_union(a: list[int], b: list[int]) -> None:
    assert DDSketch.of(a).merge(DDSketch.of(b)).bins == DDSketch.of(a + b).bins


@given(values)
def test_every_value_is_within_one_percent_of_its_bin(value: int) -> None:
    assert abs(bin_value(bin_key(value)) - value) <= 0.01 * abs(value)


@given(values.filter(lambda value: value != 0))
def test_bin_i_holds_the_values_above_gamma_to_i_minus_1_up_to_gamma_to_i(value: int) -> None:
    key = bin_key(value)
    assert key * value > 0  # the sign is kept
    index = abs(key) - 1
    assert index == 0 or GAMMA ** (index - 1) < abs(value)
    assert abs(value) <= GAMMA**index


def test_the_zero_bin_and_neighbours():
    assert bin_key(0) == 0
    assert bin_key(1) == 1  # bin 0: (1/g, 1]
    assert bin_key(-2) == -bin_key(2)
    assert bin_key(1_000_000) > bin_key(970_000)  # 3 % apart: never one bin


def test_the_nearest_rank_of_a_few_values():
    bins = DDSketch.of([10_000, 20_000, 30_000, 40_000]).bins
    median = quantile(bins, 50)
    assert median is not None
    assert abs(median - 20_000) <= 200
    p90 = quantile(bins, 90)
    assert p90 is not None
    assert abs(p90 - 40_000) <= 400
    assert quantile({}, 50) is None
    assert quantile({5: -1}, 50) is None  # a negative count reads as none


def test_negative_and_zero_values_keep_their_order():
    sketch = DDSketch.of([-5_000, 0, 0, 7_000])
    low, mid, high = sketch.quantile(25), sketch.quantile(50), sketch.quantile(100)
    assert low is not None
    assert -5_050 <= low <= -4_950
    assert mid == 0.0
    assert high is not None
    assert 6_930 <= high <= 7_070
    assert sketch.count == 4
