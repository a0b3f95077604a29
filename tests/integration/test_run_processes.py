"""`salespulse run` keeps its worker in a process of its own (salespulse/app/worker_process.py):
the two live and die together, and one /metrics shows both."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from salespulse.core.settings import Settings
from tests.helpers import eventually
from tests.integration.processes import salespulse_process
from tests.integration.test_embedded_run import alive, children_of
from tests.integration.test_end_to_end import CALL

pytestmark = pytest.mark.integration


def worker_child(pid: int) -> int:
    """The pid of run's worker process (a multiprocessing spawn child)."""
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            return child
    raise AssertionError(f"salespulse run (pid {pid}) has no worker process")


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
        worker = worker_child(run.pid)
        assert worker != run.pid
        event = {**CALL, "event_id": "split-1"}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/events", json=event) as reply:
                assert reply.status == 202

            async def applied() -> bool:
                async with session.get(f"{base}/metrics") as response:
                    body = await response.text()
                return "salespulse_worker_events_applied_total 1.0" in body.splitlines()

            await eventually(applied, 60, "the worker process's count on run's /metrics")
            async with session.get(f"{base}/metrics") as response:
                lines = (await response.text()).splitlines()
        assert "salespulse_ingest_events_accepted_total 1.0" in lines
        series = [line.split(" ")[0] for line in lines if line and not line.startswith("#")]
        assert len(series) == len(set(series)), "a series shows twice"


def test_run_stops_with_an_error_when_its_worker_process_dies(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    with salespulse_process("run", settings, log) as run:
        worker = worker_child(run.pid)
        time.sleep(1)
        os.kill(worker, signal.SIGKILL)
        assert run.wait(30) == 1
    assert "the worker process exited" in log.read_text()


def test_a_killed_run_leaves_no_worker_counting_on(settings: Settings, tmp_path: Path) -> None:
    with salespulse_process("run", settings, tmp_path / "run.log") as run:
        worker = worker_child(run.pid)
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert wait_gone(worker, 30), "the worker process outlived a SIGKILLed run"
