"""GET /metrics' text (metrics/text_format.py) is byte for byte what prometheus_client's
generate_latest writes, for every kind of family, label and value."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.metrics_core import (
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from metrics.text_format import render_latest


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _both(registry: CollectorRegistry) -> tuple[bytes, bytes]:
    """Both renderings of one collection (a collector's values may move between two)."""
    families = list(registry.collect())
    fixed = CollectorRegistry(auto_describe=False)
    fixed.register(_Families(families))
    return render_latest(families), generate_latest(fixed)


def test_every_kind_of_family_reads_as_prometheus_client_writes_it() -> None:
    registry = CollectorRegistry(auto_describe=False)
    Counter("sp_applied", "applied\\n \\ \n", ["tenant"], registry=registry).labels("a").inc(3)
    Gauge("sp_lag", "lag", registry=registry).set(math.inf)
    Gauge("sp_nan", "nan", registry=registry).set(math.nan)
    Gauge("sp_small", "small", registry=registry).set(-1e-9)
    Histogram("sp_latency", "s", ["tenant"], buckets=(0.5, 1e7), registry=registry).labels(
        "a"
    ).observe(2)
    Summary("sp_size", "bytes", registry=registry).observe(12_345_678.9)
    Info("sp_build", "build", registry=registry).info({"version": "1.0"})
    Enum("sp_state", "state", states=["up", "down"], registry=registry).state("down")
    gauge_histogram = GaugeHistogramMetricFamily(
        "sp_waiting", "waiting", buckets=[("1.0", 2), ("+Inf", 5)], gsum_value=7
    )
    stateset = StateSetMetricFamily("sp_mode", "mode", {"single": True, "cluster": False})
    stamped = GaugeMetricFamily("sp_stamped", "with a time", labels=["k"])
    stamped.add_metric(["v"], 1.5, timestamp=1_700_000_000.25)
    registry.register(_Families([gauge_histogram, stateset, stamped]))

    ours, theirs = _both(registry)
    assert ours == theirs
    assert b"sp_applied_created" in ours  # the OpenMetrics-only samples are there too


# the characters the format escapes, often; and any other
label_values = st.text(
    st.sampled_from(["a", "7", '"', "\\", "\n", "Я"]) | st.characters(codec="utf-8"),
    max_size=12,
)


@given(st.lists(st.tuples(label_values, label_values), min_size=1, max_size=8), st.floats())
def test_label_sets_that_repeat_or_need_escapes_read_alike(
    pairs: list[tuple[str, str]], value: float
) -> None:
    registry = CollectorRegistry(auto_describe=False)
    kpi = Gauge("sp_kpi", "a KPI", ["manager", "window"], registry=registry)
    other = Gauge("sp_other", "another", ["window", "manager"], registry=registry)
    for manager, window in pairs:
        kpi.labels(manager, window).set(value)
        other.labels(window, manager).set(-value)  # the same set, built in another order
    ours, theirs = _both(registry)
    assert ours == theirs
