"""The one retry helper: an error's ``retriable`` flag decides, nothing else."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, UnknownMemberIdError

from handlers.enrichment.crm_rest.http import PermanentRestError, TransientRestError
from salespulse.core.errors import (
    BrokerUnavailableError,
    InvalidEventError,
    KpiStoreError,
    TotalOverflowError,
)
from salespulse.core.retry import OUTAGE_BACKOFF, capped_steps, retry


class Flaky:
    """Raises the given errors in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self._errors = list(errors)
        self.attempts = 0

    async def __call__(self) -> str:
        self.attempts += 1
        if self._errors:
            raise self._errors.pop(0)
        return "done"


class Waits:
    """A backoff that records what it was asked and waits no time (no test sleeps)."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    def __call__(self, failures: int, exc: Exception) -> float:
        self.asked.append((failures, type(exc).__name__))
        return 0.0


async def test_retriable_errors_are_retried_until_the_attempt_succeeds() -> None:
    errors = [KpiStoreError("redis down"), BrokerUnavailableError("no ack")] * 10
    attempt, waits = Flaky(*errors, KafkaConnectionError("reconnecting")), Waits()
    assert await retry("write", attempt, backoff=waits) == "done"
    assert attempt.attempts == 22
    assert [failures for failures, _ in waits.asked] == list(range(1, 22))
    assert waits.asked[-1] == (21, "KafkaConnectionError")  # aiokafka's own flag is read


@pytest.mark.parametrize(
    "error",
    [
        TotalOverflowError("would overflow"),
        InvalidEventError("bad", []),
        PermanentRestError("gone", reason="record_not_found"),
        UnknownMemberIdError(),
        ValueError("no flag at all"),
    ],
)
async def test_an_error_that_is_not_retriable_is_raised_at_once(error: Exception) -> None:
    attempt, waits = Flaky(error), Waits()
    with pytest.raises(type(error)):
        await retry("write", attempt, backoff=waits)
    assert attempt.attempts == 1
    assert waits.asked == []


async def test_with_max_attempts_the_last_retriable_error_is_raised() -> None:
    attempt, waits = Flaky(*[TransientRestError("503")] * 5), Waits()
    retried: list[None] = []
    with pytest.raises(TransientRestError):
        await retry(
            "fetch", attempt, backoff=waits, max_attempts=3, on_retry=lambda: retried.append(None)
        )
    assert attempt.attempts == 3
    assert len(waits.asked) == len(retried) == 2


def test_the_outage_backoff_grows_then_stays_at_its_cap() -> None:
    error = KpiStoreError("down")
    assert [OUTAGE_BACKOFF(n, error) for n in range(1, 8)] == [0.1, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0]
    assert capped_steps(0.5)(9, error) == 0.5
