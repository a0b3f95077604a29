"""Every dashboard query against a real Prometheus that scraped a running SalesPulse.

One SalesPulse (`salespulse run`, against the session's broker and Redis) gets an hour
of a realistic office replayed through `salespulse replay`, its waiting clients posted
live, then a minute of live traffic in rounds (and two bad payloads) while a real
Prometheus scrapes it every second. Then every metric a panel names must be on /metrics,
and every panel query, with its template variables set as Grafana would set them, must
return a number.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from salespulse.app.embedded import LocalProcess, free_port
from salespulse.core.settings import Settings
from salespulse.dev.dashboards.panels import Json
from salespulse.dev.dashboards.render import BOARDS
from tests import office_day
from tests.integration.processes import salespulse_process
from tests.prometheus_harness import Prometheus, Sample, finite, running_prometheus

pytestmark = pytest.mark.integration

LIVE_ROUNDS = 6
# The office's managers by name (tenants file `managers:`), the last one left to the id.
STAFF = {
    manager: name
    for manager, name in zip(
        office_day.MANAGERS[:-1],
        ("Олена Коваленко", "Петро Бондаренко", "Анастасія Шевченко-Литвиненко", "Ivan Melnyk"),
        strict=False,
    )
}
# What Grafana puts for its interval macros; any value the data covers would do.
MACROS = {"__rate_interval": "2m", "__interval": "1m", "__range": "5m"}
# Values of the single-value variables; each must be among the variable's own values.
CHOSEN = {"tenant": office_day.TENANT, "pipeline": office_day.PIPELINE}
METRIC = re.compile(r"\bsalespulse_[a-z0-9_]+")
VARIABLE = re.compile(r"\$(\w+)")
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")


@dataclass(frozen=True)
class Scraped:
    prometheus: Prometheus
    exposition: str  # the /metrics text at the end of the run
    at: float  # unix time by which Prometheus had scraped everything


def post(base: str, body: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{base}/v1/events", body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status: int = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status


@pytest.fixture(scope="module")
def scraped(
    broker: LocalProcess, redis_server: LocalProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scraped]:
    workdir = tmp_path_factory.mktemp("dashboards")
    now = datetime.now(UTC)
    tenants = workdir / "tenants.yaml"
    office_file = yaml.safe_load(office_day.tenants_file(now))
    office_file["tenants"][office_day.TENANT]["managers"] = STAFF  # as the office spells them
    tenants.write_text(yaml.safe_dump(office_file, allow_unicode=True))
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{broker.port}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        events_topic="crm.events.dashboards",
        dlq_topic="crm.events.dlq.dashboards",
        consumer_group="kpi-dashboards",
        sla_consumer_group="sla-dashboards",
        app_id="salespulse-dashboards",
        redis_key_prefix="dashboards:",
        http_port=free_port(),
        data_dir=workdir / "data",
        topic_partitions=4,
        kafka_session_timeout_s=6.0,
        batch_timeout_ms=20,
        tenants_file=tenants,
    )
    base = f"http://127.0.0.1:{settings.http_port}"
    history = office_day.history(now, waiting=False)
    waiting = office_day.waiting_now(now)
    path = workdir / "office.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in history))
    with (
        salespulse_process("run", settings, workdir / "salespulse.log"),
        running_prometheus(
            workdir / "prometheus", {"salespulse": [f"127.0.0.1:{settings.http_port}"]}
        ) as prometheus,
    ):
        prometheus.wait_for('up{job="salespulse"} == 1', timeout_s=30)
        replay = subprocess.run(
            [sys.executable, "-m", "salespulse.cli", "replay", str(path), "--url", base],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        # the clients waiting now: live contacts (a replayed one is history, never waits)
        assert post(base, json.dumps(waiting).encode()) == 202
        live = len(waiting)
        for number in range(LIVE_ROUNDS):
            events = office_day.live_round(datetime.now(UTC), number)
            assert post(base, json.dumps(events).encode()) == 202
            live += len(events)
            if number in (1, 3):  # rejected payloads: counted and dead-lettered
                assert post(base, b'{"not json') == 400
                assert post(base, b'{"event_id": "x", "type": "call"}') == 422
            time.sleep(1.5)
        total = len(history) + live
        for counter in ("salespulse_worker_events_applied_total",
                        "salespulse_worker_sla_events_applied_total"):  # fmt: skip
            prometheus.wait_for(counter, lambda s: bool(s) and s[0].value >= total, 90)
        # A last scrape after the workers caught up: one Prometheus took after this instant.
        caught_up = time.time()
        prometheus.wait_for(f'timestamp(up{{job="salespulse"}}) > {caught_up:.3f}', timeout_s=30)
        at = time.time()
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310
            exposition = response.read().decode()
        yield Scraped(prometheus, exposition, at)


def boards() -> list[tuple[str, Json]]:
    return [(name, build()) for name, build in BOARDS.items()]


def targets(board: Json) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of the board."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in MACROS:
            return MACROS[name]
        assert name in values, f"{expr!r} uses ${name}, which the dashboard does not define"
        return values[name]

    return VARIABLE.sub(value, expr)


def variable_values(scraped: Scraped, definition: str, chosen: dict[str, str]) -> list[str]:
    """What Grafana lists for a ``label_values(selector, label)`` variable."""
    match = LABEL_VALUES.fullmatch(definition)
    assert match, f"unsupported variable query {definition!r}"
    selector, label = substitute(match["selector"], chosen), match["label"]
    samples = scraped.prometheus.query(f"group by ({label}) ({selector})", scraped.at)
    return sorted({sample.labels[label] for sample in samples})


class NoValues(AssertionError):
    """A variable's query lists nothing (or not the value the test needs)."""


def scenarios(scraped: Scraped, board: Json) -> list[dict[str, str]]:
    """Variable settings to test: Grafana's default (All), one of each value, each option.

    Variables resolve in order, as in Grafana (team values depend on the tenant chosen).
    """
    defaults: dict[str, str] = {}
    picked: dict[str, str] = {}
    options: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "custom":
            options[name] = [option["value"] for option in variable["options"]]
            defaults[name] = picked[name] = variable["current"]["value"]
            continue
        found = variable_values(scraped, variable["definition"], defaults)
        choice = CHOSEN.get(name, found[0] if found else "")
        if choice not in found:
            raise NoValues(f"${name}: {variable['definition']} lists {found}, not {choice!r}")
        picked[name] = choice
        defaults[name] = variable["allValue"] if variable["includeAll"] else choice
    settings = [defaults, picked]
    for name, values in options.items():
        settings += [{**defaults, name: value} for value in values if value != defaults[name]]
    return settings


def exposed_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_every_metric_a_dashboard_names_is_exposed(scraped: Scraped) -> None:
    exposed = exposed_names(scraped.exposition)
    missing: dict[str, set[str]] = {}
    for name, board in boards():
        queries = [expr for _, expr in targets(board)]
        queries += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
        for expr in queries:
            used = set(METRIC.findall(expr))
            assert used, f"{name}: {expr!r} reads no SalesPulse metric"
            missing.setdefault(name, set()).update(used - exposed)
    missing = {name: names for name, names in missing.items() if names}
    assert not missing, f"named in dashboards but not on /metrics: {missing}"


def test_every_panel_query_returns_data_from_prometheus(scraped: Scraped) -> None:
    failures: list[str] = []
    checked = 0
    for name, board in boards():
        try:
            settings = scenarios(scraped, board)
        except NoValues as exc:
            failures.append(f"{name}: {exc}")
            continue
        for values in settings:
            for title, expr in targets(board):
                query = substitute(expr, values)
                samples: list[Sample] = scraped.prometheus.query(query, scraped.at)
                checked += 1
                if not finite(samples):
                    failures.append(f"{name} · {title}: {query} → {samples}")
    assert checked > 100
    assert not failures, f"{len(failures)} of {checked} queries gave no number:\n" + "\n".join(
        failures
    )


def test_the_managers_board_join_gives_every_manager_series_its_name(scraped: Scraped) -> None:
    board = dict(boards())["managers.json"]
    calls = next(expr for title, expr in targets(board) if title == "Calls")
    values = {"tenant": office_day.TENANT, "manager": ".*", "window": "today"}
    query = substitute(calls, values)
    joined = scraped.prometheus.query(query, scraped.at)
    plain = scraped.prometheus.query(
        f'salespulse_calls_by_manager{{tenant="{office_day.TENANT}", window="today"}}', scraped.at
    )
    assert plain, "the office made calls today"
    # The join keeps every series (each manager label has its info) and its value.
    assert {s.labels["manager"]: s.value for s in joined} == {
        s.labels["manager"]: s.value for s in plain
    }
    names = {s.labels["manager"]: s.labels["name"] for s in joined}
    expected = {manager: STAFF.get(manager, manager) for manager in names}
    assert names == expected
    assert set(STAFF.values()) & set(names.values()), "configured names reach Grafana"


def test_the_live_office_shows_on_the_wall_screen(scraped: Scraped) -> None:
    """Spot checks that the numbers are the office's, not just any number."""
    prom, at = scraped.prometheus, scraped.at
    today = {"tenant": office_day.TENANT, "window": "today"}

    def value(metric: str, **labels: str) -> float:
        selector = ",".join(f'{k}="{v}"' for k, v in {**today, **labels}.items())
        samples = prom.query(f"{metric}{{{selector}}}", at)
        assert len(samples) == 1, (metric, samples)
        return samples[0].value

    assert value("salespulse_won") >= LIVE_ROUNDS * len(office_day.TEAMS)
    assert value("salespulse_revenue") > 0
    assert value("salespulse_messages_in") > value("salespulse_messages_out") / 2
    assert 0 < value("salespulse_win_rate") < 1
    tenant = f'tenant="{office_day.TENANT}"'
    breached = prom.query(f"sum(salespulse_waiting_breached{{{tenant}}})", at)
    assert [s.value >= 1 for s in breached] == [True], "the unanswered chats breach the SLA"
    at_risk = prom.query(f"sum(salespulse_waiting_at_risk{{{tenant}}})", at)
    assert [s.value >= 1 for s in at_risk] == [True], "e-mails waiting 25-30 min are at risk"
    late = prom.query(
        f"sum by (kind) (increase(salespulse_sla_breaches_total{{{tenant}}}[5m]))", at
    )
    assert {s.labels["kind"]: s.value > 0 for s in late} == {"first": True, "next": True}
    assert not math.isnan(value("salespulse_average_check"))
