"""The Bitrix24 and HubSpot REST clients against local servers that answer like the CRMs:
records, errors, rate-limit answers, slow answers, pacing and dictionary caching."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from handlers.enrichment.crm_rest.bitrix24 import Bitrix24Client
from handlers.enrichment.crm_rest.http import (
    PermanentRestError,
    RateLimiter,
    RetryPolicy,
    TransientRestError,
    TtlCache,
    with_retries,
)
from handlers.enrichment.crm_rest.hubspot import HubSpotClient
from tests.crm.support import (
    RATE_LIMITED_B24,
    RATE_LIMITED_HUBSPOT,
    Answer,
    FakeBitrix24,
    FakeHubSpot,
    payload_json,
)

FAST_RETRY = RetryPolicy(max_attempts=4, first_backoff_s=0.02, max_backoff_s=0.3)
PORTAL = "d897063e1ce7c5eb9f04b9751eef5915"
TOKEN = "pat-eu1-test-token"  # noqa: S105 - test data


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingLimiter(RateLimiter):
    """Notes when each call was let through: pacing is judged where it happens, not by when
    a request reached the fake server (arrival jitters by tens of ms on a busy machine)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        super().__init__(rate_per_s, burst)
        self.granted: list[tuple[str, float, float]] = []  # (portal, asked at, let through at)

    async def acquire(self, key: str) -> None:
        asked = time.monotonic()
        await super().acquire(key)
        self.granted.append((key, asked, time.monotonic()))


@dataclass
class Outcomes:
    seen: list[str] = field(default_factory=list)

    def __call__(self, outcome: str) -> None:
        self.seen.append(outcome)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def bitrix() -> AsyncIterator[tuple[FakeBitrix24, str]]:
    fake = FakeBitrix24()
    fake.add("crm.deal.get", payload_json("bitrix24_rest_deal.json")["result"])
    fake.dictionaries["DEAL_STAGE_1"] = payload_json("bitrix24_rest_status_list_c1.json")["result"]
    url = await fake.serve()
    yield fake, url
    await fake.close()


@pytest.fixture
async def hubspot() -> AsyncIterator[tuple[FakeHubSpot, str]]:
    fake = FakeHubSpot(TOKEN)
    fake.deals["332507367156"] = payload_json("hubspot_rest_deal.json")
    fake.pipelines = payload_json("hubspot_rest_pipelines.json")
    base = await fake.serve()
    yield fake, base
    await fake.close()


def bitrix_client(
    session: aiohttp.ClientSession,
    *,
    rate: float = 50.0,
    burst: int = 5,
    timeout_s: float = 2.0,
    outcomes: Outcomes | None = None,
    clock: Clock | None = None,
    limiter: RateLimiter | None = None,
) -> Bitrix24Client:
    return Bitrix24Client(
        session,
        limiter=limiter or RateLimiter(rate, burst),
        retry=FAST_RETRY,
        timeout_s=timeout_s,
        dictionary_ttl_s=600,
        on_call=outcomes or Outcomes(),
        clock=clock or time.monotonic,
    )


def hubspot_client(
    session: aiohttp.ClientSession, *, timeout_s: float = 2.0, outcomes: Outcomes | None = None
) -> HubSpotClient:
    return HubSpotClient(
        session,
        limiter=RateLimiter(50.0, 5),
        retry=FAST_RETRY,
        timeout_s=timeout_s,
        dictionary_ttl_s=600,
        on_call=outcomes or Outcomes(),
    )


# --- Bitrix24 ---------------------------------------------------------------------------


async def test_bitrix24_record_is_fetched_with_the_documented_call(session, bitrix) -> None:
    fake, url = bitrix
    deal = await bitrix_client(session).record(url, PORTAL, "deal", "7405")
    assert deal["STAGE_ID"] == "C1:WON"
    [call] = fake.calls
    assert (call.method, call.params) == ("crm.deal.get", {"id": 7405})


async def test_bitrix24_not_found_and_bad_credentials_are_permanent(session, bitrix) -> None:
    fake, url = bitrix
    outcomes = Outcomes()
    client = bitrix_client(session, outcomes=outcomes)
    with pytest.raises(PermanentRestError) as missing:
        await client.record(url, PORTAL, "deal", "1")
    assert missing.value.reason == "record_not_found"
    with pytest.raises(PermanentRestError) as refused:
        await client.record(url.replace("x7k2p9q4w1e8r5t3", "wrongkey"), PORTAL, "deal", "7405")
    assert refused.value.reason == "rest_auth_failed"
    fake.then("crm.deal.get", Answer(400, {"error": "", "error_description": "Access denied."}))
    with pytest.raises(PermanentRestError) as denied:
        await client.record(url, PORTAL, "deal", "7405")
    assert denied.value.reason == "rest_rejected"
    assert outcomes.seen == ["failed", "failed", "failed"]
    assert len(fake.calls) == 2  # no retries for permanent errors (one call never arrived)


async def test_bitrix24_query_limit_exceeded_is_retried_with_a_pause(session, bitrix) -> None:
    fake, url = bitrix
    fake.then("crm.deal.get", RATE_LIMITED_B24, RATE_LIMITED_B24)
    outcomes = Outcomes()
    deal = await bitrix_client(session, rate=10.0, burst=3, outcomes=outcomes).record(
        url, PORTAL, "deal", "7405"
    )
    assert deal["ID"] == "7405"
    assert outcomes.seen == ["retried", "retried", "ok"]
    gaps = [b.at - a.at for a, b in zip(fake.calls, fake.calls[1:], strict=False)]
    # After a rate-limit answer the portal is left alone for at least one refill (0.1 s).
    assert all(gap >= 0.09 for gap in gaps)


async def test_bitrix24_server_errors_are_retried_then_given_up(session, bitrix) -> None:
    fake, url = bitrix
    fake.then("crm.deal.get", *[Answer(500, {"error": "INTERNAL_SERVER_ERROR"})] * 4)
    with pytest.raises(TransientRestError) as gave_up:
        await bitrix_client(session).record(url, PORTAL, "deal", "7405")
    assert gave_up.value.reason == "rest_unavailable"
    assert len(fake.calls) == FAST_RETRY.max_attempts


async def test_a_slow_bitrix24_answer_times_out_and_is_retried(session, bitrix) -> None:
    fake, url = bitrix
    fake.then("crm.deal.get", Answer(body={"result": {}}, delay_s=1.0))
    started = time.monotonic()
    deal = await bitrix_client(session, timeout_s=0.2).record(url, PORTAL, "deal", "7405")
    assert deal["ID"] == "7405"
    assert time.monotonic() - started < 1.0
    assert len(fake.calls) == 2


async def test_bitrix24_calls_are_paced_per_portal(session, bitrix) -> None:
    fake, url = bitrix
    limiter = RecordingLimiter(10.0, 1)
    client = bitrix_client(session, limiter=limiter)
    for _ in range(4):
        await client.record(url, PORTAL, "deal", "7405")
    await client.record(url, "another-portal", "deal", "7405")
    assert len(fake.calls) == 5
    mine = [at for portal, _, at in limiter.granted if portal == PORTAL]
    # A token bucket keeps the rate over any stretch: the k-th call about k tenths of a
    # second after the first (a late grant may be followed by a shorter gap). The slack is
    # the machine's, not the limiter's: on a busy 2-core host the process can be paused for
    # milliseconds between the bucket's clock read and our note of it. Unpaced, the fourth
    # call would follow the first within a few ms.
    since_first = [at - mine[0] for at in mine]
    assert all(t >= k * 0.1 - 0.05 for k, t in enumerate(since_first)), since_first
    # Another portal has its own budget: let through at once, not an interval later.
    [(_, asked, let_through)] = [g for g in limiter.granted if g[0] == "another-portal"]
    assert let_through - asked < 0.09


async def test_bitrix24_stage_dictionaries_are_cached_and_paged(session, bitrix) -> None:
    fake, url = bitrix
    clock = Clock()
    client = bitrix_client(session, clock=clock)
    rows = payload_json("bitrix24_rest_status_list_c1.json")["result"]
    fake.then(
        "crm.status.list",
        Answer(body={"result": rows[:3], "next": 3, "total": 5}),
        Answer(body={"result": rows[3:], "total": 5}),
    )
    kinds = await client.stage_kinds(url, PORTAL, "1")
    assert kinds["C1:WON"] == "won"
    assert kinds["C1:3"] == "lost"
    assert [c.params.get("start") for c in fake.calls_to("crm.status.list")] == [None, 3]
    assert fake.calls[0].params["filter"] == {"ENTITY_ID": "DEAL_STAGE_1"}
    await client.stage_kinds(url, PORTAL, "1", must_know="C1:WON")
    await client.stage_kinds(url, PORTAL, "1", must_know="C1:NEWER")  # fresh copy: no refetch
    assert len(fake.calls_to("crm.status.list")) == 2
    clock.now += 61
    await client.stage_kinds(url, PORTAL, "1", must_know="C1:NEWER")  # older than a minute
    assert len(fake.calls_to("crm.status.list")) == 3


# --- HubSpot ----------------------------------------------------------------------------


async def test_hubspot_deal_and_pipelines(session, hubspot) -> None:
    fake, base = hubspot
    client = hubspot_client(session)
    deal = await client.deal(base, TOKEN, "48975575", "332507367156")
    assert deal["properties"]["dealstage"] == "closedwon"
    assert "dealstage" in fake.calls[0].params["properties"].split(",")
    kinds = await client.pipelines(base, TOKEN, "48975575")
    assert kinds["default"]["closedwon"] == "won"
    await client.pipelines(base, TOKEN, "48975575", must_know="closedlost")
    assert len(fake.calls_to("pipelines")) == 1


async def test_hubspot_429_waits_for_retry_after(session, hubspot) -> None:
    fake, base = hubspot
    limited = Answer(
        RATE_LIMITED_HUBSPOT.status, RATE_LIMITED_HUBSPOT.body, headers={"Retry-After": "0.25"}
    )
    fake.then("deal", limited)
    outcomes = Outcomes()
    deal = await hubspot_client(session, outcomes=outcomes).deal(
        base, TOKEN, "48975575", "332507367156"
    )
    assert deal["id"] == "332507367156"
    assert outcomes.seen == ["retried", "ok"]
    assert fake.calls[1].at - fake.calls[0].at >= 0.24


async def test_hubspot_errors(session, hubspot) -> None:
    fake, base = hubspot
    client = hubspot_client(session, timeout_s=0.2)
    with pytest.raises(PermanentRestError) as missing:
        await client.deal(base, TOKEN, "48975575", "1")
    assert missing.value.reason == "record_not_found"
    with pytest.raises(PermanentRestError) as refused:
        await client.deal(base, "expired", "48975575", "332507367156")
    assert refused.value.reason == "rest_auth_failed"
    fake.then("deal", Answer(502, {"status": "error"}), Answer(body=None, delay_s=1.0))
    deal = await client.deal(base, TOKEN, "48975575", "332507367156")
    assert deal["id"] == "332507367156"
    fake.then("deal", Answer(400, {"status": "error", "category": "VALIDATION_ERROR"}))
    with pytest.raises(PermanentRestError) as rejected:
        await client.deal(base, TOKEN, "48975575", "332507367156")
    assert rejected.value.reason == "rest_rejected"


# --- the shared pieces ------------------------------------------------------------------


async def test_the_rate_limiter_allows_a_burst_then_paces() -> None:
    limiter = RateLimiter(20.0, 3)
    started = time.monotonic()
    for _ in range(3):
        await limiter.acquire("p")
    assert time.monotonic() - started < 0.04
    for _ in range(2):
        await limiter.acquire("p")
    assert time.monotonic() - started >= 0.09


async def test_retries_back_off_and_honour_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, first_backoff_s=0.5, max_backoff_s=4.0)
    assert [policy.delay(n, None) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 60.0) == 4.0
    attempts = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientRestError("busy", retry_after_s=0.01)
        return "done"

    assert await with_retries("flaky", flaky, FAST_RETRY) == "done"
    assert len(attempts) == 3


def test_the_ttl_cache_expires() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.put("k", 1)
    clock.now += 5
    assert (cache.get("k"), cache.age("k")) == (1, 5)
    clock.now += 6
    assert cache.get("k") is None
    assert cache.age("missing") is None
