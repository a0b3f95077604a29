"""`salespulse bench` end to end, at a small size: it starts its own broker and Redis, runs
every path, checks path (a) against the in-memory fold, prints the table and cleans up.

No speed is asserted (speeds are what the command prints, and this machine's vary); the
test keeps the command itself working, and quiet about its own cleanup.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def bench(*arguments: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``salespulse bench`` as a user runs it: no SALESPULSE_* setting of the test run."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SALESPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "salespulse.cli", "bench", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_bench_runs_every_path_checks_the_fold_and_cleans_up() -> None:
    sizes = ["--events", "15000", "--naive-events", "300", "--partitions", "2", "--runs", "2"]
    result = bench(*sizes, "--open-deals", "2000", timeout_s=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for path in ("(a) SalesPulse", "(b) naive faust", "(c) raw aiokafka", "(d)"):
        assert path in result.stdout, output
    assert "FAILED" not in output
    assert "Redis all-time KPIs == in-memory fold of the same events: OK" in result.stdout
    assert "2,000 open deals" in result.stdout, output
    assert "GET /metrics, one tenant with 200 managers" in result.stdout, output
    # several batches, so that path (a) has a rate to print
    row_a = next(line for line in result.stdout.splitlines() if line.startswith("(a)"))
    assert row_a.split("|")[3].strip().replace(",", "").isdigit(), row_a
    assert "(a) ran 2 times: " in result.stdout, output
    # CPU next to wall, for every path; Redis's own cost, also by the number of managers
    assert "events/core-s" in result.stdout, output
    cpu = [line.split("|")[4].strip() for line in result.stdout.splitlines()[2:6]]
    assert all(value.replace(",", "").replace(".", "").isdigit() for value in cpu), cpu
    assert re.search(r"ratio \(a\)/\(b\): [\d,.]+x CPU, [\d,.]+x wall", result.stdout), output
    assert re.search(r"\(a\) draining its backlog: Redis CPU [\d,.]+ µs/event", result.stdout)
    assert re.search(r"\(d\) draining the same backlog: Redis CPU [\d,.]+ µs/event", result.stdout)
    for managers in ("10", "200", "2,000"):
        line = rf"{managers} managers: Redis CPU [\d,.]+ µs/event.*; [\d,.]+ hash fields written"
        assert re.search(line, result.stdout), output
    # too short a backlog for the speed targets to mean anything: no verdict
    assert "targets: not judged below --events 200,000" in result.stdout, output
    assert "target (a)" not in result.stdout, output
    # stopping is quiet: no cleanup left hanging, no offset commit after leaving the group
    assert "did not close cleanly" not in output
    assert "offset commit failed" not in output
    assert " ERROR " not in output


def test_fold_only_bench_splits_the_worker_steps_and_event_types() -> None:
    result = bench("--fold-only", "--events", "4000", timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    head, *by_type, sla = result.stdout.splitlines()
    assert head.startswith("fold-only, 4,000 events in batches of 5,000"), head
    for step in ("decode", "fold", "pack", "together"):
        assert f"{step} " in head, head
    kinds = {line.split()[2] for line in by_type}
    assert kinds == {"call", "message", "lead_created", "deal_created", "deal_stage_changed"}
    # the SLA stage's own steps, last
    assert sla.startswith("sla fold-only, 4,000 events in batches of 5,000"), sla
    for step in ("decode", "load", "fold", "pack", "together"):
        assert f"{step} " in sla, sla


def test_ingest_bench_measures_the_ingest_alone_and_in_run() -> None:
    result = bench("--ingest", "300", timeout_s=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for process in ("`salespulse ingest`", "`salespulse run`"):
        line = next(line for line in result.stdout.splitlines() if f"ingest in {process}" in line)
        # 300 requests in 3 rounds: the median round's, with CPU beside the wall rate
        assert re.search(r"100 one-event requests \(median of 3 rounds\)", line), line
        assert re.search(r"server CPU [\d,]+ µs/request \([\d,]+ requests per core-second\)", line)
    assert re.search(r"ingest alone (PASS|FAIL), in `run` (PASS|FAIL)", result.stdout), output
    assert "FAILED" not in output


def test_replay_bench_times_a_history_import_in_run_after_a_warm_up() -> None:
    result = bench("--replay", "2000", timeout_s=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(
        r"replay of 2,000 events \(2 years of history\) in `salespulse run`, its stages already "
        r"consuming: sent in [\d.]+s, all applied after [\d.]+s .*records spooled: 0",
        result.stdout,
    ), output
    assert re.search(r"during the replay: Redis CPU [\d.,]+ µs/event", result.stdout), output
    # the warm-up's batches are not the replay's
    batches = re.search(r"KPI stage: ([\d,]+) batches, ([\d,]+) events each", result.stdout)
    assert batches is not None, output
    count, each = (int(group.replace(",", "")) for group in batches.groups())
    assert count >= 1, output
    assert count * each == pytest.approx(2000, rel=0.01), output
    assert "FAILED" not in output
