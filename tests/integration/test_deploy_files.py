"""deploy/ files are checked by the real tools that will load them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_prometheus_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs the Debian prometheus package"
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("block", ["authorization", "basic_auth"])
def test_the_commented_scrape_auth_of_the_exporter_is_valid_once_uncommented(
    block: str, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test` installs the Debian prometheus package"
    lines = (DEPLOY / "prometheus" / "prometheus.yml").read_text().splitlines()
    start = lines.index(f"    #{block}:")
    end = start + 1
    while lines[end].startswith("    #  "):
        end += 1
    lines[start:end] = [line.replace("    #", "    ", 1) for line in lines[start:end]]
    (tmp_path / "rules").symlink_to(DEPLOY / "prometheus" / "rules")
    # promtool checks that the secret files exist: give it some where the mount would be.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("salespulse-metrics-token", "salespulse-metrics-password"):
        (secrets / name).write_text("test-only-metrics-secret\n")
    config = tmp_path / "prometheus.yml"
    text = "\n".join(lines) + "\n"
    config.write_text(text.replace("/etc/prometheus/secrets/", f"{secrets}/"))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert block in config.read_text().split("job_name: salespulse-ingest")[0]
