"""A real Prometheus server for tests: the Debian ``prometheus`` binary as a local process.

    with running_prometheus(tmp_path, targets=["127.0.0.1:8080"],
                            rule_files=[Path("deploy/prometheus/rules/salespulse.yml")]) as prom:
        prom.wait_for('up{job="target-0"} == 1', timeout_s=30)
        samples = prom.query("sum(salespulse_calls)")
        prom.wait_for('ALERTS{alertname="X", alertstate="firing"}', timeout_s=60)

It scrapes the given ``host:port`` targets (job ``target-N``, or the names given with a
mapping) every second and evaluates rules every second, keeps its TSDB in the given
directory, listens on a free loopback port, and is stopped (SIGTERM, then SIGKILL) on
exit; it also dies with the test process (salespulse.app.embedded's death signal), so a
crashed run leaves no orphan. ``scripts/ensure-system-deps.sh`` installs the binary.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from salespulse.app.embedded import LocalProcess, free_port

SCRAPE_INTERVAL = "1s"


class Sample(NamedTuple):
    """One element of an instant-query result (a vector element or a scalar)."""

    labels: dict[str, str]
    value: float


class PrometheusError(AssertionError):
    """Prometheus refused a query or never reached the awaited state (fails the test)."""


class Prometheus:
    """A running server: its URL and the two calls tests need."""

    def __init__(self, process: LocalProcess) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{process.port}"

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query (``/api/v1/query``) at unix time ``at`` (default: now).

        A PromQL error raises PrometheusError naming the expression; an empty result is [].
        """
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self._get("/api/v1/query", params)
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r}: unexpected result type {data['resultType']}")
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[Sample]], bool] = bool,
        timeout_s: float = 60.0,
    ) -> list[Sample]:
        """Re-run the query until ``condition(samples)`` holds (default: non-empty)."""
        deadline = time.monotonic() + timeout_s
        samples: list[Sample] = []
        while time.monotonic() < deadline:
            samples = self.query(expr)
            if condition(samples):
                return samples
            time.sleep(0.25)
        raise PrometheusError(
            f"after {timeout_s:.0f}s {expr!r} still gives {samples}; log:\n"
            f"{self.process.log_tail()}"
        )

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
                body: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{params}: {body.get('errorType')}: {body.get('error')}")
        return body


def finite(samples: list[Sample]) -> bool:
    """A wait_for condition: at least one sample that is a number (not NaN nor ±Inf)."""
    return any(math.isfinite(sample.value) for sample in samples)


@contextmanager
def running_prometheus(
    workdir: Path,
    targets: Sequence[str] | Mapping[str, Sequence[str]],
    rule_files: Sequence[Path] = (),
    alertmanagers: Sequence[str] = (),
    ready_timeout_s: float = 30.0,
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets`` ("host:port", /metrics) until the block ends.

    ``targets``: a list (one job per target, ``target-0``, ``target-1``, ...) or a
    mapping job name → targets. ``rule_files``: loaded as given (a bad file stops the
    start with Prometheus's own message). ``alertmanagers``: "host:port" to send alerts to.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError(
            "prometheus missing: scripts/ensure-system-deps.sh installs the Debian package"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = (
        dict(targets)
        if isinstance(targets, Mapping)
        else {f"target-{n}": [target] for n, target in enumerate(targets)}
    )
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(_config(jobs, rule_files, alertmanagers)))
    port = free_port()
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with LocalProcess("prometheus", argv, port, workdir) as process:
        process.wait_ready(ready_timeout_s)
        prometheus = Prometheus(process)
        _wait_ready(prometheus, ready_timeout_s)
        yield prometheus


def _config(
    jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path], alertmanagers: Sequence[str]
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_timeout": SCRAPE_INTERVAL,
                "static_configs": [{"targets": list(addresses)}],
            }
            for job, addresses in jobs.items()
        ],
    }
    if rule_files:
        config["rule_files"] = [str(path.resolve()) for path in rule_files]
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return config


def _wait_ready(prometheus: Prometheus, timeout_s: float) -> None:
    """/-/ready answers 200 once the TSDB is open and the rules are loaded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # A bad rule file makes it exit after it opened its port: say so, don't time out.
        prometheus.process.raise_if_exited()
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise PrometheusError(f"prometheus never became ready: {prometheus.process.log_tail()}")
