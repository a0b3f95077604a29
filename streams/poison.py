"""Isolating poison events: the one event of a batch that the fold or the store cannot take.

The door (salespulse/core/events.py) keeps such events out, but records already on the topic,
a currency rate that blows an amount up, or a total that one more deal would overflow
still reach the worker. Retrying them can never help, and stopping on them stops every
tenant's KPIs, again after each restart. So a batch that fails is applied by halves:
every part that applies counts, and an event that fails on its own is poison.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import ConsumerRecord

from salespulse.core.events import CrmEvent

A = TypeVar("A")
Item = tuple[ConsumerRecord, CrmEvent]
# (record, reason, problem), as the consumer dead-letters it
Poison = tuple[ConsumerRecord, str, str]


async def apply_isolating(
    items: list[Item], apply_part: Callable[[list[CrmEvent]], Awaitable[A]], stage: str
) -> tuple[list[A], list[Poison]]:
    """Apply ``items`` in parts (in order), splitting each part that fails in two.

    ``apply_part`` must retry what is retriable itself: whatever it raises is taken as
    caused by the events of the part. A part that fails writes nothing (the store checks
    everything before its first write), so a part's retry after a split is clean.
    Costs one apply per poison event and level of splitting: 2·log2(n) per poison event.
    """
    applied: list[A] = []
    poison: list[Poison] = []
    parts = [items]
    while parts:
        part = parts.pop()
        try:
            applied.append(await apply_part([event for _, event in part]))
        except Exception as exc:  # noqa: BLE001 - any cause: split, then dead-letter one
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]  # the first half next: in order
                continue
            problem = f"the {stage} stage cannot take this event: {type(exc).__name__}: {exc}"
            poison.append((part[0][0], "poison", problem))
    return applied, poison
