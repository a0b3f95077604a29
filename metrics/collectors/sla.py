"""Response-time SLA metrics, built at scrape time from Redis (docs/sla.md):

    salespulse_waiting_conversations{tenant, team, channel}         clients waiting now
    salespulse_waiting_at_risk{tenant, team, channel}               past warning, not yet SLA
    salespulse_waiting_breached{tenant, team, channel}              past the SLA target now
    salespulse_waiting_oldest_age_seconds{tenant, team, channel}
    salespulse_waiting_conversations_by_manager{tenant, team, manager}   if per_manager, capped
    salespulse_first_response_seconds{tenant, team, channel, basis}      histogram, cumulative
    salespulse_next_response_seconds{tenant, team, channel, basis}       histogram, cumulative
    salespulse_sla_breaches_total{tenant, team, channel, kind}      replies later than the SLA
    salespulse_sla_target_seconds{tenant, channel}                  configured first-response target
    salespulse_business_hours_open{tenant}                          1 while the calendar is open
    salespulse_last_event_received_timestamp_seconds{tenant}

The histograms and the breach counter are the all-time sums of the SLA stage's
components: they only grow, except when a late event rewrites history (a reply that
arrives late splits a wait); Prometheus then sees a counter reset, which rate() absorbs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from metrics.read.kpi_reader import RawSums
from metrics.read.waiting import Wait
from salespulse.core.kpi.catalogue import RESPONSE_BUCKETS_S
from salespulse.core.tenants import TenantConfig

OTHER = "other"
_WAIT_LABELS = ["tenant", "team", "channel"]
_BASES = {"c": "calendar", "b": "business"}
# (tenant, team, channel, basis) → [count in each bucket..., +Inf]
_Histograms = dict[tuple[str, str, str, str], list[int]]


class SlaFamilies:
    """Collects one scrape's SLA families, tenant by tenant."""

    def __init__(self) -> None:
        self.waiting = GaugeMetricFamily(
            "salespulse_waiting_conversations",
            "Clients waiting for a reply now.",
            labels=_WAIT_LABELS,
        )
        self.at_risk = GaugeMetricFamily(
            "salespulse_waiting_at_risk",
            "Waits past their warning threshold, not yet past the SLA target.",
            labels=_WAIT_LABELS,
        )
        self.breached = GaugeMetricFamily(
            "salespulse_waiting_breached", "Waits past their SLA target now.", labels=_WAIT_LABELS
        )
        self.oldest = GaugeMetricFamily(
            "salespulse_waiting_oldest_age_seconds",
            "Calendar age of the oldest wait.",
            labels=_WAIT_LABELS,
        )
        self.by_manager = GaugeMetricFamily(
            "salespulse_waiting_conversations_by_manager",
            "Clients waiting now, by the manager responsible.",
            labels=["tenant", "team", "manager"],
        )
        # (tenant, team, channel, kind) → replies later than the SLA (summed over managers)
        self._breaches: dict[tuple[str, str, str, str], int] = {}
        self.targets = GaugeMetricFamily(
            "salespulse_sla_target_seconds",
            "Configured first-response target by channel ('any': the catch-all policy).",
            labels=["tenant", "channel"],
        )
        self.open_now = GaugeMetricFamily(
            "salespulse_business_hours_open",
            "1 while the tenant's business-hours calendar is open (always 1 without one).",
            labels=["tenant"],
        )
        self.last_received = GaugeMetricFamily(
            "salespulse_last_event_received_timestamp_seconds",
            "Unix time of the newest event received for the tenant.",
            labels=["tenant"],
        )
        # kind → (bucket counts, sums in seconds) per (tenant, team, channel, basis)
        self._histograms: dict[str, tuple[_Histograms, dict[tuple[str, ...], float]]] = {
            "first": ({}, {}),
            "next": ({}, {}),
        }

    def add_config(self, tenant: str, config: TenantConfig, now: datetime) -> None:
        calendar = config.calendar_for(None)
        self.open_now.add_metric(
            [tenant], 1.0 if calendar is None or calendar.is_open(now) else 0.0
        )
        for policy in config.sla.policies:
            if policy.pipeline is None:
                self.targets.add_metric([tenant, policy.channel or "any"], policy.first_response)

    def add_last_received(self, tenant: str, unix_s: float) -> None:
        self.last_received.add_metric([tenant], unix_s)

    def add_waits(self, tenant: str, config: TenantConfig, waits: list[Wait]) -> None:
        groups: dict[tuple[str, str], list[Wait]] = {}
        managers: dict[tuple[str, str], int] = {}
        for wait in waits:
            groups.setdefault((wait.team, wait.channel), []).append(wait)
            responsible = (wait.team, wait.manager or "unassigned")
            managers[responsible] = managers.get(responsible, 0) + 1
        for (team, channel), members in sorted(groups.items()):
            labels = [tenant, team, channel]
            self.waiting.add_metric(labels, len(members))
            self.at_risk.add_metric(labels, sum(w.state == "at_risk" for w in members))
            self.breached.add_metric(labels, sum(w.state == "breached" for w in members))
            self.oldest.add_metric(labels, max(w.age_seconds for w in members))
        if config.labels.per_manager:
            for (team_name, manager), count in _cap(managers, config.labels.max_values):
                self.by_manager.add_metric([tenant, team_name, manager], count)

    def add_responses(self, tenant: str, all_time: RawSums) -> None:
        """Histogram buckets, sums and counts, and breaches, from the all-time sums."""
        for (component, dims), amount in all_time.items():
            head, _, rest = component.partition(":")
            if head not in ("resp_hist", "resp_ms", "resp_bms", "sla_breach"):
                continue
            kind, _, rest = rest.partition(":")
            if kind not in self._histograms:
                continue
            channel, _, bucket = rest.partition(":")
            team = dims[1]
            histograms, sums = self._histograms[kind]
            if head == "sla_breach":
                breach = (tenant, team, channel, kind)
                self._breaches[breach] = self._breaches.get(breach, 0) + amount
            elif head == "resp_hist":
                key = (tenant, team, channel, _BASES[bucket[0]])
                counts = histograms.setdefault(key, [0] * (len(RESPONSE_BUCKETS_S) + 1))
                counts[int(bucket[1:])] += amount
            else:  # the histogram's count is its +Inf bucket; only the sum is separate
                basis = "calendar" if head == "resp_ms" else "business"
                summed = (tenant, team, channel, basis)
                sums[summed] = sums.get(summed, 0) + amount / 1000

    def families(self) -> Iterator[Metric]:
        yield from (
            self.waiting, self.at_risk, self.breached, self.oldest, self.by_manager,
            self.targets, self.open_now, self.last_received,
        )  # fmt: skip
        breaches = CounterMetricFamily(
            "salespulse_sla_breaches",
            "Replies later than their SLA target.",
            labels=["tenant", "team", "channel", "kind"],
        )
        for labels, count in sorted(self._breaches.items()):
            breaches.add_metric(list(labels), count)
        yield breaches
        for kind, (histograms, sums) in self._histograms.items():
            family = HistogramMetricFamily(
                f"salespulse_{kind}_response_seconds",
                f"Time to the {kind} reply of a waiting client, calendar or business seconds.",
                labels=["tenant", "team", "channel", "basis"],
            )
            for key, counts in sorted(histograms.items()):
                running = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip((*RESPONSE_BUCKETS_S, "+Inf"), counts, strict=True):
                    running += count
                    buckets.append((str(bound), running))
                family.add_metric(list(key), buckets, sums.get(key, 0.0))
            yield family


def _cap(counts: dict[tuple[str, str], int], limit: int) -> list[tuple[tuple[str, str], int]]:
    """The `limit` managers with most waits keep their series; the rest pool as `other`."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) <= limit:
        return ranked
    pooled = sum(count for _, count in ranked[limit - 1 :])
    return [*ranked[: limit - 1], ((OTHER, OTHER), pooled)]
