"""One ``/metrics`` body from this process's registry and another process's exposition.

``salespulse run`` keeps its worker in a child process (salespulse/app/worker_process.py)
that has a registry of its own with the same pipeline families. A scrape must still show
one series per name and labels, so families are merged by name and samples with the same
name and labels are added: counters, gauges and histogram buckets of the two processes
are disjoint parts of one whole (each process counts only what it did). ``*_created``
samples keep the earlier time.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from metrics.text_format import render_latest


def merged_exposition(local: CollectorRegistry, *others: str) -> bytes:
    """The text exposition of ``local`` with the ``others`` (text expositions) merged in
    (metrics/text_format.py writes it as prometheus_client would)."""
    if not others:
        return render_latest(local.collect())
    families = list(local.collect())
    for text in others:
        families = merge_families(families, text_string_to_metric_families(text))
    return render_latest(families)


_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


def merge_families(first: Iterable[Metric], second: Iterable[Metric]) -> list[Metric]:
    merged: dict[str, Metric] = {}
    # Families are copied only when another is merged into them: the exporter's KPI
    # families (thousands of series) pass through as they are, on every scrape.
    copied: set[str] = set()
    for family in (*first, *second):
        name = family.name
        held = merged.get(name)
        if held is None and family.type == "gauge" and name.endswith("_created"):
            # The text format writes a counter's (histogram's) `_created` samples as a
            # gauge family of their own; a registry keeps them in the counter's family.
            owner = merged.get(name.removesuffix("_created"))
            if owner is not None and owner.type in _WITH_CREATED:
                name, held = owner.name, owner
        if held is None:
            merged[name] = family
            continue
        if name not in copied:
            held = merged[name] = _copy(held)
            copied.add(name)
        index = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(held.samples)}
        for sample in family.samples:
            at = index.get((sample.name, tuple(sorted(sample.labels.items()))))
            if at is None:
                index[(sample.name, tuple(sorted(sample.labels.items())))] = len(held.samples)
                held.samples.append(sample)
                continue
            before = held.samples[at]
            value = (
                min(before.value, sample.value)
                if sample.name.endswith("_created")
                else before.value + sample.value
            )
            held.samples[at] = before._replace(value=value)
    return list(merged.values())


def _copy(family: Metric) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = [Sample(*sample) for sample in family.samples]
    return copy
