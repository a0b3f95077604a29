"""The processor's own metrics (per process), on an injected registry.

Labels come only from closed sets and every series is created up front, so a dashboard
shows zeros instead of gaps and the series count is fixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from salespulse.core.batch_histogram import BatchHistogram

# Bad bodies: answered 4xx and kept on the dead-letter topic.
_BAD_BODY_REASONS: Final = (
    "malformed_json",
    "invalid_event",
    "empty_batch",
    "body_too_large",
    "unsupported_media_type",
    "tenant_forbidden",  # a tenant's ingest token sent another tenant's events (403)
    "too_late",  # POST /v1/events of history without the backfill header (422)
)
# "unauthorized" (POST /v1/events without an ingest token it asks for) is answered 401
# and not dead-lettered: an unknown sender's bytes are not ours to keep. Nor is a body
# that did not arrive within SALESPULSE_BODY_READ_TIMEOUT_S ("body_read_timeout", 408).
REJECT_REASONS: Final = ("unauthorized", "body_read_timeout", *_BAD_BODY_REASONS)
# "too_late" is also a CRM webhook's (dead-lettered at the door, answered 2xx) and the
# worker's (an event built later from a CRM's REST API that is still too late).
DEAD_LETTER_REASONS: Final = (*_BAD_BODY_REASONS, "undecodable_record", "poison")
# Event-to-KPI latency: from the ingest's received_at to the Redis write, seconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# The CRM webhooks (handlers/webhooks.py) and their REST enrichment (handlers/enrichment/stage.py).
WEBHOOK_CRMS: Final = ("bitrix24", "amocrm", "hubspot", "pipedrive")
ENRICHED_CRMS: Final = ("bitrix24", "hubspot")
WEBHOOK_REJECT_REASONS: Final = (
    "malformed_payload",
    "unsupported_payload",
    "body_too_large",
    "unsupported_media_type",
)
# Webhook bodies answered 4xx and not kept: the sender could not be verified (a body too
# large to check; a Bitrix24 form, which carries the token, that cannot be read), or the
# body did not arrive in time.
WEBHOOK_DISCARD_REASONS: Final = ("body_too_large", "malformed_payload", "body_read_timeout")
ENRICHMENT_OUTCOMES: Final = ("events", "no_change", "dead_lettered")
ENRICHMENT_DEAD_LETTER_REASONS: Final = (
    "record_not_found",
    "rest_rejected",
    "rest_auth_failed",
    "rest_unavailable",
    "not_configured",
    "unsupported_record",
    "undecodable_record",
)
REST_OUTCOMES: Final = ("ok", "retried", "failed")


class PipelineMetrics:
    """Counters and histograms the ingest and the worker update."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry  # where a scrape, or a test, reads these samples
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
        # The disk spool (handlers/spool.py): what the broker did not take in time.
        self.spooled_records = Counter(
            "salespulse_ingest_spooled_records",
            "Records kept in the ingest's disk spool because the broker did not acknowledge.",
            registry=registry,
        )
        self.spool_drained_records = Counter(
            "salespulse_ingest_spool_drained_records",
            "Spooled records the broker has since acknowledged.",
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "salespulse_ingest_spool_bytes",
            "Bytes in the ingest's disk spool waiting for the broker (0: none).",
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
        self.events_too_late = Counter(
            "salespulse_worker_events_too_late",
            "Events received later than the lateness limit after they happened; dead-lettered, "
            "counted once per event id however often they arrive (a CRM webhook's by the "
            "ingest, at the door; any other that reaches it by the worker).",
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
        self.sla_events_applied = Counter(
            "salespulse_worker_sla_events_applied",
            "Events the conversation clock (response times, waiting clients) has applied.",
            registry=registry,
        )
        self.sla_waits_expired = Counter(
            "salespulse_sla_waits_expired",
            "Waits left unanswered past SALESPULSE_WAIT_MAX_AGE_DAYS, dropped from the "
            "waiting list.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "salespulse_consumer_lag",
            "Records behind the partition's high-water mark, per consumer group (this process).",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.event_to_kpi_latency = BatchHistogram(
            "salespulse_event_to_kpi_latency_seconds",
            "Time from the ingest receiving an event to its KPIs being in Redis.",
            LATENCY_BUCKETS,
            registry,
        )
        # Recovery (streams/store_guard.py): a broker that lost its log, a store that lost
        # its keys. Both are alerts (BrokerDataLoss, KpiStoreReset in deploy/prometheus).
        self.offset_resets = Counter(
            "salespulse_worker_offset_resets",
            "Partitions whose stored watermark lay beyond the topic's end (the broker lost "
            "its log or the topic was recreated); read again from the earliest offset.",
            ["stage"],
            registry=registry,
        )
        self.store_reset_pending = Gauge(
            "salespulse_kpi_store_reset_pending",
            "1 while the KPI store has been found wiped after history was applied, until "
            "`salespulse rebuild` restores it.",
            registry=registry,
        )
        for stage in ("kpi", "sla"):
            self.offset_resets.labels(stage=stage)
        for reason in REJECT_REASONS:
            self.payloads_rejected.labels(reason=reason)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)

        self.webhooks_received = Counter(
            "salespulse_webhooks_received",
            "CRM webhook requests received, by CRM.",
            ["crm"],
            registry=registry,
        )
        self.webhooks_unauthorized = Counter(
            "salespulse_webhooks_unauthorized",
            "CRM webhook requests answered 401 (unknown tenant or failed sender check).",
            ["crm"],
            registry=registry,
        )
        self.webhooks_rejected = Counter(
            "salespulse_webhooks_rejected",
            "CRM webhook bodies answered 4xx and dead-lettered, by CRM and reason.",
            ["crm", "reason"],
            registry=registry,
        )
        self.webhooks_discarded = Counter(
            "salespulse_webhooks_discarded",
            "CRM webhook requests answered 4xx without keeping the body (sender not "
            "verifiable, or body too slow), by CRM and reason.",
            ["crm", "reason"],
            registry=registry,
        )
        self.webhooks_ignored = Counter(
            "salespulse_webhooks_ignored",
            "CRM webhook items of a kind SalesPulse does not use (answered 2xx).",
            ["crm"],
            registry=registry,
        )
        self.webhook_events = Counter(
            "salespulse_webhook_events",
            "Canonical events published straight from CRM webhooks, by CRM.",
            ["crm"],
            registry=registry,
        )
        self.webhook_enrichment_queued = Counter(
            "salespulse_webhook_enrichment_queued",
            "CRM webhook items queued for REST enrichment on the raw topic, by CRM.",
            ["crm"],
            registry=registry,
        )
        self.enrichment_requests = Counter(
            "salespulse_enrichment_requests",
            "Enrichment requests done, by CRM and outcome.",
            ["crm", "outcome"],
            registry=registry,
        )
        self.enrichment_dead_letters = Counter(
            "salespulse_enrichment_dead_letters",
            "Enrichment requests written to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.enrichment_rest_calls = Counter(
            "salespulse_enrichment_rest_calls",
            "CRM REST calls by the enrichment, by CRM and outcome (retried: transient error).",
            ["crm", "outcome"],
            registry=registry,
        )
        for crm in WEBHOOK_CRMS:
            self.webhooks_received.labels(crm=crm)
            self.webhooks_unauthorized.labels(crm=crm)
            self.webhooks_ignored.labels(crm=crm)
            self.webhook_events.labels(crm=crm)
            for reason in WEBHOOK_REJECT_REASONS:
                self.webhooks_rejected.labels(crm=crm, reason=reason)
            for reason in WEBHOOK_DISCARD_REASONS:
                self.webhooks_discarded.labels(crm=crm, reason=reason)
        for crm in ENRICHED_CRMS:
            self.webhook_enrichment_queued.labels(crm=crm)
            for outcome in ENRICHMENT_OUTCOMES:
                self.enrichment_requests.labels(crm=crm, outcome=outcome)
            for outcome in REST_OUTCOMES:
                self.enrichment_rest_calls.labels(crm=crm, outcome=outcome)
        for reason in ENRICHMENT_DEAD_LETTER_REASONS:
            self.enrichment_dead_letters.labels(reason=reason)

    def sla_batch_applied(self, events: int) -> None:
        self.sla_events_applied.inc(events)

    def record_lag(self, group: str, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(group=group, topic=topic, partition=str(partition)).set(lag)

    def forget_lag(self, group: str, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):  # never recorded
            self.consumer_lag.remove(group, topic, str(partition))

    def observe_latencies(self, received_at: Iterable[float], applied_at: float) -> None:
        self.event_to_kpi_latency.observe_ages(received_at, applied_at)
