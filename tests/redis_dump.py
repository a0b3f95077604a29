"""Everything a store holds under a key prefix, comparable across stores: what the
exactly-once tests compare (a batch in parts against one call, a cluster against one
Redis)."""

from __future__ import annotations

import re

import redis.asyncio as aioredis

_VERSION = re.compile(r"^\d+:")


def text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def dump(client: aioredis.Redis, prefix: str) -> dict[str, object]:
    """Every key under the prefix by its name after it, hash tags taken out (so a
    cluster's keys compare with a single Redis's), with its content; entity versions
    are left out (they count writes, and parts write more often than one call)."""
    content: dict[str, object] = {}
    async for raw in client.scan_iter(match=f"{prefix}*", count=1000):
        key = text(raw)
        kind = text(await client.type(key))
        value: object
        if kind == "hash":
            # A field one part raises and a later one lowers again stays at 0, where one
            # call adds nothing: the same figure for every reader (as across two batches).
            value = {f: v for f, v in (await client.hgetall(key)).items() if v != b"0"}
        elif kind == "set":
            value = await client.smembers(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        else:
            value = _VERSION.sub("", text(await client.get(key)))
        content[key.removeprefix(prefix).replace("{", "").replace("}", "")] = value
    return content
