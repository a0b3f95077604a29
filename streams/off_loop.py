"""The worker's CPU-heavy steps, run off the asyncio event loop.

In ``salespulse run`` one process serves HTTP ingest, the KPI stage and the SLA stage on
one event loop. Folding a 5,000-event batch of a history replay takes hundreds of
milliseconds of pure Python; on the loop, that time is stolen from every ingest request
in flight, and past the publisher's one-second spool threshold a healthy broker's
records went to the disk spool (issue 19 measured 742,500 of 1,000,000 replayed records
spooled). Run in a worker thread instead, the fold still holds the GIL most of the
time, but CPython hands it over every ``sys.getswitchinterval()`` (5 ms): the loop gets
its turn within milliseconds rather than after the whole fold.

A thread, not a process: the fold reads the applier's cached entity states, which a
process would have to receive pickled on every batch (more CPU than the fold saves).
One thread per applier keeps its folds in order and never runs two of one stage at once.
What runs here must be pure: it reads its arguments and returns new objects; all shared
state (the applier's cache) is changed on the loop, after the await.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class OffLoop:
    """A single worker thread for one stage's folds; started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the worker thread; the loop serves others meanwhile."""
        if self._executor is None:
            # Made lazily: an applier built outside a running stage (a test, a script)
            # owns no thread until it folds.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        loop = asyncio.get_running_loop()
        # the caller's context (log fields) follows the call into the thread
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def close(self) -> None:
        """Let the thread end once its current call returns (nothing waits for it)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
