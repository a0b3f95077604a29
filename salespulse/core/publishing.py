"""What puts records on the topics, as the worker and the ingest both need it.

The ingest's Kafka edge (handlers/publisher.py) implements it; the worker only needs to
dead-letter what it cannot apply, so it depends on this protocol and the composition
root hands it the ingest's publisher: no side imports another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from salespulse.core.events import CrmEvent


class EventPublisher(Protocol):
    async def publish_events(
        self, events: Sequence[CrmEvent], *, patient: bool = False
    ) -> dict[str, int]:
        """``patient``: a sender that can wait and retry (a backfill), so the broker gets
        the full produce timeout before anything goes to a disk spool. Returns, per
        ``topic:partition``, the offset after the last record the broker took (empty when
        the records were spooled)."""
        ...

    async def publish_dead_letter(
        self,
        raw: bytes,
        *,
        reason: str,
        problems: list[dict[str, object]],
        origin: str,
        key: bytes | None = None,
    ) -> None: ...
