"""What the CRM REST clients share: errors with a retriable flag, a per-portal rate
limiter, a retry policy with backoff, and a small TTL cache for stage dictionaries.

RestError (SalesPulseError)
├── TransientRestError   5xx, timeouts, rate-limit answers: retried with backoff
└── PermanentRestError   deleted record, refused credentials, bad request: dead-lettered
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
import msgspec

from salespulse.core.errors import SalesPulseError
from salespulse.core.retry import retry
from salespulse.core.settings import Settings

# A stage missing from a cached dictionary refetches it, at most this often.
MISSING_STAGE_REFRESH_S = 60.0

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class RestError(SalesPulseError):
    """A CRM REST call failed. ``reason`` is the dead-letter reason if it stays failed."""

    reason: str = "rest_unavailable"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientRestError(RestError):
    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message, reason="rest_unavailable")
        self.retry_after_s = retry_after_s


class PermanentRestError(RestError):
    """reason: record_not_found, rest_auth_failed, rest_rejected or not_configured."""


class RateLimiter:
    """A token bucket per key (a portal): ``rate_per_s`` sustained, ``burst`` at once."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = 1.0 / rate_per_s
        self._burst = burst
        self._clock = clock
        # key → the instant the bucket is full again (tokens are derived from it).
        self._full_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self._clock()
            full_at = max(self._full_at.get(key, now), now)
            # Taking a token moves "full again" one interval later; wait while that would
            # exceed the bucket's capacity.
            wait = full_at + self._interval - now - self._burst * self._interval
            if wait > 0:
                await asyncio.sleep(wait)
            self._full_at[key] = full_at + self._interval

    def hold(self, key: str, seconds: float | None = None) -> None:
        """After a rate-limit answer: no call for this key for ``seconds`` (default: until
        one token refills, i.e. our count was optimistic and the bucket is empty)."""
        now = self._clock()
        wait = self._interval if seconds is None else seconds
        earliest = now + wait + (self._burst - 1) * self._interval
        self._full_at[key] = max(self._full_at.get(key, now), earliest)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, failures: int, retry_after_s: float | None) -> float:
        backoff: float = min(self.max_backoff_s, self.first_backoff_s * 2.0 ** (failures - 1))
        if retry_after_s is not None:
            return min(self.max_backoff_s, max(backoff, retry_after_s))
        return backoff

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        """SALESPULSE_ENRICHMENT_* retries, shared by every CRM REST caller (enrichment, user
        sync)."""
        return cls(
            max_attempts=settings.enrichment_max_attempts,
            first_backoff_s=settings.enrichment_backoff_s,
            max_backoff_s=settings.enrichment_backoff_max_s,
        )


async def with_retries(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[], None] = lambda: None,
) -> T:
    """Retry TransientRestError (the retriable one) with backoff, honouring a Retry-After;
    the last one propagates after max_attempts (salespulse/core/retry.py)."""

    def delay(failures: int, exc: Exception) -> float:
        return policy.delay(failures, getattr(exc, "retry_after_s", None))

    return await retry(
        what, attempt, backoff=delay, max_attempts=policy.max_attempts, on_retry=on_retry
    )


class TtlCache(Generic[K, V]):
    """Values kept for ``ttl_s``; ``age`` tells how old one is (to refresh on a miss)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] > self._ttl_s:
            return None
        return entry[1]

    def age(self, key: K) -> float | None:
        entry = self._entries.get(key)
        return None if entry is None else self._clock() - entry[0]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock(), value)


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by these CRMs)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class RestClient:
    """What every CRM REST client holds: its session, pace, retry policy and timeout."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        limiter: RateLimiter,
        retry: RetryPolicy,
        timeout_s: float,
        on_call: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._session = session
        self._limiter = limiter
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._on_call = on_call

    async def json_get(
        self,
        url: str,
        portal: str,
        *,
        headers: dict[str, str],
        params: dict[str, str],
        what: str,
        not_found: str = "rest_rejected",
        detail: Callable[[bytes], str] = lambda raw: "",
    ) -> Any:
        """One paced, retried JSON GET. ``what`` names it in errors and logs, never the URL
        or headers (they may hold a secret); ``detail`` adds the CRM's error category.

        429 (Retry-After honoured: the portal is held that long) and 5xx and timeouts are
        retried with backoff; 404 fails as ``not_found``, 401/403 as refused credentials,
        any other 4xx as a rejected request; 204 (amoCRM: an empty list) is None."""

        async def attempt() -> Any:
            await self._limiter.acquire(portal)
            try:
                async with self._session.get(
                    url,
                    params=params,
                    headers={"Accept": "application/json", **headers},
                    timeout=self._timeout,
                ) as response:
                    raw = await response.read()
                    status = response.status
                    wait = retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientRestError(f"{what}: {type(exc).__name__}") from None
            if status in (200, 204):
                self._on_call("ok")
                return None if status == 204 else _decoded(raw, what)
            message = f"{what}: HTTP {status} {detail(raw)}".strip()
            if status == 429 or status >= 500:
                self._on_call("retried")
                if status == 429 and wait is not None:
                    self._limiter.hold(portal, wait)
                raise TransientRestError(message, retry_after_s=wait)
            self._on_call("failed")
            if status == 404:
                raise PermanentRestError(message, reason=not_found)
            if status in (401, 403):
                raise PermanentRestError(message, reason="rest_auth_failed")
            raise PermanentRestError(message, reason="rest_rejected")

        return await with_retries(what, attempt, self._retry)


def _decoded(raw: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise PermanentRestError(
            f"{what}: the answer is not JSON", reason="rest_rejected"
        ) from None
