"""Benchmark baseline (b): the naive faust design, one agent step and table write per event.

It is what SalesPulse would look like written the textbook faust way: an agent iterates
the raw topic event by event, keeps each deal's state in one faust Table and adds each
KPI increment to another (every write also produces a changelog record). The KPI
arithmetic is the product's own (``fold_batch`` of one event), so the difference
measured is the stream machinery, not the maths.

A faust Worker owns its event loop and installs signal handlers, so the baseline runs in
a child process: ``python -m salespulse.dev.bench.naive ...``. :func:`run_naive` is the
parent's side; :func:`main` the child's, which writes its timings to a JSON file and then
stops its own worker with SIGTERM (the worker's ordinary graceful shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faust

from salespulse.app.faust_app import faust_broker_url
from salespulse.core.events import decode_event
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from streams.fold import States, decode_state, entity_ref, fold_batch

# Short enough that Tansu's first group join (about half of it) stays a few seconds.
SESSION_TIMEOUT_S = 6.0
TABLE = "kpis"
STATES = "entities"
_PR_SET_PDEATHSIG = 1
_KEYS = KpiKeys("naive:")
# Both paths compute the whole catalogue for configured offices: pipelines, teams, targets.
_OFFICE = TenantConfig.model_validate({
    "pipelines": {"sales": {"stages": [
        {"id": "new"}, {"id": "qualified", "warm": True, "limit_hours": 48},
        {"id": "proposal", "limit_hours": 72}, {"id": "negotiation"},
        {"id": "won", "kind": "won"}, {"id": "lost", "kind": "lost"},
    ]}},
    "teams": {"north": {"managers": [f"m-{n}" for n in range(0, 12)]},
              "south": {"managers": [f"m-{n}" for n in range(12, 25)]}},
    "targets": {"teams": {"north": {"revenue": "1000000", "deals_won": 100}}},
})  # fmt: skip
BENCH_TENANTS = TenantDirectory(
    TenantsFile(tenants={
        "acme": _OFFICE.model_copy(update={"currency": "USD"}),
        "globex": _OFFICE.model_copy(update={"currency": "EUR"}),
    })
)  # fmt: skip


@dataclass(frozen=True)
class NaiveResult:
    """Timed from the first event processed to the last: ``timed`` events in between."""

    events: int
    timed: int
    wall_s: float
    cpu_s: float


def naive_topics(app_id: str) -> list[str]:
    """The internal topics faust creates for the app: the table changelog, the leader topic."""
    return [
        f"{app_id}-{TABLE}-changelog",
        f"{app_id}-{STATES}-changelog",
        f"{app_id}-__assignor-__leader",
    ]


async def run_naive(
    bootstrap: str, topic: str, app_id: str, events: int, partitions: int
) -> NaiveResult:
    """Run the baseline over the first ``events`` records of ``topic`` in a child process."""
    # Generous enough for a loaded machine: its 20,000 events took 74 s of the former
    # 80 s budget on the 2-core VM with other work running (~270/s); this allows 100/s.
    timeout_s = 120 + events / 100
    with tempfile.TemporaryDirectory(prefix="salespulse-bench-naive-") as tmp:
        workdir = Path(tmp)
        result_path = workdir / "result.json"
        log_path = workdir / "worker.log"
        argv = [
            *("-m", "salespulse.dev.bench.naive", "--bootstrap", bootstrap, "--topic", topic),
            *("--app-id", app_id, "--events", str(events), "--partitions", str(partitions)),
            *("--datadir", str(workdir / "data"), "--result", str(result_path)),
            *("--parent-pid", str(os.getpid())),
        ]
        with log_path.open("wb") as log:
            child = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            async with asyncio.timeout(timeout_s):
                await child.wait()
        finally:
            # Still running only after a timeout, Ctrl-C or another error.
            if child.returncode is None:
                child.terminate()
                try:
                    async with asyncio.timeout(5.0):
                        await child.wait()
                except TimeoutError:  # its graceful stop waits for a broker that is gone
                    child.kill()
                    await child.wait()
        if not result_path.exists():
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"naive faust worker exited {child.returncode} early:\n{tail}")
        data = json.loads(result_path.read_text())
        return NaiveResult(**data)


def _exit_with_parent(parent_pid: int) -> None:
    """Die with the benchmark even if it is killed outright (no orphaned faust worker)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before prctl took effect: then we were re-parented.
    if os.getppid() != parent_pid:
        raise SystemExit("salespulse.dev.bench.naive: parent process is gone")


class _Progress:
    """Counts processed events; on the last one writes the timings and stops the worker."""

    def __init__(self, target: int, result_path: Path) -> None:
        self._target = target
        self._result_path = result_path
        self._done = 0
        self._start_wall = 0.0
        self._start_cpu = 0.0

    def tick(self) -> None:
        self._done += 1
        if self._done == 1:
            self._start_wall, self._start_cpu = time.perf_counter(), time.process_time()
        elif self._done == self._target:
            result = NaiveResult(
                events=self._target,
                timed=self._target - 1,
                wall_s=time.perf_counter() - self._start_wall,
                cpu_s=time.process_time() - self._start_cpu,
            )
            # Write then rename: the parent never reads a half-written file.
            partial = self._result_path.with_suffix(".tmp")
            partial.write_text(json.dumps(result.__dict__))
            partial.replace(self._result_path)
            os.kill(os.getpid(), signal.SIGTERM)


def build_app(args: argparse.Namespace, progress: _Progress) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=faust_broker_url(args.bootstrap),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        datadir=args.datadir,
        topic_partitions=args.partitions,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 5,
        broker_rebalance_timeout=SESSION_TIMEOUT_S,
    )
    # Raw bytes in: the agent decodes with the product's own msgspec decoder.
    source = app.topic(
        args.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    # The table must be co-partitioned with its source topic.
    kpis = app.Table(TABLE, default=int, key_type=str, value_type=int, partitions=args.partitions)
    entities = app.Table(
        STATES, default=bytes, key_type=str, value_type=bytes, partitions=args.partitions
    )

    @app.agent(source)
    async def fold_per_event(stream: faust.StreamT[bytes]) -> None:
        async for raw in stream:
            event = decode_event(raw)
            states: States = {}
            ref = entity_ref(_KEYS, event)
            if ref is not None and entities[ref[0]]:
                states[ref[0]] = (1, decode_state(ref[1], entities[ref[0]]))
            fold = fold_batch([event], BENCH_TENANTS, _KEYS, states)
            for (tenant, granularity, bucket), fields in fold.increments.items():
                for field, amount in fields.items():
                    kpis[f"{tenant}|{granularity}|{bucket}|{field}"] += amount
            for key, (_, blob) in fold.entity_writes.items():
                entities[key] = blob
            progress.tick()

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salespulse.dev.bench.naive")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _exit_with_parent(args.parent_pid)
    app = build_app(args, _Progress(args.events, args.result))
    # quiet=True keeps faust's terminal spinner off: it would set the root logger to DEBUG.
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
    return 0 if args.result.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
