"""The hub: one poller per watched key, frames only on change, newest-only mailboxes."""

from __future__ import annotations

import asyncio

import msgspec
import redis

from metrics.wall.frame import Frame, WallKey
from metrics.wall.hub import WallHub
from tests.helpers import eventually

NORTH = WallKey("acme", "north")
SOUTH = WallKey("acme", "south")


class Office:
    """A KPI store stand-in that counts its reads; its value changes when told to."""

    def __init__(self) -> None:
        self.value = 0
        self.reads: dict[WallKey, int] = {}
        self.down = False

    async def frame(self, key: WallKey) -> Frame:
        self.reads[key] = self.reads.get(key, 0) + 1
        if self.down:
            raise redis.ConnectionError("connection refused")
        body: dict[str, object] = {"key": key.name, "value": self.value}
        return Frame(body, msgspec.json.encode(body))


async def polled(office: Office, keys: list[WallKey], times: int) -> None:
    """Wait (bounded) until each key has been read ``times`` more times: that many poll
    periods have passed, a positive signal instead of a pause."""
    targets = {key: office.reads.get(key, 0) + times for key in keys}

    async def done() -> bool:
        return all(office.reads.get(key, 0) >= target for key, target in targets.items())

    await eventually(done, 10, f"{times} more reads of {keys}")


def values(frames: list[Frame]) -> list[object]:
    return [frame.payload.get("value", frame.payload.get("error")) for frame in frames]


async def test_watchers_of_one_key_share_one_poller_which_stops_with_the_last():
    office = Office()
    hub = WallHub(office.frame, poll_s=0.01)
    async with hub.watch([NORTH]) as first, hub.watch([NORTH, SOUTH]) as second:
        assert hub.pollers == 2
        assert values(await first.next(1)) == [0]
        await polled(office, [NORTH, SOUTH], 5)
        assert values(await second.next(1)) == [0, 0]  # one per key, each sent once
        assert await first.next(0.05) == []  # nothing changed: nothing sent
    assert hub.pollers == 0
    reads = dict(office.reads)
    # A witness poller on the same loop and period reads five times: a poller of the hub
    # left running would have read in that time too.
    witness = Office()
    async with WallHub(witness.frame, poll_s=0.01).watch([NORTH]):
        await polled(witness, [NORTH], 5)
    assert office.reads == reads


async def test_a_slow_screen_gets_only_the_newest_frame():
    office = Office()
    hub = WallHub(office.frame, poll_s=0.01)
    async with hub.watch([NORTH]) as watcher:
        assert values(await watcher.next(1)) == [0]
        for value in range(1, 6):
            office.value = value
            await asyncio.sleep(0.03)
        assert values(await watcher.next(1)) == [5]


async def test_a_late_watcher_gets_the_current_frame_at_once():
    office = Office()
    hub = WallHub(office.frame, poll_s=0.01)
    async with hub.watch([NORTH]) as first:
        await first.next(1)
        async with hub.watch([NORTH]) as late:
            assert values(await late.next(0.001)) == [0]


async def test_a_store_outage_becomes_an_error_frame_and_recovers():
    office = Office()
    hub = WallHub(office.frame, poll_s=0.01)
    async with hub.watch([NORTH]) as watcher:
        await watcher.next(1)
        office.down = True
        assert values(await watcher.next(1)) == ["kpi_store_unavailable"]
        office.down = False
        office.value = 7
        assert values(await watcher.next(1)) == [7]


async def test_closing_the_hub_ends_every_watcher():
    office = Office()
    hub = WallHub(office.frame, poll_s=0.01)
    async with hub.watch([NORTH]) as watcher:
        await watcher.next(1)
        waiting = asyncio.create_task(watcher.next(30))
        await asyncio.sleep(0.02)
        await hub.close()
        assert await asyncio.wait_for(waiting, 1) == []
        assert watcher.closed
    async with hub.watch([NORTH]) as after:
        assert after.closed
