"""Our INFO lines reach the log of a real role process, in our format only: faust's worker
leaves the logging setup and the terminal alone."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from salespulse.app.embedded import free_port
from salespulse.core.settings import Settings
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

OUR_INFO = re.compile(r"\[INFO\] (salespulse|handlers|streams|metrics)\.\S+: ")


def test_info_lines_of_ours_are_written_at_log_level_info(
    settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "ingest.log"
    with salespulse_process("ingest", settings, log, log_level="INFO"):
        # A rejected payload is logged at INFO by the ingest (handlers.http_ingest).
        request = urllib.request.Request(
            f"http://127.0.0.1:{settings.http_port}/v1/events",
            data=b"not json",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as rejected:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback test URL
        assert 400 <= rejected.value.code < 500
        deadline = time.monotonic() + 30
        while not OUR_INFO.search(log.read_text(errors="replace")):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)  # polling the log file for the line, not a timing assumption
    text = log.read_text(errors="replace")
    # faust stays at WARNING: its start-up narration does not flood the log.
    assert not re.search(r"\[INFO\] (faust|mode|aiokafka)\.", text)


# Our format (salespulse.core.logs): time, pid, level, logger name. Nothing else writes
# a line to the output of `salespulse run --demo` but the URLs it prints for the person.
OUR_LINE = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] \[\d+\] "
    r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] [A-Za-z_][\w.]*: "
)
BANNER = ("SalesPulse is running.", "Ctrl-C stops everything.")
# Logged by the demo once the worker runs: everything has started by then.
STARTED = "posted the office's history"


def run_demo(tmp_path: Path, *, terminal: bool, linger_s: float = 0.0) -> str:
    """The whole output of `salespulse run --demo` from start to Ctrl-C, on a pseudo-
    terminal (as `make run` in a shell) or a pipe (as under systemd or in CI); Ctrl-C
    `linger_s` after the demo's history is posted (its live ticks run meanwhile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env |= {"SALESPULSE_HTTP_PORT": str(free_port()), "SALESPULSE_LOG_LEVEL": "INFO"}
    reader_fd, writer_fd = pty.openpty() if terminal else os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "salespulse.cli", "run", "--demo"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=writer_fd,
        stderr=writer_fd,
        cwd=tmp_path,
    )
    os.close(writer_fd)
    output = b""
    interrupted = False
    started_at: float | None = None
    deadline = time.monotonic() + 90
    try:
        while True:
            assert time.monotonic() < deadline, output.decode(errors="replace")[-3000:]
            readable, _, _ = select.select([reader_fd], [], [], 0.5)
            if readable:
                try:
                    chunk = os.read(reader_fd, 65536)
                except OSError:  # a pseudo-terminal whose other side closed: EIO
                    chunk = b""
                if not chunk:
                    break  # every writer is gone: the process has exited
                output += chunk
            if started_at is None and STARTED.encode() in output:
                started_at = time.monotonic()
            if not interrupted and started_at and time.monotonic() >= started_at + linger_s:
                process.send_signal(signal.SIGINT)  # what Ctrl-C sends
                interrupted = True
                deadline = time.monotonic() + 60  # for the orderly stop, on its own
            elif not interrupted:
                assert process.poll() is None, output.decode(errors="replace")[-3000:]
    finally:
        os.close(reader_fd)
        if process.poll() is None:
            process.kill()
        process.wait(30)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    return output.decode()


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_run_demo_writes_our_lines_only(tmp_path: Path, terminal: bool) -> None:
    """Every line is one of our log records or the URLs: faust's worker neither puts its
    own format on the records (the embedded servers' lines, logged before it starts, had
    another) nor draws its spinner or writes terminal escape codes."""
    text = run_demo(tmp_path, terminal=terminal)
    if terminal:
        text = text.replace("\r\n", "\n")  # the terminal's own line ends
    for control in ("\x1b", "\b", "\r"):
        assert control not in text, f"{control!r} in the output:\n{text[-3000:]}"
    assert "SalesPulse is running." in text
    in_banner = False
    for line in text.splitlines():
        if line == BANNER[0]:
            in_banner = True
        if not (in_banner or not line or OUR_LINE.match(line)):
            pytest.fail(f"not one of our lines: {line!r}\n{text[-3000:]}")
        if line == BANNER[1]:
            in_banner = False
    assert re.search(r"\[INFO\] salespulse\.app\.embedded: started broker", text)


def test_the_demo_at_a_real_office_pace_posts_no_empty_batch(tmp_path: Path) -> None:
    """At speed 1 most 0.4 s ticks of the demo office hold no event; posting them anyway
    drew a 422 `empty_batch` and a warning line every tick."""
    text = run_demo(tmp_path, terminal=False, linger_s=5.0)
    assert "[WARNING]" not in text, text[-3000:]
    assert "rejected ingest payload" not in text, text[-3000:]
