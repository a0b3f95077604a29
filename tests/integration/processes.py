"""Run the real `salespulse` command as a subprocess pointed at the harness's servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from salespulse.core.settings import Settings


def settings_env(settings: Settings, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    values = {**settings.model_dump(exclude_none=True), **overrides}
    for name, value in values.items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        env[f"SALESPULSE_{name.upper()}"] = text
    return env


@contextmanager
def salespulse_process(
    command: str, settings: Settings, log_path: Path, **overrides: object
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `salespulse <command>`, wait for /healthz, stop it (SIGTERM) afterwards."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "salespulse.cli", command],
            env=settings_env(settings, **overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(process, settings, log_path)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_healthy(process: subprocess.Popen[bytes], settings: Settings, log_path: Path) -> None:
    url = f"http://127.0.0.1:{settings.http_port}/healthz"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"salespulse exited {process.returncode}: "
                f"{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(
        f"salespulse never became healthy: {log_path.read_text(errors='replace')[-3000:]}"
    )
