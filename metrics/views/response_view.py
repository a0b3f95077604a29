"""Response-time KPIs of a window, from the SLA stage's components. Pure.

The components (streams/sla_fold.py) are summed over a window's buckets like every
other KPI, so "first response today" means replies made today. The median and p90 come
from the calendar response times' DDSketch bins (metrics/read/quantiles.py), within 1 %
of the exact nearest-rank values; the histogram buckets are for Prometheus and Grafana
(docs/sla.md), whose interpolation inside a bucket can be off by half the bucket.
"""

from __future__ import annotations

from collections.abc import Mapping

from metrics.read.kpi_value import Kpi, ratio, seconds

KINDS = ("first", "next")
_HEADS = frozenset({"resp_n", "resp_ms", "resp_bms", "sla_breach", "sla_met"})


def response_kpis(group: Mapping[str, int]) -> list[Kpi]:
    """first/next response count, average, median and p90 (calendar; average also in
    business seconds), SLA breaches and compliance, summed over every channel."""
    count = dict.fromkeys(KINDS, 0)
    calendar_ms = dict.fromkeys(KINDS, 0)
    business_ms = dict.fromkeys(KINDS, 0)
    breaches = met = 0
    first_met = first_breaches = 0  # service level: first responses only
    for component, amount in group.items():
        head, _, rest = component.partition(":")
        if head not in _HEADS:
            continue
        kind = rest.partition(":")[0]
        if kind not in count:
            continue
        if head == "resp_n":
            count[kind] += amount
        elif head == "resp_ms":
            calendar_ms[kind] += amount
        elif head == "resp_bms":
            business_ms[kind] += amount
        elif head == "sla_breach":
            breaches += amount
            first_breaches += amount if kind == "first" else 0
        else:
            met += amount
            first_met += amount if kind == "first" else 0
    kpis: list[Kpi] = []
    for kind in KINDS:
        n = count[kind]
        kpis += [
            Kpi(f"{kind}_responses", float(n)),
            ratio(f"{kind}_response_avg_seconds", calendar_ms[kind] / 1000, n),
            ratio(f"{kind}_response_business_avg_seconds", business_ms[kind] / 1000, n),
            seconds(f"{kind}_response_median_seconds", group.get(f"resp_p50_ms:{kind}")),
            seconds(f"{kind}_response_p90_seconds", group.get(f"resp_p90_ms:{kind}")),
        ]
    kpis += [
        Kpi("sla_breaches", float(breaches)),
        ratio("sla_compliance", met, met + breaches),
        # the call centre's "80/20": first responses within their target, of those judged
        ratio("service_level", first_met, first_met + first_breaches),
    ]
    return kpis
