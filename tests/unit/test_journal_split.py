"""How a batch's hash writes are cut between its first script call and the journal
parts after it (streams/journal.py): nothing lost or doubled, no call past its share."""

from __future__ import annotations

import time
from collections import Counter

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from streams.journal import HASH_COST, HashIncrements, packed_parts, split_hashes

amounts = st.integers(-(2**40), 2**40) | st.integers(2**53, 2**60).map(str)
hashes = st.lists(st.tuples(st.integers(0, 30), st.lists(amounts, max_size=40)), max_size=12).map(
    lambda spec: [
        (f"kpi:{i}", ttl, [f"f{j}" for j in range(len(values))], values)
        for i, (ttl, values) in enumerate(spec)
    ]
)


def writes(parts: list[list[HashIncrements]]) -> Counter[tuple[str, int, str, int | str]]:
    return Counter(
        (key, ttl, name, amount)
        for part in parts
        for key, ttl, names, values in part
        for name, amount in zip(names, values, strict=True)
    )


@given(hashes, st.integers(HASH_COST + 1, 50))
def test_every_write_lands_once_and_no_call_takes_more_than_its_share(
    batch: list[HashIncrements], limit: int
) -> None:
    first, later = split_hashes(batch, limit)
    assert writes([first, *later]) == writes([batch])
    as_text = [h for h in batch if any(isinstance(a, str) for a in h[3])]
    assert [h for h in first if h in as_text] == as_text  # checked by the first call whole
    assert sum(len(h[2]) + HASH_COST for h in first if h not in as_text) <= limit
    assert all(0 < sum(len(h[2]) + HASH_COST for h in part) <= limit for part in later)
    # a hash at most once a call (the script works out a key's totals once)
    assert all(len({h[0] for h in part}) == len(part) for part in [first, *later])


def test_a_small_batch_is_one_call() -> None:
    batch: list[HashIncrements] = [("kpi:a", 0, ["x", "y"], [1, 2]), ("kpi:b", 60, ["z"], [3])]
    assert split_hashes(batch, 3 + 3 * HASH_COST) == (batch, [])


def test_parts_are_packed_as_the_script_reads_them() -> None:
    later: list[list[HashIncrements]] = [[("kpi:a", 60, ["x"], [5])], [("kpi:b", 0, ["y"], [7])]]
    ids, pending = packed_parts("sp:journal", later)
    assert pending.journal == "sp:journal"
    assert [part.keys for part in pending.parts] == [["kpi:a"], ["kpi:b"]]
    # the first call names the parts it commits by id; their increments go staged apart
    assert ids == [part.part_id for part in pending.parts]
    assert len(set(ids)) == 2
    assert msgspec.msgpack.decode(pending.parts[0].packed) == {
        "keys": ["kpi:a"],
        "hashes": [[1, 60, ["x"], [5]]],
    }
    # ids start with the time they were made: recover tells an orphan's age by it
    made = int(ids[0].partition(".")[0])
    assert abs(made - time.time()) < 60
