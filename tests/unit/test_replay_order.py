"""`salespulse replay` sends a history in time order (salespulse/dev/replay.py)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from salespulse.dev import replay
from salespulse.dev.replay import ReplaySummary, _batches


def test_a_shuffled_history_goes_out_in_time_order_in_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = [
        {"event_id": f"e-{n}", "occurred_at": (start + timedelta(hours=n)).isoformat()}
        for n in range(2_400)
    ]
    # Another zone spelling of one instant orders by the instant, not the text.
    events[5]["occurred_at"] = (start + timedelta(hours=5)).astimezone().isoformat()
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    lines = [json.dumps(event) for event in shuffled]
    lines.insert(100, json.dumps({"webhook": {"path": "/v1/webhooks/x", "body": "{}"}}))
    lines.insert(200, json.dumps({"event_id": "no-time"}))
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(replay, "SORT_WINDOW", 1_000)  # three windows of this file

    sent = list(_batches(path, ReplaySummary()))

    assert [kind for kind, _ in sent].count("webhook") == 1
    batches = [payload for kind, payload in sent if kind == "events"]
    assert all(len(batch) <= replay.BATCH for batch in batches)
    ids = [event["event_id"] for batch in batches for event in batch]
    assert sorted(ids) == sorted([*(e["event_id"] for e in events), "no-time"])
    # Each window of 1,000 lines goes out sorted, the event without a time first.
    first_window = [event for batch in batches[:2] for event in batch]
    assert first_window[0]["event_id"] == "no-time"
    times = [datetime.fromisoformat(e["occurred_at"]) for e in first_window[1:]]
    assert times == sorted(times)
