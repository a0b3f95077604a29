"""The disk spool on its own: order, restarts, torn tails, limits, one owner."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from handlers.spool import DiskSpool, SpoolBusyError, SpoolFullError, SpoolRecord


def records(first: int, count: int) -> list[SpoolRecord]:
    return [
        ("crm.events", f"acme:deal-{n % 3}".encode(), f'{{"n": {n}}}'.encode(), None)
        for n in range(first, first + count)
    ]


async def test_records_come_back_in_order_and_the_file_empties_when_drained(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert not spool.pending
    await spool.append(records(0, 3))
    await spool.append([("crm.events.dlq", None, b"\x00raw", [("reason", b"too_late")])])
    assert spool.pending
    got, offset = spool.read(max_records=2)
    assert got == records(0, 2)
    spool.commit(offset)
    got, offset = spool.read(max_records=10)
    assert got == [*records(2, 1), ("crm.events.dlq", None, b"\x00raw", [("reason", b"too_late")])]
    spool.commit(offset)
    assert not spool.pending
    assert (tmp_path / "records").stat().st_size == 0
    spool.close()


async def test_a_restart_resumes_after_what_was_drained(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    await spool.append(records(0, 5))
    _, offset = spool.read(max_records=2)
    spool.commit(offset)
    spool.close()
    again = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert again.read(max_records=10)[0] == records(2, 3)
    again.close()


async def test_a_record_torn_by_a_crash_is_cut_off_and_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    await spool.append(records(0, 3))
    spool.close()
    path = tmp_path / "records"
    path.write_bytes(path.read_bytes()[:-4])  # the last append never finished
    with caplog.at_level(logging.WARNING):
        again = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert again.read(max_records=10)[0] == records(0, 2)
    assert "torn by a crash" in caplog.text
    await again.append(records(7, 1))  # appends go after the good records
    assert again.read(max_records=10)[0] == [*records(0, 2), *records(7, 1)]
    again.close()


async def test_a_full_spool_refuses_whole_appends(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=200)
    await spool.append(records(0, 1))
    with pytest.raises(SpoolFullError, match="SALESPULSE_SPOOL_MAX_BYTES"):
        await spool.append(records(1, 10))
    assert spool.read(max_records=20)[0] == records(0, 1), "nothing of the refused append"
    spool.close()


def test_one_process_owns_a_spool_directory(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolBusyError, match="its own SALESPULSE_DATA_DIR"):
        DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.close()
    DiskSpool(tmp_path, max_bytes=1 << 20).close()  # free again once closed
