"""``salespulse run``'s worker role (KPI and SLA stages) in a process of its own.

Why: the folds are pure Python (~22 and ~47 CPU µs an event on a 2-core VM) and in one
process they share the GIL with the HTTP ingest. While a history replayed, the ingest
answered late enough that 742,500 of 1,000,000 records went to the disk spool with a
healthy broker, and the fold used one core of two (issue 19). As two processes the ingest
and the exporter answer in milliseconds on one core while the worker folds on the other.

The worker serves its own pipeline metrics on a loopback port; the parent's ``/metrics``
merges them in (metrics/merged.py), so ``run`` shows one scrape as before.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from typing import Any

from mode import Service

from salespulse.app.compose import Role, build_runtime
from salespulse.app.embedded import free_port
from salespulse.app.faust_app import create_worker
from salespulse.core.logs import configure_logging
from salespulse.core.settings import Settings
from salespulse.core.tuning import tune_gc

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_TIMEOUT_S = 20.0


def _die_with_parent(parent: int) -> None:
    """A SIGKILLed ``run`` must not leave its worker counting on (Linux; elsewhere the
    parent's stop() is the only way down)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_worker(settings: Settings, parent: int) -> None:
    """The child's main: the ``salespulse worker`` role on the parent's settings."""
    _die_with_parent(parent)
    configure_logging(settings.log_level)
    runtime = build_runtime(settings, [Role.WORKER])
    worker = create_worker(runtime.app, list(runtime.services))
    tune_gc()
    worker.execute_from_commandline()


class WorkerProcess:
    """The worker role as a child process, on the parent's settings but its own loopback
    port (its /healthz and pipeline metrics)."""

    def __init__(self, settings: Settings) -> None:
        port = free_port()
        self.settings = settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port})
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        # spawn, not fork: the parent has started threads (logging, the embedded servers'
        # readers) by now, and a forked copy of their locks can deadlock.
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_run_worker,
            args=(self.settings, os.getpid()),
            name="salespulse-worker",
        )

    def start(self) -> None:
        self._process.start()
        logger.info("worker process started (pid %s)", self._process.pid)

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self) -> None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after STOP_TIMEOUT_S."""
        if self._process.pid is None:
            return
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():
            logger.error("worker process did not stop in %.0f s: killed", STOP_TIMEOUT_S)
            self._process.kill()
            self._process.join()


class WorkerWatch(Service):
    """Stops ``run`` when its worker process dies: KPIs that silently stop moving while
    the ingest still answers 202 would be the worst kind of failure."""

    def __init__(self, worker: WorkerProcess, interval_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._worker = worker
        self._interval_s = interval_s
        self.failed = False

    async def on_started(self) -> None:
        self.add_future(self._watch())

    async def _watch(self) -> None:
        while not self.should_stop:
            if not self._worker.alive():
                self.failed = True
                logger.error(
                    "the worker process exited (code %s): stopping salespulse run",
                    self._worker.exitcode,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return
            await self.sleep(self._interval_s)
