"""A histogram that takes a whole batch of observations at once.

prometheus_client's Histogram.observe costs about a microsecond per call (a lock and a
bucket scan); the KPI worker observes every event of every batch, so it counts buckets
with bisect and adds them under one lock. The exposition is an ordinary histogram.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class BatchHistogram(Collector):
    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = [float(bound) for bound in buckets]
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self._counts)
        total = 0.0
        bounds = self._bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # upper bounds are inclusive (le)
            total += value
        with self._lock:
            for index, count in enumerate(counts):
                self._counts[index] += count
            self._sum += total

    def observe_ages(self, instants: Iterable[float], now: float) -> None:
        """Observe ``max(0, now - instant)`` of every instant, as observe_many would.

        For a whole batch that shares ``now`` (the KPI worker's apply time): the bucket
        counts come from bisecting the sorted instants once per bound, and the sum from
        C-level sums, instead of a Python step per value. An age lands in bucket i when
        bound[i-1] < now - t <= bound[i]; the comparisons are made on the age itself
        (``now - t``), so rounding never puts a value in another bucket than observe_many
        would; only the float sum may differ in its last bits (another order of addition).
        """
        ordered = sorted(instants)
        size = len(ordered)
        if not size:
            return
        # ages in descending order of instant; count per bucket by bisecting on the age
        ages = [now - t for t in reversed(ordered)]  # ascending (one subtraction each)
        negative = bisect_left(ages, 0.0)  # ages < 0 are observed as 0
        counts = [0] * len(self._counts)
        previous = 0
        for index, bound in enumerate(self._bounds):
            # observed values are >= 0: a negative bound holds none of them
            upto = bisect_right(ages, bound) if bound >= 0 else 0
            counts[index] = upto - previous
            previous = upto
        counts[-1] = size - previous
        total = sum(ages[negative:])
        with self._lock:
            for index, count in enumerate(counts):
                self._counts[index] += count
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )

    def describe(self) -> Iterator[Metric]:
        return self.collect()
