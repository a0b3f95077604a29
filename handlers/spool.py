"""The ingest's disk spool: records the broker did not take, kept until it does.

When Kafka does not acknowledge in time, the publisher appends the records here, fsyncs,
and the sender gets its 2xx as if Kafka had them: Bitrix24 never retries a failed webhook
and amoCRM switches off one that keeps failing (docs, ARCHITECTURE "Nothing lost"). A
drainer (handlers/publisher.py) sends them on, oldest first, once Kafka is back.

One append-only file of frames, and a cursor file holding how far it has been drained:

    length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes) | payload

where the payload is MessagePack ``[topic, key, value, headers]``. When everything is
drained the file is cut back to empty. A frame torn by a crash mid-append was never
acknowledged to its sender (the answer waits for the fsync), so it is cut off at start.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from salespulse.core.errors import SalesPulseError

logger = logging.getLogger(__name__)

# (topic, key, value, headers): what KafkaPublisher sends
SpoolRecord = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]

_HEADER = struct.Struct(">II")
_READ_CHUNK = 1 << 20
# Ready while this much is free: a full-size body (1 MiB by default) and its framing.
ROOM_BYTES = 2 << 20
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None])


class SpoolFullError(SalesPulseError):
    """The spool holds its maximum; the sender must retry (503)."""


class SpoolBusyError(SalesPulseError):
    """Another process holds the spool directory."""


class DiskSpool:
    """One process's spool in ``directory`` (locked: two drainers would lose records)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = (directory / "lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolBusyError(
                f"the spool {directory} is in use by another SalesPulse ingest: give each "
                "ingest process its own SALESPULSE_DATA_DIR"
            ) from None
        self._cursor_path = directory / "cursor"
        self._file = open(directory / "records", "a+b", buffering=0)  # noqa: SIM115 - kept open
        self._size = os.fstat(self._file.fileno()).st_size
        self._cursor = self._read_cursor()
        self._recover()

    @property
    def pending(self) -> bool:
        """Records wait to be sent: new ones must queue behind them (order per deal)."""
        return self._cursor < self._size

    @property
    def has_room(self) -> bool:
        """Room for at least one more request of the largest size the ingest takes."""
        return self._size + ROOM_BYTES <= self.max_bytes

    @property
    def pending_bytes(self) -> int:
        return self._size - self._cursor

    async def append(self, records: Sequence[SpoolRecord]) -> None:
        """Append and fsync; returns once the records survive a crash."""
        data = b"".join(_frame(record) for record in records)
        if self._size + len(data) > self.max_bytes:
            raise SpoolFullError(
                f"the spool {self.directory} holds {self._size:,} bytes; "
                f"{len(data):,} more would pass SALESPULSE_SPOOL_MAX_BYTES"
            )
        written = 0
        while written < len(data):
            written += self._file.write(data[written:]) or 0
        self._size += len(data)
        # The one slow step (milliseconds): off the event loop.
        await asyncio.to_thread(os.fsync, self._file.fileno())

    def read(self, max_records: int) -> tuple[list[SpoolRecord], int]:
        """The oldest records not yet drained (up to ~1 MiB), and the offset after them."""
        records: list[SpoolRecord] = []
        offset = self._cursor
        while offset < self._size and len(records) < max_records:
            frame = self._frame_at(offset)
            if frame is None:
                # Appends write whole frames between two awaits: this is a damaged disk.
                logger.error(
                    "spool %s: %d bytes unreadable at offset %d, cut off",
                    self.directory,
                    self._size - offset,
                    offset,
                )
                os.ftruncate(self._file.fileno(), offset)
                self._size = offset
                break
            record, offset = frame
            records.append(record)
            if offset - self._cursor >= _READ_CHUNK:
                break
        return records, offset

    def commit(self, offset: int) -> None:
        """Everything before ``offset`` is in Kafka. Resending after a crash between the
        send and this is harmless: every consumer drops event ids it has seen."""
        self._cursor = offset
        if self._cursor >= self._size:
            os.ftruncate(self._file.fileno(), 0)
            self._size = self._cursor = 0
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(str(self._cursor))
        tmp.replace(self._cursor_path)

    def close(self) -> None:
        """Release the directory (again: a no-op)."""
        if self._lock.closed:
            return
        self._file.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def _read_cursor(self) -> int:
        try:
            cursor = int(self._cursor_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        return cursor if 0 <= cursor <= self._size else 0

    def _recover(self) -> None:
        """Check every frame left from an earlier run; cut off a torn tail."""
        offset, count = self._cursor, 0
        while offset < self._size:
            frame = self._frame_at(offset)
            if frame is None:
                logger.warning(
                    "spool %s: cut off %d bytes of a record torn by a crash "
                    "(it was never acknowledged to its sender)",
                    self.directory,
                    self._size - offset,
                )
                os.ftruncate(self._file.fileno(), offset)
                self._size = offset
                break
            offset = frame[1]
            count += 1
        if count:
            logger.warning(
                "spool %s: %d record(s) from an earlier run wait for the broker",
                self.directory,
                count,
            )

    def _frame_at(self, offset: int) -> tuple[SpoolRecord, int] | None:
        fd = self._file.fileno()
        header = os.pread(fd, _HEADER.size, offset)
        if len(header) < _HEADER.size:
            return None
        length, crc = _HEADER.unpack(header)
        payload = os.pread(fd, length, offset + _HEADER.size)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return None
        try:
            record = _decoder.decode(payload)
        except msgspec.DecodeError:
            return None
        return record, offset + _HEADER.size + length


def _frame(record: SpoolRecord) -> bytes:
    payload = _encoder.encode(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
