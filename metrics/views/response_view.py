"""Response-time KPIs of a window, from the SLA stage's components. Pure.

The components (streams/sla_fold.py) are summed over a window's buckets like every
other KPI, so "first response today" means replies made today. Percentiles come from
the histogram buckets, interpolated linearly inside the bucket that holds the rank,
as Prometheus's histogram_quantile does (docs/sla.md): exact to the bucket, not finer.
"""

from __future__ import annotations

from collections.abc import Mapping

from metrics.read.kpi_value import Kpi, ratio
from salespulse.core.kpi.catalogue import RESPONSE_BUCKETS_S

KINDS = ("first", "next")
_HEADS = frozenset({"resp_n", "resp_ms", "resp_bms", "resp_hist", "sla_breach", "sla_met"})


def quantile_seconds(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile of a response histogram (bucket index → count), or None if empty."""
    counts = [max(hist.get(i, 0), 0) for i in range(len(RESPONSE_BUCKETS_S) + 1)]
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    running = 0
    for index, count in enumerate(counts):
        if count and running + count >= rank:
            if index == len(RESPONSE_BUCKETS_S):  # +Inf: the largest finite bound
                return float(RESPONSE_BUCKETS_S[-1])
            lower = RESPONSE_BUCKETS_S[index - 1] if index else 0
            upper = RESPONSE_BUCKETS_S[index]
            return lower + (upper - lower) * (rank - running) / count
        running += count
    return float(RESPONSE_BUCKETS_S[-1])  # not reached: the last bucket holds the rank


def response_kpis(group: Mapping[str, int]) -> list[Kpi]:
    """first/next response count, average, median and p90 (calendar; average also in
    business seconds), SLA breaches and compliance, summed over every channel."""
    count = dict.fromkeys(KINDS, 0)
    calendar_ms = dict.fromkeys(KINDS, 0)
    business_ms = dict.fromkeys(KINDS, 0)
    hists: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
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
        elif head == "resp_hist":
            bucket = rest.rpartition(":")[2]
            if bucket.startswith("c"):
                index = int(bucket[1:])
                hists[kind][index] = hists[kind].get(index, 0) + amount
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
            Kpi(f"{kind}_response_median_seconds", quantile_seconds(hists[kind], 0.5)),
            Kpi(f"{kind}_response_p90_seconds", quantile_seconds(hists[kind], 0.9)),
        ]
    kpis += [
        Kpi("sla_breaches", float(breaches)),
        ratio("sla_compliance", met, met + breaches),
        # the call centre's "80/20": first responses within their target, of those judged
        ratio("service_level", first_met, first_met + first_breaches),
    ]
    return kpis
