"""`salespulse soak` for a few seconds: it starts its own broker, Redis and SalesPulse,
posts a steady mix, samples memory, prints the table and the slopes, and cleans up.

No speed or slope is asserted (a few seconds show nothing about levelling off, and this
machine's speeds vary); the test keeps the command itself working.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_soak_posts_samples_and_prints_the_slopes() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SALESPULSE_")}
    result = subprocess.run(
        [sys.executable, "-m", "salespulse.cli", "soak",
         "--minutes", "0.2", "--rate", "10", "--sample-every", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    samples = re.findall(r"^ *\d+\.\d\d min  sent +\d+  RSS MiB: salespulse .* keys +\d+$",
                         result.stdout, re.MULTILINE)  # fmt: skip
    assert len(samples) >= 2, output
    answers = re.search(r"^answers: \{(.*)\}", result.stdout, re.MULTILINE)
    assert answers is not None, output
    assert re.fullmatch(r"202: \d+", answers.group(1)), output  # every post accepted
    for series in ("RSS salespulse", "RSS stage 1", "RSS stage 2", "RSS tansu", "Redis used_memory",
                   "Redis retained states",
                   "conversation state", "event ids"):  # fmt: skip
        assert re.search(rf"^ *{series}.* +-?\d+\.\d", result.stdout, re.MULTILINE), output
    assert " ERROR " not in output
