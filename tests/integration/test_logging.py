"""Our INFO lines reach the log of a real role process, past faust's logging setup."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
