"""`salespulse run`'s /metrics merges its worker process's series (metrics/merged.py)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from metrics.merged import merged_exposition


def _registry(
    applied: int, accepted: int, lag: float, reasons: dict[str, int]
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    Counter("sp_applied", "applied", registry=registry).inc(applied)
    Counter("sp_accepted", "accepted", registry=registry).inc(accepted)
    Gauge("sp_lag", "lag", registry=registry).set(lag)
    dead = Counter("sp_dead", "dead letters", ["reason"], registry=registry)
    for reason, count in reasons.items():
        dead.labels(reason).inc(count)
    Histogram("sp_latency", "latency", buckets=(1, 5), registry=registry).observe(applied)
    return registry


def _samples(body: bytes) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    ]


def test_the_two_processes_series_are_added_and_each_shows_once() -> None:
    ingest = _registry(applied=0, accepted=7, lag=0, reasons={"malformed": 2})
    worker = _registry(applied=3, accepted=0, lag=4, reasons={"poison": 1})
    own_only = Gauge("sp_spool_bytes", "spool", registry=ingest)
    own_only.set(11)

    body = merged_exposition(ingest, generate_latest(worker).decode())

    samples = _samples(body)
    names = Tally((name, labels) for name, labels, _ in samples)
    assert [key for key, seen in names.items() if seen > 1] == []
    value = {(name, labels): v for name, labels, v in samples}
    assert value[("sp_applied_total", ())] == 3
    assert value[("sp_accepted_total", ())] == 7
    assert value[("sp_lag", ())] == 4
    assert value[("sp_dead_total", (("reason", "malformed"),))] == 2
    assert value[("sp_dead_total", (("reason", "poison"),))] == 1
    assert value[("sp_latency_count", ())] == 2
    assert value[("sp_latency_bucket", (("le", "5.0"),))] == 2
    assert value[("sp_spool_bytes", ())] == 11
    created = [v for name, _, v in samples if name == "sp_applied_created"]
    assert len(created) == 1


def test_without_another_process_the_body_is_the_registry_s_own() -> None:
    registry = _registry(applied=1, accepted=2, lag=0, reasons={})
    assert merged_exposition(registry) == generate_latest(registry)
