"""KPI metrics read from Redis at scrape time (a custom collector, no state of its own).

Every KPI is a gauge with a ``window`` label (a window's value can fall: it rolls over,
and a reopened deal leaves the won count). Families:

    salespulse_<kpi>{tenant, window, ...}              tenant totals, every window
    salespulse_<kpi>_by_team{tenant, window, team}     today / week / month
    salespulse_<kpi>_by_manager{..., manager}          today / month, if per_manager

    salespulse_manager_info{tenant, manager, name, team} 1
                                                       who a manager label is: join with
        `* on(tenant, manager) group_left(name) salespulse_manager_info` (Prometheus'
        convention for labels that are no identity: a renamed manager stays one series)

Manager labels are capped per tenant (tenants file ``labels.max_values``): the most
active managers keep their own series, the rest are pooled as ``manager="other"``.
No entity ids or client data are ever labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from redis.exceptions import RedisError

from metrics.collectors.sla import SlaFamilies
from metrics.read.grouping import group_activity
from metrics.read.kpi_reader import Groups, KpiReader
from metrics.read.kpi_value import Kpi
from metrics.read.quantiles import is_percentile
from metrics.views.kpi_view import present, present_group
from metrics.views.response_view import KINDS
from salespulse.core.kpi.catalogue import TOTAL_GROUP, WINDOWS
from salespulse.core.staff import display_name
from salespulse.core.tenants import TenantDirectory

logger = logging.getLogger(__name__)

GROUP_WINDOWS = {"team": ("today", "week", "month"), "manager": ("today", "month")}
OTHER = "other"
_HELP = "SalesPulse KPI, see docs/kpi-semantics.md: {name}"
# family name → (family, its label names in order)
Families = dict[str, tuple[GaugeMetricFamily, list[str]]]

# Every KPI that present() and present_group() (metrics/views/kpi_view.py) can return, with the
# labels it adds to the family's base labels: describe() names every family from these,
# without Redis, so that the registry can detect a collision with any of them.
_FUNNEL_STEP = ("pipeline", "from_stage", "to_stage")
_STAGE = ("pipeline", "stage")
_PLAN = {name: ("target",) for name in (
    "plan_target", "plan_pace", "plan_attainment", "plan_attainment_vs_pace")}  # fmt: skip
TOTAL_KPIS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((
        "calls", "calls_in", "calls_out", "calls_answered", "calls_missed", "meetings",
        "messages_in", "messages_out", "leads_created", "deals_created", "leads_processed",
        "won", "lost", "talk_time_seconds", "talk_time_avg_seconds", "revenue",
        "average_check", "margin", "win_rate", "sales_cycle_avg_seconds",
        "sales_cycle_median_seconds", "sales_cycle_p90_seconds", "rating_avg",
        "lead_to_customer", "invoiced", "paid",
        "receivables", "repeat_sales", "repeat_sales_revenue", "repeat_sales_share",
        "purchase_frequency", "clv_avg", "sla_breaches", "sla_compliance",
        "calls_abandoned", "abandonment_rate", "service_level",
    ), ()),
    **{name: () for kind in KINDS for name in (
        f"{kind}_responses", f"{kind}_response_avg_seconds",
        f"{kind}_response_business_avg_seconds", f"{kind}_response_median_seconds",
        f"{kind}_response_p90_seconds",
    )},
    **dict.fromkeys(("conversion_cohort", "conversion_flow", "bottleneck"), _FUNNEL_STEP),
    **dict.fromkeys(("end_to_end_cohort", "end_to_end_flow", "cold_to_warm"), ("pipeline",)),
    **dict.fromkeys((
        "stage_entries", "open_deals", "ready_to_close", "stuck_deals",
        "time_in_stage_avg_seconds", "time_in_stage_median_seconds",
        "time_in_stage_p90_seconds",
    ), _STAGE),
    "lost_by_reason": ("reason",),
    "abc_clients": ("class",),
    "abc_revenue": ("class",),
    **dict.fromkeys(("marketing_cost", "new_clients", "cac", "romi"), ("source",)),
}  # fmt: skip
GROUP_KPIS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((
        "calls", "meetings", "messages_out", "deals_created", "won", "talk_time_seconds",
        "revenue", "average_check", "win_rate",
    ), ()),
    **_PLAN,
}  # fmt: skip
_STORE_UP = ("salespulse_kpi_store_up", "1 if Redis answered this scrape.")
_INFO = (
    "salespulse_manager_info",
    "1 per manager label of the _by_manager families: its display name (staff only) and "
    "team; join with group_left(name).",
)
_INFO_LABELS = ["tenant", "manager", "name", "team"]


class KpiCollector(Collector):
    """Reads every tenant's KPIs through the KpiReader on each scrape."""

    def __init__(self, reader: KpiReader, tenants: TenantDirectory) -> None:
        self._reader = reader
        self._tenants = tenants
        self._waiting = reader.waiting_reader()
        self._staff = reader.staff_reader()

    def describe(self) -> Iterator[Metric]:
        """Every family collect() can yield, empty: registration never touches Redis."""
        yield GaugeMetricFamily(*_STORE_UP)
        base = ["tenant", "window"]
        for suffix, names, kpis in (
            ("", base, TOTAL_KPIS),
            ("_by_team", [*base, "team"], GROUP_KPIS),
            ("_by_manager", [*base, "manager"], GROUP_KPIS),
        ):
            for kpi, labels in kpis.items():
                name = f"salespulse_{kpi}{suffix}"
                yield GaugeMetricFamily(name, _HELP.format(name=kpi), labels=[*names, *labels])
        yield GaugeMetricFamily(*_INFO, labels=_INFO_LABELS)
        yield from SlaFamilies().families()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(*_STORE_UP)
        families: Families = {}
        info = GaugeMetricFamily(*_INFO, labels=_INFO_LABELS)
        sla = SlaFamilies()
        try:
            stored = self._reader.tenants()
            for tenant in stored:
                managers = self._collect_tenant(tenant, families, sla)
                self._add_info(info, tenant, managers)
            now = self._reader.now()
            for tenant in sorted(set(stored) | set(self._tenants.names())):
                sla.add_config(tenant, self._tenants.get(tenant), now)
            for tenant, unix_s in sorted(self._waiting.last_received().items()):
                sla.add_last_received(tenant, unix_s)
        except RedisError as exc:
            logger.warning("KPI store unreachable during scrape: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from (family for family, _ in families.values())
        yield info
        yield from sla.families()

    def _add_info(self, info: GaugeMetricFamily, tenant: str, managers: set[str]) -> None:
        """One series per manager label value (the pooled `other` too, so that a join
        keeps every series); the name is the id when no source knows one."""
        if not managers:
            return
        config = self._tenants.get(tenant)
        names = self._staff.names(tenant)
        for manager in sorted(managers):
            team = config.team_of(manager) or ""
            info.add_metric([tenant, manager, display_name(names, manager), team], 1)

    def _collect_tenant(self, tenant: str, families: Families, sla: SlaFamilies) -> set[str]:
        """Each window's buckets, the won deals and the live sets are read once. Returns
        the manager label values it wrote."""
        managers: set[str] = set()
        config = self._tenants.get(tenant)
        now = self._reader.now()
        shared = self._reader.tenant_state(tenant, now)
        sla.add_waits(tenant, config, self._waiting.waiting(tenant, now))
        for window, sums in self._reader.raw_windows(tenant, WINDOWS, now).items():
            if window == "all":
                sla.add_responses(tenant, sums)
            snapshot = self._reader.snapshot(tenant, window, None, now, sums=sums, shared=shared)
            kpis = present(
                snapshot.groups[TOTAL_GROUP], config, window, now,
                revenue_by_source=snapshot.revenue_by_source,
            )  # fmt: skip
            _add(families, "", kpis, {"tenant": tenant, "window": window})
            dimensions = [
                dimension
                for dimension, windows in GROUP_WINDOWS.items()
                if window in windows and (dimension != "manager" or config.labels.per_manager)
            ]
            for dimension, groups in group_activity(sums, dimensions).items():
                if dimension == "manager":
                    groups = _cap(groups, config.labels.max_values)
                kind = "managers" if dimension == "manager" else "teams"
                for name, group in sorted(groups.items()):
                    kpis = present_group(group, config, window, now, target=(kind, name))
                    labels = {"tenant": tenant, "window": window, dimension: name}
                    _add(families, f"_by_{dimension}", kpis, labels)
                    if dimension == "manager" and any(kpi.value is not None for kpi in kpis):
                        managers.add(name)
        return managers


def _cap(groups: Groups, limit: int) -> Groups:
    """Keep the `limit` most active groups; pool the rest (sums only) as `other`."""
    if len(groups) <= limit:
        return groups

    def activity(item: tuple[str, dict[str, int]]) -> tuple[int, int, int, str]:
        name, group = item
        return (-group.get("won", 0), -group.get("calls", 0), -group.get("revenue", 0), name)

    # A manager whose id is literally "other" goes into the pool: a series of its own
    # would carry the pool's labels (and was overwritten by it).
    ranked = sorted((item for item in groups.items() if item[0] != OTHER), key=activity)
    kept = dict(ranked[: limit - 1])
    pooled: dict[str, int] = {}
    for _, group in [*ranked[limit - 1 :], *[item for item in groups.items() if item[0] == OTHER]]:
        for component, amount in group.items():
            if not is_percentile(component):  # a percentile does not add up
                pooled[component] = pooled.get(component, 0) + amount
    kept[OTHER] = pooled
    return kept


def _add(families: Families, suffix: str, kpis: list[Kpi], base: dict[str, str]) -> None:
    """Each KPI with a value as a sample of its family (created on first use).

    Samples are appended as built (GaugeMetricFamily.add_metric would zip the labels
    again), and the KPIs with no labels of their own share one label dict, which the
    exposition only reads: a 200-manager office's scrape adds ~3,000 samples (issue 19).
    """
    base_names = list(base)
    base_values = list(base.values())
    base_labels = dict(base)
    for kpi in kpis:
        value = kpi.value
        if value is None:
            continue
        name = f"salespulse_{kpi.name}{suffix}"
        entry = families.get(name)
        if entry is None:
            label_names = base_names + [key for key, _ in kpi.labels]
            family = GaugeMetricFamily(name, _HELP.format(name=kpi.name), labels=label_names)
            entry = families[name] = (family, label_names)
        # Every KPI of a family carries the same labels in the same order.
        if kpi.labels:
            values = base_values + [text for _, text in kpi.labels]
            labels = dict(zip(entry[1], values, strict=False))  # as add_metric zips them
        else:
            labels = base_labels
        entry[0].samples.append(Sample(name, labels, value))
