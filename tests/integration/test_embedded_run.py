"""`salespulse run --demo` with nothing configured: its own broker and Redis, live KPIs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from salespulse.app.demo_offices import OFFICES, DemoLocale
from salespulse.app.embedded import free_port

DEMO = [sys.executable, "-m", "salespulse.cli", "run", "--demo"]

pytestmark = pytest.mark.integration


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command may contain spaces and parentheses; ppid follows the last ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


# With an ingest token the demo's own traffic must carry it (and the log must not).
@pytest.mark.parametrize(
    ("token", "locale"),
    [(None, "en"), ("demo-ingest-token-5f2c9a1e", "uk")],
    ids=["open", "token"],
)
def test_run_demo_starts_everything_shows_live_kpis_and_stops_clean(
    tmp_path: Path, token: str | None, locale: DemoLocale
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env["SALESPULSE_HTTP_PORT"] = str(port)
    kept = tmp_path / "kept"
    if token:
        env["SALESPULSE_INGEST_TOKEN"] = token
        # An operator's data dir holds the spool and the embedded Redis's AOF (not /tmp).
        env["SALESPULSE_DATA_DIR"] = str(kept)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # A real office's pace is an event a minute or so; 60 times that keeps the
            # live traffic measurable within the waits below on a loaded machine.
            [*DEMO, "--demo-locale", locale, "--demo-speed", "60"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while "SalesPulse is running." not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "never printed its URLs"
            time.sleep(0.2)
        text = log.read_text(errors="replace")
        assert f"POST http://127.0.0.1:{port}/v1/events" in text
        assert f"GET  http://127.0.0.1:{port}/metrics" in text
        assert re.search(r"embedded\s+broker \(Tansu, in-memory\) 127\.0\.0\.1:\d+", text)
        assert re.search(r"embedded\s+redis-server 127\.0\.0\.1:\d+", text)
        servers = children_of(process.pid)
        assert len(servers) >= 2, "broker and redis-server run as child processes"

        def demo_events_counted() -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                body = response.read().decode()
            match = re.search(r"^salespulse_worker_events_applied_total (\S+)$", body, re.M)
            return float(match.group(1)) if match else 0.0

        first = 0.0
        while (first := demo_events_counted()) == 0:
            assert time.monotonic() < deadline + 30, "demo traffic never reached the KPIs"
            time.sleep(0.5)
        # KPIs keep changing while the demo runs: a later count, within a bounded wait.
        changing_by = time.monotonic() + 60
        while demo_events_counted() <= first:
            assert time.monotonic() < changing_by, "KPIs stopped changing while the demo runs"
            time.sleep(0.5)
        # The office's people by name, in its language, every row a manager.
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/kpis?tenant=demo&window=month&by=manager"
        ) as response:
            kpis = json.loads(response.read())
        assert kpis["currency"] == OFFICES[locale].currency
        # The office's ad spend is nobody's: its group is "unassigned".
        names = {group["name"] for group in kpis["groups"].values()} - {"unassigned"}
        assert names == set(OFFICES[locale].names), "everyone won this month, named"
        if token:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/events", data=b"[]", method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)  # noqa: S310 - a local http URL
            assert refused.value.code == 401, "only the demo, holding the token, gets in"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert process.returncode == 0, log.read_text(errors="replace")[-2000:]
    if token:
        assert token not in log.read_text(errors="replace")
        assert (kept / "spool").is_dir(), "the spool is under SALESPULSE_DATA_DIR"
        assert any((kept / "redis").rglob("*.aof")), "so is the embedded Redis's AOF"
    # A bounded wait for the servers to be gone, not a fixed pause: one still alive after
    # it has outlived SalesPulse's shutdown.
    orphans_by = time.monotonic() + 10
    while [pid for pid in servers if alive(pid)]:
        assert time.monotonic() < orphans_by, "Ctrl-C left orphan processes"
        time.sleep(0.2)
