"""One retry helper: what an error says can be retried is retried, with capped backoff.

Every error of ours says whether retrying can help (``retriable``, salespulse/core/errors.py;
the CRM REST errors carry the same flag), and so do aiokafka's. The helper reads that flag
and nothing else: an error without it, or with it false, is raised at once, to the
caller that knows what to do with it (isolate a poison event, dead-letter a request).

Two ways of giving up, as the callers had them:

* a store or broker outage (Redis, the producer) is waited out for as long as it lasts:
  a batch waits, it never skips (``max_attempts=None``, the default, with
  ``OUTAGE_BACKOFF``);
* a CRM's REST call is tried ``max_attempts`` times, then its last error is raised and
  the request dead-lettered, ready for a replay (handlers/enrichment/crm_rest/http.py).

Retries do not end when the owning service stops: a stop waits a bounded grace for the
batch in hand (salespulse/core/batch_stage.py), then the service's tasks are cancelled,
and the sleep between attempts with them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# failures so far (1 after the first) and the error just raised → seconds to wait
Backoff = Callable[[int, Exception], float]


def capped_steps(*delays_s: float) -> Backoff:
    """Wait ``delays_s[n-1]`` after the n-th failure; the last delay from then on."""

    def delay(failures: int, _: Exception) -> float:
        return delays_s[min(failures, len(delays_s)) - 1]

    return delay


# Short first (a Redis failover or a producer reconnect is often over in a moment), then
# at most every 5 s, so a long outage is not hammered.
OUTAGE_BACKOFF = capped_steps(0.1, 0.5, 1.0, 2.0, 5.0)


def is_retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


async def retry(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff = OUTAGE_BACKOFF,
    max_attempts: int | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``await attempt()`` until it returns; retry while its error is retriable.

    ``max_attempts``: raise the last retriable error after that many attempts (None:
    never give up). ``on_retry`` is called before each wait (a metric).
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            failures += 1
            if max_attempts is not None and failures >= max_attempts:
                raise
            delay = backoff(failures, exc)
            if on_retry is not None:
                on_retry()
            logger.warning(
                "%s failed (attempt %d), retrying in %.2fs: %s", what, failures, delay, exc
            )
            await asyncio.sleep(delay)
