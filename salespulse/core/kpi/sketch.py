"""A mergeable quantile sketch (DDSketch) with ≤ 1 % relative error. Pure.

Why a sketch: the fold writes every KPI as integer sums into time buckets, and a window
is read by summing its buckets, so a percentile must come from something that sums.
The stored durations themselves would make a bucket grow with every deal; histogram
buckets (``RESPONSE_BUCKETS_S``, kept for Prometheus and Grafana) sum but only locate a
value within its bucket (a p90 of 156 s read for an exact 138 s). DDSketch (Masson, Rim, Lee,
"DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees",
VLDB 2019) counts values in logarithmic bins: bin ``i`` holds ``(g^(i-1), g^i]`` with
``g = (1 + a) / (1 - a)`` (gamma), and any value of a bin is within the relative error ``a`` of
the bin's representative ``2 g^i / (g + 1)``. Bins are counters, so two sketches merge by
adding counts (the sketch of a union is the sum of the sketches), which is what the
bucket hashes do: the fold stores each bin as a counter field (``cycle_qb:<key>``) and
the reader sums the window's buckets.

Values are whole units (µs of a duration, ms of a response time): any ``|x| ≥ 1`` gets a
bin with the guarantee; 0 has a bin of its own (exact). Negative values (a deal won
before it was created) are mirrored, so they keep the guarantee too.

One bin key, an int, says all three: ``0`` the zero bin, ``i + 1`` for a positive value
of bin ``i ≥ 0``, ``-(i + 1)`` for a negative one.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Final

RELATIVE_ACCURACY: Final = 0.0099  # a: under 1 % with room for floating-point rounding
GAMMA: Final = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA: Final = math.log(GAMMA)
_REPRESENTATIVE: Final = 2 / (GAMMA + 1)
# g^i for every bin a 64-bit value can reach (~2,200): a value's bin is found by bisection
# (the first g^i ≥ |x|), exact to the table and a quarter of the cost of log() and a
# check of its rounding; it runs for every duration the fold derives.
_UPPER: Final = [GAMMA**index for index in range(math.ceil(64 * math.log(2) / _LOG_GAMMA) + 2)]


def bin_key(value: int) -> int:
    """The bin key of a value in whole units (see the module docstring)."""
    if value == 0:
        return 0
    magnitude = abs(value)
    index = bisect_left(_UPPER, float(magnitude))  # g^(i-1) < |x| ≤ g^i (float: fast)
    if index == len(_UPPER):  # beyond 64 bits: not a duration the fold writes
        index = math.ceil(math.log(magnitude) / _LOG_GAMMA)
    return index + 1 if value > 0 else -(index + 1)


def bin_value(key: int) -> float:
    """The representative of a bin: within the relative error of every value in it."""
    if key == 0:
        return 0.0
    value = GAMMA ** (abs(key) - 1) * _REPRESENTATIVE
    return value if key > 0 else -value


def quantile(bins: Mapping[int, int], percent: int) -> float | None:
    """The nearest-rank ``percent``-th percentile of the counted values, or None if none.

    Nearest rank: the ⌈percent × n / 100⌉-th smallest value (at least the first); the
    bin that holds it is found by walking the bins in value order, and its representative
    is within the relative error of that value. Negative counts (never left by the fold,
    whose sums are the contributions of final states) are read as 0.
    """
    total = sum(count for count in bins.values() if count > 0)
    if total == 0:
        return None
    rank = max(1, -(-percent * total // 100))
    running = 0
    # Ascending keys are ascending values: -(i + 1) falls as a negative value's magnitude
    # grows, 0 is the zero bin, i + 1 grows with a positive value.
    for key in sorted(bins):
        count = bins[key]
        if count <= 0:
            continue
        running += count
        if running >= rank:
            return bin_value(key)
    raise AssertionError("unreachable: the bins hold `total` values")


class DDSketch:
    """Bin key → count; :meth:`merge` is the sketch of the union of the two inputs."""

    __slots__ = ("bins",)

    def __init__(self, bins: Mapping[int, int] | None = None) -> None:
        self.bins: dict[int, int] = dict(bins or {})

    @classmethod
    def of(cls, values: Iterable[int]) -> DDSketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    def add(self, value: int, count: int = 1) -> None:
        key = bin_key(value)
        self.bins[key] = self.bins.get(key, 0) + count

    def add_bin(self, key: int, count: int) -> None:
        """Count a stored bin (a bucket hash field) into the sketch."""
        self.bins[key] = self.bins.get(key, 0) + count

    def merge(self, other: DDSketch) -> DDSketch:
        merged = DDSketch(self.bins)
        for key, count in other.bins.items():
            merged.add_bin(key, count)
        return merged

    @property
    def count(self) -> int:
        return sum(count for count in self.bins.values() if count > 0)

    def quantile(self, percent: int) -> float | None:
        return quantile(self.bins, percent)
