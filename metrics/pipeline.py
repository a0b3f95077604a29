"""The processor's own metrics (per process), on an injected registry.

Labels come only from closed sets and every series is created up front, so a dashboard
shows zeros instead of gaps and the series count is fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

REJECT_REASONS: Final = (
    "malformed_json",
    "invalid_event",
    "empty_batch",
    "body_too_large",
    "unsupported_media_type",
)
DEAD_LETTER_REASONS: Final = (*REJECT_REASONS, "undecodable_record")
# Event-to-KPI latency: from the ingest's received_at to the Redis write, seconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class PipelineMetrics:
    """Counters and histograms the ingest and the worker update."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_accepted = Counter(
            "salespulse_ingest_events_accepted",
            "Canonical events acknowledged by the broker and answered 202.",
            registry=registry,
        )
        self.payloads_rejected = Counter(
            "salespulse_ingest_payloads_rejected",
            "Ingest request bodies answered 4xx, by reason.",
            ["reason"],
            registry=registry,
        )
        self.broker_unavailable = Counter(
            "salespulse_ingest_broker_unavailable",
            "Ingest requests answered 503 because the broker did not acknowledge in time.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "salespulse_dead_letters",
            "Raw payloads written to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duplicates_dropped = Counter(
            "salespulse_worker_duplicates_dropped",
            "Events not counted because their event_id was counted before.",
            registry=registry,
        )
        self.batches_applied = Counter(
            "salespulse_worker_batches_applied",
            "Batches whose KPI increments Redis accepted.",
            registry=registry,
        )
        self.events_applied = Counter(
            "salespulse_worker_events_applied",
            "Events whose KPI increments Redis accepted.",
            registry=registry,
        )
        self.event_to_kpi_latency = Histogram(
            "salespulse_event_to_kpi_latency_seconds",
            "Time from the ingest receiving an event to its KPIs being in Redis.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for reason in REJECT_REASONS:
            self.payloads_rejected.labels(reason=reason)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)

    def observe_latencies(self, received_at: Iterable[float], applied_at: float) -> None:
        observe = self.event_to_kpi_latency.observe
        for received in received_at:
            observe(max(0.0, applied_at - received))
