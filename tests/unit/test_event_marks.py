"""The codec of the permanent event marks (streams/event_marks.py)."""

from __future__ import annotations

import msgspec

from streams.event_marks import (
    REMAINDER_BYTES,
    by_field,
    fingerprint,
    is_marked,
    mark_of,
    msgpack_str,
    remainders,
)


def test_a_fingerprint_is_stable_across_processes_and_versions() -> None:
    # A stored mark must still match after a restart or an upgrade: pinned bytes.
    assert fingerprint("amocrm:call:77") == bytes.fromhex("3da275acddd70275")
    assert mark_of("amocrm:call:77") == ("3d", bytes.fromhex("a275acddd70275"))


def test_a_mark_is_a_field_of_two_hex_digits_and_seven_bytes() -> None:
    fields = set()
    for i in range(5_000):
        name, remainder = mark_of(f"ev-{i}")
        assert len(name) == 2
        assert int(name, 16) < 256
        assert len(remainder) == REMAINDER_BYTES
        fields.add(name)
    assert len(fields) == 256  # spread over every field


def test_by_field_keeps_each_remainder_beside_its_id() -> None:
    ids = [f"ev-{i}" for i in range(1_000)]
    shards = by_field(ids)
    assert sorted(i for _, shard_ids in shards.values() for i in shard_ids) == sorted(ids)
    for name, (packed, shard_ids) in shards.items():
        assert [mark_of(i) for i in shard_ids] == [(name, r) for r in packed]


def test_a_remainder_counts_only_at_a_marks_offset() -> None:
    remainder = bytes.fromhex("01020304050607")
    other = bytes.fromhex("aabbccddeeff00")
    held = other + remainder
    assert is_marked(held, remainder)
    assert remainders(held) == [other, remainder]
    # the same bytes straddling two marks are no mark
    straddling = b"\x09" + remainder + b"\x09" * 6
    assert remainder in straddling
    assert not is_marked(straddling, remainder)
    # found after a straddling false start
    assert is_marked(straddling + remainder, remainder)


def test_bytes_travel_as_a_msgpack_str_of_any_length() -> None:
    """Redis's cmsgpack reads no bin type: the marks go as a str header and raw bytes."""
    for size, header in (
        (0, b"\xa0"),
        (31, b"\xbf"),
        (32, b"\xd9\x20"),
        (255, b"\xd9\xff"),
        (256, b"\xda\x01\x00"),
        (65_535, b"\xda\xff\xff"),
        (65_536, b"\xdb\x00\x01\x00\x00"),
    ):
        data = bytes(i % 251 for i in range(size))
        assert msgspec.msgpack.encode([msgpack_str(data)]) == b"\x91" + header + data
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(msgpack_str(b"abc"))) == "abc"
