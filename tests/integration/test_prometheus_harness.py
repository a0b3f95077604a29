"""The real-Prometheus harness itself: scrapes, evaluates rules, answers queries, stops clean."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from salespulse.app.embedded import free_port
from salespulse.core.errors import EmbeddedServiceError
from tests.prometheus_harness import PrometheusError, Sample, finite, running_prometheus

pytestmark = pytest.mark.integration

RULES = """\
groups:
  - name: harness
    rules:
      - record: harness:up:sum
        expr: sum(up)
      - alert: HarnessAlwaysFiring
        expr: vector(1)
        labels: {severity: info}
"""


def test_prometheus_scrapes_evaluates_rules_and_stops(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    # A target that is never up, next to Prometheus scraping itself (found through `up`).
    with running_prometheus(
        tmp_path / "prom", {"nobody": [f"127.0.0.1:{free_port()}"]}, rule_files=[rules]
    ) as prom:
        pid = prom.process.pid
        prom.wait_for('up{job="nobody"} == 0', timeout_s=30)
        assert prom.wait_for("harness:up:sum", finite, timeout_s=30)[0].value == 0
        firing = prom.wait_for('ALERTS{alertname="HarnessAlwaysFiring",alertstate="firing"}')
        assert firing[0].labels["severity"] == "info"
        assert prom.query("1 + 1") == [Sample({}, 2.0)]
        assert prom.query("absent_metric_name_xyz") == []
        with pytest.raises(PrometheusError, match="bad_data"):
            prom.query("sum(")
        with pytest.raises(PrometheusError, match="still gives"):
            prom.wait_for("absent_metric_name_xyz", timeout_s=0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_broken_rule_file_fails_the_start_with_prometheus_own_message(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: bad\n    rules:\n      - record: x\n        expr: sum(\n")
    with (
        pytest.raises(EmbeddedServiceError, match=r"prometheus exited"),
        running_prometheus(tmp_path / "prom", [], rule_files=[rules]),
    ):
        pass
