"""The business boards: sales overview (the wall screen), funnel, managers' leaderboards.

Metric names and labels are the exporter's (metrics/collectors/kpi.py): tenant KPIs have
every window; ``_by_team`` today/week/month; ``_by_manager`` today/month; plan gauges
(``plan_target``, ``plan_pace``, ``plan_attainment``, ``plan_attainment_vs_pace``) exist
per team and manager with a configured monthly target, window ``month`` only.
"""

from __future__ import annotations

import re
from typing import Final

from salespulse.dev.dashboards.board import custom_variable, dashboard, query_variable
from salespulse.dev.dashboards.panels import (
    BAD_ABOVE_ZERO,
    GOOD_AT_ONE,
    Json,
    Panel,
    Query,
    bars,
    gauge,
    selector,
    stat,
    table,
    timeseries,
)

TENANT: Final = query_variable("tenant", "Tenant", "label_values(salespulse_calls, tenant)")
# Money is in the tenant's currency, which is no label: the boards are generated for one
# (`make dashboards CURRENCY=UAH`). Grafana's own currency units where it has one
# (`currencyUAH` shows ₴), else the code as a suffix.
DEFAULT_CURRENCY: Final = "USD"
_GRAFANA_CURRENCIES: Final = frozenset({
    "USD", "EUR", "GBP", "JPY", "RUB", "UAH", "PLN", "CHF", "CZK", "SEK", "NOK", "DKK",
    "TRY", "INR", "KRW", "BRL", "ZAR", "ILS", "BGN",
})  # fmt: skip


def money_unit(currency: str) -> str:
    """Grafana's unit for amounts in ``currency`` (an ISO 4217 code)."""
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"currency: an ISO 4217 code such as UAH, not {currency!r}")
    return f"currency{currency}" if currency in _GRAFANA_CURRENCIES else f"suffix: {currency}"


def named(expr: str) -> str:
    """The manager's display name joined on as a `name` label (salespulse_manager_info,
    one series per manager label of the tenant; staff names only)."""
    info = selector("salespulse_manager_info", tenant="$tenant")
    return f"{expr} * on(tenant, manager) group_left(name) {info}"


STEP: Final = "{{from_stage}} → {{to_stage}}"


def _kpi(name: str, window: str, **labels: str) -> str:
    return selector(f"salespulse_{name}", tenant="$tenant", window=window, **labels)


def _planned(kpi: str, target: str, plan: str) -> str:
    """Σ actual of the selected teams that have a target ÷ Σ their plan (target or pace)."""
    teams = selector(f"salespulse_{plan}_by_team", tenant="$tenant", target=target, team="~$team")
    actual = selector(f"salespulse_{kpi}_by_team", tenant="$tenant", window="month", team="~$team")
    return f"sum({actual} and on (team) {teams}) / sum({teams})"


def overview(currency: str = DEFAULT_CURRENCY) -> Json:
    """Today at a glance, for a TV in kiosk mode: big numbers first, trends below."""
    money = money_unit(currency)
    team = query_variable(
        "team",
        "Team",
        'label_values(salespulse_calls_by_team{tenant="$tenant"}, team)',
        include_all=True,
    )
    today = "today"
    panels = [
        stat("Revenue today", [Query(_kpi("revenue", today))], unit=money, decimals=0,
             size=(5, 6)),
        stat("Won deals today", [Query(_kpi("won", today))], size=(4, 6)),
        stat("Average check today", [Query(_kpi("average_check", today))], unit=money,
             decimals=0, size=(5, 6)),
        stat("Win rate today", [Query(_kpi("win_rate", today))], unit="percentunit",
             steps=((None, "red"), (0.2, "orange"), (0.35, "green")), size=(4, 6),
             description="won ÷ (won + lost) of deals closed today"),
        stat("Calls today", [Query(_kpi("calls", today), "all"),
                             Query(_kpi("calls_missed", today), "missed")],
             show_names=True, size=(3, 6)),
        stat("Messages today", [Query(_kpi("messages_in", today), "in"),
                                Query(_kpi("messages_out", today), "out")],
             show_names=True, size=(3, 6), description="bots and auto-replies excluded"),
        gauge("Revenue: month plan", [Query(_planned("revenue", "revenue", "plan_target"))],
              maximum=1.2, size=(5, 7),
              description="revenue this month of the selected teams ÷ their monthly target"),
        gauge("Revenue vs pace", [Query(_planned("revenue", "revenue", "plan_pace"))],
              size=(5, 7),
              description="≥ 100 %: ahead of the linear pace to this month's target"),
        gauge("Won deals vs pace", [Query(_planned("won", "deals_won", "plan_pace"))],
              size=(5, 7)),
        stat("Deals created today", [Query(_kpi("deals_created", today))], size=(3, 7)),
        stat("Talk time today", [Query(_kpi("talk_time_seconds", today))], unit="s",
             size=(3, 7)),
        stat("Leads today", [Query(_kpi("leads_created", today))], size=(3, 7)),
        timeseries(
            "Revenue this month: actual, pace and target",
            [
                Query(f"sum({_kpi('revenue_by_team', 'month', team='~$team')})", "actual"),
                Query(f"sum({_team_plan('plan_pace')})", "pace"),
                Query(f"sum({_team_plan('plan_target')})", "target"),
            ],
            unit=money,
            description="teams of the Team selection; plan: the tenants file's monthly targets",
        ),
        bars(
            "Revenue vs pace by team",
            [Query(_team_plan("plan_attainment_vs_pace"), "{{team}}")],
            unit="percentunit", maximum=1.5, steps=GOOD_AT_ONE, size=(12, 8),
        ),
        timeseries(
            "Revenue today",
            [Query(_kpi("revenue", today), "revenue")],
            unit=money,
        ),
        timeseries(
            "Activity today",
            [
                Query(_kpi("calls", today), "calls"),
                Query(_kpi("messages_in", today), "messages in"),
                Query(_kpi("messages_out", today), "messages out"),
                Query(_kpi("won", today), "won deals"),
            ],
        ),
    ]  # fmt: skip
    return dashboard(
        "salespulse-overview",
        "SalesPulse · Sales overview",
        "Today's revenue, deals and activity against the monthly plan (kiosk-ready).",
        [TENANT, team],
        panels,
        refresh="10s",
    )


def _team_plan(plan: str) -> str:
    return selector(f"salespulse_{plan}_by_team", tenant="$tenant", target="revenue", team="~$team")


def funnel() -> Json:
    pipeline = query_variable(
        "pipeline",
        "Pipeline",
        'label_values(salespulse_stage_entries{tenant="$tenant"}, pipeline)',
    )
    window = custom_variable(
        "window", "Window", ["15m", "1h", "24h", "today", "week", "month", "all"], "today"
    )

    def kpi(name: str, **labels: str) -> str:
        return _kpi(name, "$window", pipeline="$pipeline", **labels)

    # Live sets (open, ready, stuck) are the same in every window: read them once.
    def live(name: str) -> str:
        return _kpi(name, "all", pipeline="$pipeline")

    percent = "percentunit"
    panels = [
        stat("Bottleneck", [Query(kpi("bottleneck"), STEP)], unit=percent, show_names=True,
             steps=((None, "orange"),), size=(6, 6),
             description="the step with the lowest cohort conversion"),
        stat("End-to-end conversion", [Query(kpi("end_to_end_cohort"))], unit=percent,
             size=(4, 6), description="deals that entered the pipeline and were won"),
        stat("Cold → warm", [Query(kpi("cold_to_warm"))], unit=percent, size=(4, 6)),
        stat("Win rate", [Query(_kpi("win_rate", "$window"))], unit=percent, size=(4, 6)),
        stat("Open deals", [Query(f"sum({live('open_deals')})")], size=(3, 6)),
        stat("Stuck deals", [Query(f"sum({live('stuck_deals')})")], no_value="0",
             steps=BAD_ABOVE_ZERO, size=(3, 6),
             description="open deals past their stage's limit_hours"),
        bars("Step conversion (cohort)", [Query(kpi("conversion_cohort"), STEP)],
             unit=percent, maximum=1, size=(12, 9),
             description="of the deals that entered a stage, the share that reached the next"),
        bars("Step conversion (flow)", [Query(kpi("conversion_flow"), STEP)], unit=percent,
             maximum=1, size=(12, 9),
             description="entries of the next stage ÷ entries of this stage"),
        bars("Stage entries", [Query(kpi("stage_entries"), "{{stage}}")]),
        bars("Open deals by stage", [Query(live("open_deals"), "{{stage}}")]),
        bars("Stuck deals by stage", [Query(live("stuck_deals"), "{{stage}}")],
             steps=BAD_ABOVE_ZERO),
        bars("Time in stage (average)", [Query(kpi("time_in_stage_avg_seconds"), "{{stage}}")],
             unit="s"),
        bars("Time in stage (p90)", [Query(kpi("time_in_stage_p90_seconds"), "{{stage}}")],
             unit="s"),
        bars("Lost deals by reason", [Query(_kpi("lost_by_reason", "$window"), "{{reason}}")]),
        timeseries("Step conversion over time", [Query(kpi("conversion_cohort"), STEP)],
                   unit=percent, size=(24, 8)),
    ]  # fmt: skip
    return dashboard(
        "salespulse-funnel",
        "SalesPulse · Funnel",
        "Stage conversion, the bottleneck step, time in stage and stuck deals per pipeline.",
        [TENANT, pipeline, window],
        panels,
    )


def managers(currency: str = DEFAULT_CURRENCY) -> Json:
    money = money_unit(currency)
    manager = query_variable(
        "manager",
        "Manager",
        'label_values(salespulse_calls_by_manager{tenant="$tenant"}, manager)',
        include_all=True,
    )
    team = query_variable(
        "team",
        "Team",
        'label_values(salespulse_calls_by_team{tenant="$tenant"}, team)',
        include_all=True,
    )
    window = custom_variable("window", "Window", ["today", "month"], "today")

    def by_manager(name: str, window: str = "$window", **labels: str) -> str:
        """A per-manager KPI with the manager's name (legend `{{name}}`)."""
        return named(_kpi(f"{name}_by_manager", window, manager="~$manager", **labels))

    def by_team(name: str) -> str:
        return _kpi(f"{name}_by_team", "$window", team="~$team")

    def top(title: str, name: str, unit: str = "short") -> Panel:
        query = Query(f"topk(10, {by_manager(name)})", kind="table")
        return table(title, query, columns={"name": "Manager", "Value": title},
                     sort_by="Value", unit=unit, size=(8, 11))  # fmt: skip

    month = "month"
    panels = [
        top("Revenue", "revenue", money),
        top("Won deals", "won"),
        top("Calls", "calls"),
        bars("Revenue vs pace (month)",
             [Query(by_manager("plan_attainment_vs_pace", month, target="revenue"),
                    "{{name}}")],
             unit="percentunit", maximum=1.5, steps=GOOD_AT_ONE, size=(12, 10),
             description="≥ 100 %: ahead of the linear pace to the monthly target"),
        bars("Revenue: month plan",
             [Query(by_manager("plan_attainment", month, target="revenue"), "{{name}}")],
             unit="percentunit", maximum=1.2, steps=GOOD_AT_ONE, size=(12, 10)),
        bars("Win rate", [Query(by_manager("win_rate"), "{{name}}")], unit="percentunit",
             maximum=1),
        bars("Average check", [Query(by_manager("average_check"), "{{name}}")], unit=money),
        bars("Talk time", [Query(by_manager("talk_time_seconds"), "{{name}}")], unit="s"),
        bars("Revenue by team", [Query(by_team("revenue"), "{{team}}")], unit=money),
        bars("Won deals by team", [Query(by_team("won"), "{{team}}")]),
        bars("Calls by team", [Query(by_team("calls"), "{{team}}")]),
        bars("Clients waiting for a reply",
             [Query(selector("salespulse_waiting_conversations_by_manager", tenant="$tenant",
                             manager="~$manager"), "{{manager}}")],
             steps=((None, "green"), (5, "orange"), (15, "red")),
             description="now, by the manager responsible ('unassigned': no manager)"),
        timeseries("Calls by manager", [Query(by_manager("calls"), "{{name}}")],
                   size=(8, 8)),
        timeseries("Messages sent by manager",
                   [Query(by_manager("messages_out"), "{{name}}")], size=(8, 8)),
    ]  # fmt: skip
    return dashboard(
        "salespulse-managers",
        "SalesPulse · Managers",
        "Leaderboards of revenue, won deals and calls; plan and pace per manager and team.",
        [TENANT, manager, team, window],
        panels,
    )
