"""One total budget per provider call (adapters/provider_http.py `_call`): the caller's wait ends at the budget, the
caller's deadline shrinks it, too little of it sends nothing (`no_time`), and at most MAX_ANSWER_BYTES are parsed.

Time is the injected clock: a slow provider moves it (no sleeping). Only the test of the caller's own wait, which
is real time by design (`future.result(timeout=budget)`), waits for real: 0.3 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from oauth_keeper.adapters import provider_http
from oauth_keeper.adapters.provider_http import MAX_ANSWER_BYTES, HttpProviderClient
from oauth_keeper.domain.deadlines import MIN_PROVIDER_CALL, PROVIDER_CALL_LIMIT
from oauth_keeper.domain.errors import FailureKind, ProviderError
from oauth_keeper.domain.tokens import ClientCredentials

from local.memory import ManualClock
from tests.unit.test_provider_answers import GOOD, SENT, TIKTOK

pytestmark = pytest.mark.unit
CREDS = ClientCredentials("ck", "cs")
LIMIT = 256 * 1024  # MAX_ANSWER_BYTES as documented (docs/architecture.md, "Provider answers")


class Provider:
    """An httpx transport that records what reached it and answers GOOD's tokens; `answer` may be replaced."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(200, json=GOOD)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def client(self) -> HttpProviderClient:
        return HttpProviderClient(httpx.Client(transport=httpx.MockTransport(self)), self.clock.now)

    def timeouts(self) -> list[dict[str, float]]:
        """The httpx timeouts each request was sent with (what the adapter let httpx bound by itself)."""
        return [r.extensions["timeout"] for r in self.requests]


class Pieces(httpx.SyncByteStream):
    """A body in pieces; `before_each` runs before each piece (moving the clock, or stalling)."""

    def __init__(self, pieces: list[bytes], before_each: Callable[[int], None] = lambda n: None) -> None:
        self._pieces, self._before_each = pieces, before_each

    def __iter__(self) -> Iterator[bytes]:
        for n, piece in enumerate(self._pieces):
            self._before_each(n)
            yield piece


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SENT)


@pytest.fixture
def provider(clock) -> Provider:
    return Provider(clock)


def slow_answer(clock: ManualClock, seconds: float) -> Callable[[httpx.Request], httpx.Response]:
    """TikTok's good answer, dripping in over `seconds` of simulated time (four pieces)."""
    body = json.dumps(GOOD).encode()
    size = -(-len(body) // 4)
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return lambda request: httpx.Response(200, stream=Pieces(pieces, lambda n: clock.advance(seconds / 4)))


# -- a: the caller's wait ends at the budget, whatever the request's thread is stuck in -----------------------------
def test_a_provider_stalled_mid_answer_frees_the_caller_at_the_budget_and_may_have_processed_it(
        provider, clock, monkeypatch):
    """The request's thread checks the clock only between pieces; a read that stalls holds it. The caller's wait
    (real time, by design) must end at the budget anyway. Here the clock never moves, so nothing but that wait can
    free the caller; the floor is lowered only so the budget, and this test's real wait, is 0.3 s."""
    monkeypatch.setattr(provider_http, "MIN_PROVIDER_CALL", 0.05)
    budget = 0.3
    stalled = threading.Event()
    watchdog = threading.Timer(2.0, stalled.set)  # so a caller that waits for the thread fails instead of hanging
    provider.answer = lambda request: httpx.Response(200, stream=Pieces(
        [b'{"access_token": "act.1", ', json.dumps(GOOD).encode()[1:]],
        lambda n: stalled.wait() if n == 1 else None))
    watchdog.start()
    try:
        started = time.monotonic()
        with pytest.raises(ProviderError) as failed:
            provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=clock.now() + budget)
        waited = time.monotonic() - started
    finally:
        stalled.set()
        watchdog.cancel()
    assert len(provider.requests) == 1  # it was sent: this is a timeout, not no_time
    error = failed.value
    assert (error.code, error.kind, error.maybe_processed) == ("timeout", FailureKind.TRANSIENT, True)
    assert budget * 0.9 <= waited < budget + 0.2, waited  # freed at the budget, not at some later bound


# -- b: the caller's deadline shrinks the budget ----------------------------------------------------------------
def test_the_callers_deadline_shrinks_the_budget_and_a_slower_answer_is_cut_there(provider, clock):
    provider.answer = slow_answer(clock, 4.0)  # well inside PROVIDER_CALL_LIMIT, later than the deadline
    with pytest.raises(ProviderError) as failed:
        provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=clock.now() + 2.5)
    assert (failed.value.code, failed.value.maybe_processed) == ("timeout", True)
    (timeout,) = provider.timeouts()
    assert timeout == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}  # httpx's phases get the same


def test_an_answer_inside_the_callers_deadline_is_taken(provider, clock):
    provider.answer = slow_answer(clock, 2.0)
    tokens = provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=clock.now() + 2.5)
    assert tokens.access_token == "act.1"


@pytest.mark.parametrize("deadline_in", [None, 60.0], ids=["no_deadline", "far_deadline"])
def test_without_a_near_deadline_the_budget_is_the_provider_call_limit(provider, clock, deadline_in):
    deadline = None if deadline_in is None else clock.now() + deadline_in
    provider.answer = slow_answer(clock, PROVIDER_CALL_LIMIT - 0.5)
    assert provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=deadline).access_token == "act.1"
    provider.answer = slow_answer(clock, PROVIDER_CALL_LIMIT + 0.5)
    with pytest.raises(ProviderError) as failed:
        provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=deadline)
    assert failed.value.code == "timeout"
    assert [t["read"] for t in provider.timeouts()] == [PROVIDER_CALL_LIMIT, PROVIDER_CALL_LIMIT]
    assert [t["connect"] for t in provider.timeouts()] == [provider_http.CONNECT_LIMIT] * 2


# -- c: too little budget: not sent -----------------------------------------------------------------------------
@pytest.mark.parametrize("left", [MIN_PROVIDER_CALL - 0.01, 0.0, -5.0])
def test_with_less_than_the_least_worth_starting_nothing_is_sent(provider, clock, left):
    client = provider.client()
    calls = [
        lambda deadline: client.refresh(TIKTOK, CREDS, "rft.1", deadline=deadline),
        lambda deadline: client.exchange_code(TIKTOK, CREDS, code="c", redirect_uri="https://x.test/cb",
                                              code_verifier=None, deadline=deadline),
        lambda deadline: client.revoke(TIKTOK, CREDS, "act.1", deadline=deadline),
        lambda deadline: client.fetch_user(TIKTOK, "act.1", deadline=deadline),
    ]
    for call in calls:
        with pytest.raises(ProviderError) as failed:
            call(clock.now() + left)
        error = failed.value
        assert (error.code, error.kind, error.maybe_processed) == ("no_time", FailureKind.TRANSIENT, False)
    assert provider.requests == []


def test_exactly_the_least_worth_starting_is_sent(provider, clock):
    assert provider.client().refresh(TIKTOK, CREDS, "rft.1", deadline=clock.now() + MIN_PROVIDER_CALL).access_token
    assert len(provider.requests) == 1


# -- e: at most MAX_ANSWER_BYTES of an answer are parsed ------------------------------------------------------------
def good_answer_of(size: int) -> bytes:
    """GOOD's tokens as JSON of exactly `size` bytes (padded in a field nobody reads)."""
    base = json.dumps({**GOOD, "padding": ""}).encode()
    body = json.dumps({**GOOD, "padding": "x" * (size - len(base))}).encode()
    assert len(body) == size
    return body


def test_an_answer_of_exactly_max_answer_bytes_is_parsed(provider):
    assert MAX_ANSWER_BYTES == LIMIT
    provider.answer = lambda request: httpx.Response(200, content=good_answer_of(LIMIT))
    assert provider.client().refresh(TIKTOK, CREDS, "rft.1").access_token == "act.1"


def test_an_answer_one_byte_larger_is_not_parsed_and_may_have_rotated(provider):
    provider.answer = lambda request: httpx.Response(200, content=good_answer_of(LIMIT + 1))
    with pytest.raises(ProviderError) as failed:
        provider.client().refresh(TIKTOK, CREDS, "rft.1")
    assert (failed.value.code, failed.value.maybe_processed) == ("invalid_answer", True)


@pytest.mark.parametrize(("trailer", "parsed"), [(b"", True), (b" ", False), (b" " * 1000, False)])
def test_a_whole_answer_in_the_first_pieces_is_not_parsed_once_the_body_grows_past_the_limit(
        provider, trailer, parsed):
    """The kept pieces alone would parse; what counts is the size of the whole body."""
    pieces = [good_answer_of(LIMIT), trailer]
    provider.answer = lambda request: httpx.Response(200, stream=Pieces(pieces))
    if parsed:
        assert provider.client().refresh(TIKTOK, CREDS, "rft.1").access_token == "act.1"
        return
    with pytest.raises(ProviderError) as failed:
        provider.client().refresh(TIKTOK, CREDS, "rft.1")
    assert failed.value.code == "invalid_answer"
