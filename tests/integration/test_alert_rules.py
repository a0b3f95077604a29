"""Alert rules and Alertmanager configuration, checked and run by the real tools.

promtool checks and unit-tests the rules; amtool checks the Alertmanager configuration and
its routing tree; a real Alertmanager proves the inhibit rules mute what they should and
nothing else, and loads the production configuration after the entrypoint put the secrets in.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from salespulse.app.embedded import wait_until
from tests.integration.alertmanager_process import (
    Alertmanager,
    JsonObject,
    WebhookReceiver,
    running_alertmanager,
    webhook_receiver,
)

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES = RULES_DIR / "salespulse.rules.yml"
RULE_TESTS = RULES_DIR / "salespulse.rules.test.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
ENTRYPOINT = DEPLOY / "alertmanager" / "entrypoint.sh"
RUNBOOK = DEPLOY / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/salespulse/salespulse/blob/main/deploy/RUNBOOK.md#"
SECRETS_DIR_IN_CONFIG = "/etc/alertmanager/secrets"
GROUP_WAIT_S = 1

# The series the rules may use. The lead's collector must expose every salespulse_ name here
# (the SLA issue's metric contract); this list is to be replaced by the real exporter's
# output once that exists on main. `up` is written by Prometheus itself for every target.
HISTOGRAMS = ("salespulse_first_response_seconds", "salespulse_next_response_seconds")
EXPORTED_SERIES = frozenset(
    {
        "salespulse_waiting_conversations",
        "salespulse_waiting_at_risk",
        "salespulse_waiting_breached",
        "salespulse_waiting_oldest_age_seconds",
        "salespulse_sla_breaches_total",
        "salespulse_sla_target_seconds",
        "salespulse_business_hours_open",
        "salespulse_last_event_received_timestamp_seconds",
        "salespulse_consumer_lag",
        "salespulse_kpi_store_up",
        "salespulse_kpi_store_reset_pending",
        "salespulse_worker_offset_resets_total",
        "salespulse_ingest_events_accepted_total",
        "salespulse_ingest_payloads_rejected_total",
        "salespulse_ingest_spool_bytes",
        "salespulse_dead_letters_total",
        "salespulse_worker_events_applied_total",
        "salespulse_worker_events_too_late_total",
        "salespulse_webhooks_received_total",
        *(
            f"{histogram}{suffix}"
            for histogram in (*HISTOGRAMS, "salespulse_event_to_kpi_latency_seconds")
            for suffix in ("_bucket", "_sum", "_count")
        ),
    }
)
PROMETHEUS_SERIES = frozenset({"up"})


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} missing: `make test` installs the Debian {package} package"
    return found


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# --- Prometheus rules --------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    result = run([tool("promtool", "prometheus"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    # rule_files in the test file are relative: run where they resolve.
    result = run([tool("promtool", "prometheus"), "test", "rules", RULE_TESTS.name], cwd=RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_config_loads_the_rules() -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = run([tool("promtool", "prometheus"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    alerting = yaml.safe_load(config.read_text())["alerting"]
    assert alerting["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_every_alert_has_severity_annotations_runbook_and_both_unit_test_cases() -> None:
    runbook_anchors = {
        github_anchor(line.removeprefix("## "))
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys(), name
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL), name
        assert url.removeprefix(RUNBOOK_URL) in runbook_anchors, f"{name}: no runbook section"
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: needs a firing and a not-firing test case"


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (enough PromQL for our rules)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        word, call = match.groups()
        if call is None and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def test_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (tenant, le) (rate(a_bucket{basis="b c"}[1h]))) > 9e2'
        " and on (tenant) (max by (tenant) (b) == 1) unless c offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_rules_use_only_series_of_the_metric_contract() -> None:
    used = {name for rule in alerting_rules() for name in metric_names(rule["expr"])}
    assert "salespulse_waiting_breached" in used  # the extraction found the rules' series
    assert used - EXPORTED_SERIES - PROMETHEUS_SERIES == set()


# --- Alertmanager configuration -----------------------------------------------------------


def test_alertmanager_config_is_valid() -> None:
    # amtool does not open *_file paths, so no secret files are needed to check the syntax.
    result = run(
        [tool("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_CONFIG)]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 2 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=SlaBreached", "tenant=demo", "team=team-a", "channel=chat"],
            "demo-team-a-slack",
        ),
        (
            ["alertname=SlaAtRisk", "tenant=demo", "team=team-b", "channel=phone"],
            "demo-team-b-telegram",
        ),
        (["alertname=SlaBreached", "tenant=demo", "team=none", "channel=chat"], "demo-telegram"),
        (["alertname=IntegrationSilent", "tenant=demo"], "demo-telegram"),
        (["alertname=SlaBreached", "tenant=acme", "team=team-a", "channel=chat"], "ops-email"),
        (["alertname=ConsumerLagHigh", "group=kpi"], "ops-email"),
    ],
)
def test_routes_send_a_teams_alerts_to_that_team(labels: list[str], receiver: str) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    config = f"--config.file={ALERTMANAGER_CONFIG}"
    result = run(
        [amtool, "config", "routes", "test", config, f"--verify.receivers={receiver}", *labels]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entrypoint_writes_secrets_and_alertmanager_loads_the_result(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    template = tmp_path / "alertmanager.yml"
    template.write_text(
        ALERTMANAGER_CONFIG.read_text().replace(SECRETS_DIR_IN_CONFIG, str(secrets))
    )
    rendered = tmp_path / "run" / "alertmanager.yml"
    telegram_key = "123456789:AAF-test_key"  # the shape of a Telegram bot token
    env = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_SECRETS_DIR": str(secrets),
        "ALERTMANAGER_CONFIG_TEMPLATE": str(template),
        "ALERTMANAGER_CONFIG": str(rendered),
        "TELEGRAM_BOT_TOKEN": telegram_key,
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "SMTP_PASSWORD": "smtp-test-password",
    }
    # `env` as the command: what Alertmanager would inherit, without the secrets.
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "env"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "TELEGRAM_BOT_TOKEN" not in result.stdout
    assert "SMTP_PASSWORD" not in result.stdout
    assert "SLACK_WEBHOOK_URL" not in result.stdout
    written = {path.name: path for path in secrets.iterdir()}
    assert written.keys() == {"telegram_bot_token", "slack_webhook_url", "smtp_password"}
    assert written["smtp_password"].read_text() == "smtp-test-password"
    for path in (*written.values(), rendered):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    config = yaml.safe_load(rendered.read_text())
    telegram = [c for r in config["receivers"] for c in r.get("telegram_configs", [])]
    assert telegram, "the configuration has Telegram receivers"
    assert {c["bot_token"] for c in telegram} == {telegram_key}

    with running_alertmanager(rendered, tmp_path / "alertmanager") as manager:
        loaded = manager.status()["config"]["original"]
    assert "demo-team-a-slack" in loaded
    assert telegram_key not in loaded  # Alertmanager shows secrets as <secret>


def test_entrypoint_refuses_a_missing_secret(tmp_path: Path) -> None:
    template = tmp_path / "alertmanager.yml"
    template.write_text(
        ALERTMANAGER_CONFIG.read_text().replace(SECRETS_DIR_IN_CONFIG, str(tmp_path))
    )
    env = {
        "PATH": os.environ["PATH"],
        "ALERTMANAGER_SECRETS_DIR": str(tmp_path / "secrets"),
        "ALERTMANAGER_CONFIG_TEMPLATE": str(template),
        "ALERTMANAGER_CONFIG": str(tmp_path / "rendered.yml"),
    }
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert f"cannot read {tmp_path}/telegram_bot_token" in result.stderr
    assert not (tmp_path / "rendered.yml").exists()


# --- Inhibition, on a real Alertmanager ---------------------------------------------------


@pytest.fixture
def notifications() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def alertmanager(tmp_path: Path, notifications: WebhookReceiver) -> Iterator[Alertmanager]:
    """The production routes and inhibit rules, with every receiver a local webhook."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": notifications.url(r["name"])}]}
        for r in config["receivers"]
    ]
    # Seconds instead of the production minutes; an inhibition is checked when a group flushes.
    config["route"].update(group_wait=f"{GROUP_WAIT_S}s", group_interval=f"{GROUP_WAIT_S}s")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    with running_alertmanager(path, tmp_path / "alertmanager") as manager:
        yield manager


def alert(**labels: str) -> JsonObject:
    return {"labels": labels, "annotations": {"summary": "test"}}


def test_integration_silent_inhibits_that_tenants_sla_alerts_only(
    alertmanager: Alertmanager, notifications: WebhookReceiver
) -> None:
    demo_silent = alert(alertname="IntegrationSilent", severity="critical", tenant="demo")
    acme_breach = alert(
        alertname="SlaBreached", severity="critical", tenant="acme", team="north", channel="phone"
    )
    # Sources first: an inhibitor must know the source when the target's group flushes.
    alertmanager.post_alerts([demo_silent, acme_breach])
    wait_until(lambda: len(alertmanager.alerts()) == 2, 10, "the source alerts")
    sla = {"severity": "warning", "team": "team-a", "channel": "chat"}
    alertmanager.post_alerts(
        [
            alert(alertname="SlaBreached", tenant="demo", **{**sla, "severity": "critical"}),
            alert(alertname="SlaAtRisk", tenant="demo", **sla),
            alert(
                alertname="FirstResponseP90High", tenant="demo", severity="warning", team="team-a"
            ),
            alert(
                alertname="SlaAtRisk",
                tenant="acme",
                severity="warning",
                team="north",
                channel="phone",
            ),
            alert(
                alertname="SlaAtRisk",
                tenant="acme",
                severity="warning",
                team="north",
                channel="email",
            ),
        ]
    )
    wait_until(lambda: len(alertmanager.alerts()) == 7, 10, "all alerts")

    by_key = {
        (a["labels"]["alertname"], a["labels"]["tenant"], a["labels"].get("channel", "")): a
        for a in alertmanager.alerts()
    }
    silent_fp = by_key["IntegrationSilent", "demo", ""]["fingerprint"]
    breach_fp = by_key["SlaBreached", "acme", "phone"]["fingerprint"]
    inhibited_by = {key: a["status"]["inhibitedBy"] for key, a in by_key.items()}
    states = {key: a["status"]["state"] for key, a in by_key.items()}
    assert inhibited_by["SlaBreached", "demo", "chat"] == [silent_fp]
    assert inhibited_by["FirstResponseP90High", "demo", ""] == [silent_fp]
    assert silent_fp in inhibited_by["SlaAtRisk", "demo", "chat"]
    assert inhibited_by["SlaAtRisk", "acme", "phone"] == [breach_fp]
    for key in (("SlaBreached", "acme", "phone"), ("SlaAtRisk", "acme", "email")):
        assert inhibited_by[key] == [], key
        assert states[key] == "active", key
    assert inhibited_by["IntegrationSilent", "demo", ""] == []
    assert states["SlaBreached", "demo", "chat"] == "suppressed"

    # And in what reaches people: the demo SLA groups were posted with acme's at-risk alerts
    # and flush after the same group_wait. A witness posted once acme's notification has
    # arrived, to the receiver of the demo team's SLA groups, flushes a group_wait later
    # still: once it has arrived, a demo SLA notification would have arrived too.
    def sent() -> set[tuple[str, str, str, str]]:
        return {
            (n.receiver_path, labels["alertname"], labels["tenant"], labels.get("channel", ""))
            for n in notifications.received()
            for labels in n.alert_labels()
        }

    expected = {
        ("demo-telegram", "IntegrationSilent", "demo", ""),
        ("ops-email", "SlaBreached", "acme", "phone"),
        ("ops-email", "SlaAtRisk", "acme", "email"),
    }
    wait_until(lambda: expected <= sent(), 20, f"notifications {expected}")
    alertmanager.post_alerts(
        [alert(alertname="Witness", severity="info", tenant="demo", team="team-a")]
    )
    witness = ("demo-team-a-slack", "Witness", "demo", "")
    wait_until(lambda: witness in sent(), 20, "the witness's notification")
    assert sent() == expected | {witness}
