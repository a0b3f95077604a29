"""``salespulse run``'s worker stages (KPI, SLA) in processes of their own, one each.

Why: the folds are pure Python (~22 and ~47 CPU µs an event on a 2-core VM). In one
process they shared the GIL with the HTTP ingest: while a history replayed, the ingest
answered late enough that 742,500 of 1,000,000 records went to the disk spool with a
healthy broker, and the whole pipeline used one core of two (issue 19). Apart, the
ingest and the exporter answer in milliseconds while the two stages fold side by side.

Each stage process serves its own pipeline metrics on a loopback port; the parent's
``/metrics`` merges them in (metrics/merged.py), so ``run`` shows one scrape as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
import urllib.request
from typing import Any

from mode import Service

from salespulse.app.compose import Role, Stage, build_runtime
from salespulse.app.embedded import free_port
from salespulse.app.faust_app import create_worker
from salespulse.core.errors import EmbeddedServiceError
from salespulse.core.logs import configure_logging
from salespulse.core.settings import Settings
from salespulse.core.tuning import tune_gc

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_TIMEOUT_S = 20.0
START_TIMEOUT_S = 120.0


def _die_with_parent(parent: int) -> None:
    """A SIGKILLed ``run`` must not leave its worker counting on (Linux; elsewhere the
    parent's stop() is the only way down)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _run_worker(settings: Settings, stage: Stage, parent: int) -> None:
    """The child's main: one stage of the ``salespulse worker`` role."""
    _die_with_parent(parent)
    configure_logging(settings.log_level)
    runtime = build_runtime(settings, [Role.WORKER], stages=frozenset({stage}))
    worker = create_worker(runtime.app, list(runtime.services))
    tune_gc()
    worker.execute_from_commandline()


class WorkerProcess:
    """One worker stage as a child process, on the parent's settings but its own
    loopback port (its /healthz and pipeline metrics)."""

    def __init__(self, settings: Settings, stage: Stage) -> None:
        self.stage = stage
        port = free_port()
        self.settings = settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port})
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        # spawn, not fork: the parent has started threads (logging, the embedded servers'
        # readers) by now, and a forked copy of their locks can deadlock.
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_run_worker,
            args=(self.settings, stage, os.getpid()),
            name=f"salespulse-{stage}-stage",
        )

    def start(self) -> None:
        self._process.start()
        logger.info("%s stage process started (pid %s)", self.stage, self._process.pid)

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until its /healthz answers: ``run`` opens its own doors only then, as one
        process did once its consumers had started (a client's first message must not
        wait for a stage still importing)."""
        deadline = time.monotonic() + timeout_s
        url = self.metrics_url.removesuffix("/metrics") + "/healthz"
        while time.monotonic() < deadline:
            if not self._process.is_alive():
                raise EmbeddedServiceError(
                    f"the {self.stage} stage's process exited (code {self._process.exitcode}) "
                    "while starting: its log lines above say why"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=1) as answer,  # noqa: S310 - our loopback
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)  # polling a starting process
        raise EmbeddedServiceError(f"the {self.stage} stage did not start within {timeout_s:.0f} s")

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
            logger.error("%s stage did not stop in %.0f s: killed", self.stage, STOP_TIMEOUT_S)
            self._process.kill()
            self._process.join()


class WorkerWatch(Service):
    """Stops ``run`` when a worker stage's process dies: KPIs that silently stop moving
    while the ingest still answers 202 would be the worst kind of failure."""

    def __init__(
        self, workers: list[WorkerProcess], interval_s: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._workers = workers
        self._interval_s = interval_s
        self.failed = False

    async def on_started(self) -> None:
        self.add_future(self._watch())

    async def _watch(self) -> None:
        while not self.should_stop:
            for worker in self._workers:
                if not worker.alive():
                    self.failed = True
                    logger.error(
                        "the worker process of the %s stage exited (code %s): stopping "
                        "salespulse run",
                        worker.stage,
                        worker.exitcode,
                    )
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
            await self.sleep(self._interval_s)
