"""A histogram that takes a whole batch of observations at once.

prometheus_client's Histogram.observe costs about a microsecond per call (a lock and a
bucket scan); the KPI worker observes every event of every batch, so it counts buckets
with bisect and adds them under one lock. The exposition is an ordinary histogram.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
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
