"""The operational boards: client response time (SLA) and the health of the data pipeline.

Response-time metrics (labels tenant, team, channel; histograms also basis
``calendar``/``business``): ``salespulse_waiting_conversations``, ``_waiting_at_risk``,
``_waiting_breached``, ``_waiting_oldest_age_seconds``, the histograms
``salespulse_first_response_seconds`` / ``_next_response_seconds``, the counter
``salespulse_sla_breaches_total{kind}``, ``salespulse_sla_target_seconds`` and
``salespulse_business_hours_open``. Pipeline counters are per process (ingest, worker),
so every panel sums over the scraped instances.
"""

from __future__ import annotations

from typing import Final

from salespulse.dev.dashboards.board import custom_variable, dashboard, query_variable
from salespulse.dev.dashboards.panels import (
    BAD_ABOVE_ZERO,
    Json,
    Query,
    bars,
    heatmap,
    selector,
    stat,
    timeseries,
)
from salespulse.dev.dashboards.sales import TENANT

RATE: Final = "$__rate_interval"
OPEN_CLOSED: Final[Json] = {
    "type": "value",
    "options": {
        "0": {"text": "Closed", "color": "blue", "index": 1},
        "1": {"text": "Open", "color": "green", "index": 0},
    },
}
UP_DOWN: Final[Json] = {
    "type": "value",
    "options": {
        "0": {"text": "DOWN", "color": "red", "index": 1},
        "1": {"text": "UP", "color": "green", "index": 0},
    },
}


def _conversations(metric: str, **labels: str) -> str:
    return selector(
        f"salespulse_{metric}", tenant="$tenant", team="~$team", channel="~$channel", **labels
    )


def _quantile(q: float, histogram: str, span: str) -> str:
    buckets = _conversations(f"{histogram}_bucket", basis="$basis")
    function = "rate" if span == RATE else "increase"
    return f"histogram_quantile({q}, sum by (le) ({function}({buckets}[{span}])))"


def response_time() -> Json:
    """Who is waiting for a reply now, and how fast replies come (percentiles, heatmap)."""
    team = query_variable(
        "team",
        "Team",
        'label_values(salespulse_first_response_seconds_count{tenant="$tenant"}, team)',
        include_all=True,
    )
    channel = query_variable(
        "channel",
        "Channel",
        'label_values(salespulse_first_response_seconds_count{tenant="$tenant"}, channel)',
        include_all=True,
    )
    basis = custom_variable("basis", "Clock", ["business", "calendar"], "business")
    first, after = "first_response_seconds", "next_response_seconds"
    in_range = "$__range"
    breaches = _conversations("sla_breaches_total")
    panels = [
        stat("Waiting for a reply", [Query(f"sum({_conversations('waiting_conversations')})")],
             no_value="0", size=(4, 6), description="clients whose last contact is unanswered"),
        stat("At risk", [Query(f"sum({_conversations('waiting_at_risk')})")], no_value="0",
             steps=((None, "green"), (1, "orange")), size=(4, 6),
             description="waits past the warning threshold, not yet past the SLA target"),
        stat("SLA breached now", [Query(f"sum({_conversations('waiting_breached')})")],
             no_value="0", steps=BAD_ABOVE_ZERO, size=(4, 6),
             description="waits already past the SLA target"),
        stat("Longest wait", [Query(f"max({_conversations('waiting_oldest_age_seconds')})")],
             unit="s", no_value="0", size=(4, 6)),
        stat("First response p50", [Query(_quantile(0.5, first, in_range))], unit="s",
             size=(4, 6), description="median first reply over the dashboard's time range"),
        stat("First response p90", [Query(_quantile(0.9, first, in_range))], unit="s",
             size=(4, 6)),
        stat("Late replies (range)",
             [Query(f"sum by (kind) (increase({breaches}[{in_range}]))", "{{kind}}")],
             show_names=True, steps=BAD_ABOVE_ZERO, size=(6, 6),
             description="replies later than the SLA target: first and next replies"),
        stat("Business hours", [Query(selector("salespulse_business_hours_open",
                                               tenant="$tenant"))],
             mappings=[OPEN_CLOSED], size=(4, 6),
             description="the tenant's business-hours calendar is open now"),
        stat("SLA target", [Query(selector("salespulse_sla_target_seconds", tenant="$tenant",
                                           channel="~$channel|any"), "{{channel}}")],
             unit="s", show_names=True, size=(6, 6),
             description="configured first-response targets; 'any': the catch-all policy"),
        stat("First replies (range)",
             [Query(f"sum(increase({_conversations(first + '_count', basis='$basis')}"
                    f"[{in_range}]))")],
             decimals=0, size=(4, 6)),
        stat("Next response p50", [Query(_quantile(0.5, after, in_range))], unit="s",
             size=(4, 6), description="replies after the first, over the time range"),
        timeseries(
            "First response percentiles",
            [Query(_quantile(q, first, RATE), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)],
            unit="s",
        ),
        heatmap(
            "First response time",
            Query(f"sum by (le) (increase({_conversations(first + '_bucket', basis='$basis')}"
                  "[$__interval]))", "{{le}}", kind="heatmap"),
            size=(12, 8),
        ),
        bars("Waiting by team and channel",
             [Query(f"sum by (team, channel) ({_conversations('waiting_conversations')})",
                    "{{team}} · {{channel}}")]),
        timeseries("Late replies by team",
                   [Query(f"sum by (team) (rate({breaches}[{RATE}]))", "{{team}}")],
                   unit="ops", size=(8, 8)),
        timeseries(
            "Next response percentiles",
            [Query(_quantile(q, after, RATE), f"p{round(q * 100)}") for q in (0.5, 0.9)],
            unit="s", size=(8, 8),
        ),
    ]  # fmt: skip
    return dashboard(
        "salespulse-response",
        "SalesPulse · Response time",
        "Clients waiting for a reply now, SLA breaches and first/next response percentiles.",
        [TENANT, team, channel, basis],
        panels,
    )


def _rate(metric: str, by: str = "") -> str:
    total = f"sum by ({by}) " if by else "sum"
    return f"{total}(rate({metric}[{RATE}]))"


def _latency(q: float) -> str:
    buckets = "salespulse_event_to_kpi_latency_seconds_bucket"
    return f"histogram_quantile({q}, sum by (le) (rate({buckets}[{RATE}])))"


def pipeline_health() -> Json:
    """Is data flowing: ingest and apply rates, rejects, dead letters, lag, freshness."""
    accepted = "salespulse_ingest_events_accepted_total"
    applied = "salespulse_worker_events_applied_total"
    rejected = "salespulse_ingest_payloads_rejected_total"
    dead = "salespulse_dead_letters_total"
    panels = [
        stat("Ingested", [Query(_rate(accepted))], unit="ops", size=(4, 6),
             description="events accepted by POST /v1/events and the webhooks, per second"),
        stat("Applied to KPIs", [Query(_rate(applied))], unit="ops", size=(4, 6)),
        stat("Consumer lag", [Query("sum(salespulse_consumer_lag)")], decimals=0,
             steps=((None, "green"), (1000, "orange"), (10000, "red")), size=(4, 6),
             description="records of crm.events not yet applied"),
        stat("Event → KPI p99", [Query(_latency(0.99))], unit="s",
             steps=((None, "green"), (5, "orange"), (30, "red")), size=(4, 6)),
        stat("KPI store", [Query("min(salespulse_kpi_store_up)")], mappings=[UP_DOWN],
             size=(4, 6), description="Redis answered the exporter's last scrape"),
        stat("Last event received",
             [Query("time() - max(salespulse_last_event_received_timestamp_seconds"
                    '{tenant="$tenant"})')],
             unit="s", steps=((None, "green"), (900, "orange"), (3600, "red")), size=(4, 6),
             description="seconds since the tenant's newest event arrived"),
        timeseries("Ingested and applied",
                   [Query(_rate(accepted), "ingested"), Query(_rate(applied), "applied")],
                   unit="ops"),
        timeseries("Event → KPI latency",
                   [Query(_latency(0.5), "p50"), Query(_latency(0.99), "p99")], unit="s",
                   description="from the ingest's receipt to the Redis write"),
        timeseries("Rejected payloads by reason", [Query(_rate(rejected, "reason"),
                                                         "{{reason}}")],
                   unit="ops", size=(8, 8)),
        timeseries("Dead letters by reason", [Query(_rate(dead, "reason"), "{{reason}}")],
                   unit="ops", size=(8, 8)),
        timeseries("Consumer lag by partition",
                   [Query("sum by (topic, partition) (salespulse_consumer_lag)",
                          "{{topic}}/{{partition}}")],
                   size=(8, 8)),
        timeseries(
            "Duplicates and late events",
            [Query(_rate("salespulse_worker_duplicates_dropped_total"), "duplicates dropped"),
             Query(_rate("salespulse_worker_events_too_late_total"), "too late")],
            unit="ops", size=(8, 8),
        ),
        timeseries("Webhooks received by CRM",
                   [Query(_rate("salespulse_webhooks_received_total", "crm"), "{{crm}}")],
                   unit="ops", size=(8, 8)),
        timeseries("Broker unavailable (503)",
                   [Query(_rate("salespulse_ingest_broker_unavailable_total"), "503")],
                   unit="ops", size=(8, 8)),
        timeseries("Ingest disk spool",
                   [Query("sum by (instance) (salespulse_ingest_spool_bytes)", "{{instance}}")],
                   unit="bytes", size=(8, 8),
                   description="bytes waiting for the broker in each ingest's disk spool "
                               "(0 while Kafka acknowledges in time)"),
    ]  # fmt: skip
    return dashboard(
        "salespulse-pipeline",
        "SalesPulse · Pipeline health",
        "Ingest and apply rates, rejected payloads, dead letters, consumer lag and latency.",
        [TENANT],
        panels,
    )
