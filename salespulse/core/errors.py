"""Error taxonomy. Every class says whether retrying can help.

SalesPulseError (retriable: False)
├── InvalidEventError        bad input; the payload goes to the dead-letter topic
├── BrokerUnavailableError   Kafka did not acknowledge in time (retriable)
├── KpiStoreError            Redis refused or failed a batch (retriable)
├── TotalOverflowError       a batch would take a stored total past 64 bits (never)
└── EmbeddedServiceError     a local broker / redis-server could not be started
"""

from __future__ import annotations

from typing import ClassVar


class SalesPulseError(Exception):
    retriable: ClassVar[bool] = False


class InvalidEventError(SalesPulseError):
    """A payload that can never become a canonical event; carries field-level problems."""

    def __init__(self, reason: str, problems: list[dict[str, object]]) -> None:
        super().__init__(f"{reason}: {problems}")
        self.reason = reason
        self.problems = problems


class BrokerUnavailableError(SalesPulseError):
    retriable = True


class KpiStoreError(SalesPulseError):
    retriable = True


class TotalOverflowError(SalesPulseError):
    """The store refused a batch, unwritten: an increment would overflow a stored total.

    Retrying the same batch can never help; the worker isolates the event(s) behind it.
    """


class EmbeddedServiceError(SalesPulseError):
    pass
