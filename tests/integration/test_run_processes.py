"""`salespulse run` keeps each worker stage in a process of its own
(salespulse/app/worker_process.py): they live and die together, and one /metrics shows all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from salespulse.core.settings import Settings
from salespulse.dev.bench.parts import stage_processes_of
from tests.helpers import eventually
from tests.integration.processes import salespulse_process
from tests.integration.test_embedded_run import alive
from tests.integration.test_end_to_end import CALL

pytestmark = pytest.mark.integration


def wait_gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


async def test_run_folds_in_a_second_process_and_shows_its_series_on_one_metrics(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("run", settings, tmp_path / "run.log") as run:
        assert len(sorted(stage_processes_of(run.pid))) == 2, (
            "a process for each stage, KPI and SLA"
        )
        event = {**CALL, "event_id": "split-1"}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/events", json=event) as reply:
                assert reply.status == 202

            async def applied() -> bool:
                async with session.get(f"{base}/metrics") as response:
                    body = await response.text()
                lines = body.splitlines()
                return {
                    "salespulse_worker_events_applied_total 1.0",
                    "salespulse_worker_sla_events_applied_total 1.0",
                } <= set(lines)

            await eventually(applied, 60, "both stage processes' counts on run's /metrics")
            async with session.get(f"{base}/metrics") as response:
                lines = (await response.text()).splitlines()
        assert "salespulse_ingest_events_accepted_total 1.0" in lines
        series = [line.split(" ")[0] for line in lines if line and not line.startswith("#")]
        assert len(series) == len(set(series)), "a series shows twice"


@pytest.mark.parametrize("which", [0, 1], ids=["first", "second"])
def test_run_stops_with_an_error_when_a_stage_process_dies(
    settings: Settings, tmp_path: Path, which: int
) -> None:
    log = tmp_path / "run.log"
    with salespulse_process("run", settings, log) as run:
        stages = sorted(stage_processes_of(run.pid))
        time.sleep(1)
        os.kill(stages[which], signal.SIGKILL)
        assert run.wait(30) == 1
        assert [pid for pid in stages if not wait_gone(pid, 30)] == []
    assert "stage exited (code -9): stopping salespulse run" in log.read_text()


def test_a_killed_run_leaves_no_stage_counting_on(settings: Settings, tmp_path: Path) -> None:
    with salespulse_process("run", settings, tmp_path / "run.log") as run:
        stages = sorted(stage_processes_of(run.pid))
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert [pid for pid in stages if not wait_gone(pid, 30)] == [], "outlived run"


async def test_run_keeps_everything_in_one_process_when_asked(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    log = tmp_path / "run.log"
    with salespulse_process("run", settings, log, worker_process=False) as run:
        assert sorted(stage_processes_of(run.pid)) == []
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/events", json=CALL) as reply:
                assert reply.status == 202

            async def applied() -> bool:
                async with session.get(f"{base}/metrics") as response:
                    lines = set((await response.text()).splitlines())
                return {
                    "salespulse_worker_events_applied_total 1.0",
                    "salespulse_worker_sla_events_applied_total 1.0",
                } <= lines

            await eventually(applied, 60, "both stages' counts in the one process")
