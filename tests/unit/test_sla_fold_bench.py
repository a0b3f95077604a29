"""`salespulse bench --fold-only`'s SLA line: it runs, and folds each batch on the states
the batches before it stored, so what it measures is the stage's work, not a fresh fold."""

from __future__ import annotations

import re

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from salespulse.dev.bench.sla_fold import STEPS, SlaFolder, measure_sla_fold
from streams.sla_fold import fold_conversations


def test_the_line_names_every_step_in_cpu_us_per_event() -> None:
    (line,) = measure_sla_fold(600, 200)
    assert line.startswith("sla fold-only, 600 events in batches of 200"), line
    for step in (*STEPS, "together"):
        assert re.search(rf"{step} [\d.]+", line), line


def test_batches_fold_on_the_states_the_earlier_batches_left() -> None:
    events = list(synthetic_events(3000, 5, "b"))
    folder, spent = SlaFolder(), dict.fromkeys(STEPS, 0.0)
    written: dict[str, bytes] = {}
    for start in range(0, len(events), 500):
        for key, (_, blob) in folder.fold(events[start : start + 500], spent).entity_writes.items():
            written[key] = blob
    whole = fold_conversations(events, BENCH_TENANTS, KpiKeys("sla-fold-bench:"), {})
    assert written == {key: blob for key, (_, blob) in whole.entity_writes.items()}
