"""A 429's Retry-After, end to end: the HTTP adapter reads it (`_retry_after`: seconds or an HTTP-date against the
injected clock, anything else ignored), and the refresher opens the provider's breaker that long, at most
MAX_RETRY_AFTER (usecases/breaker.py). Runs the real HttpProviderClient over an httpx MockTransport, under the
in-memory refresher of tests/unit/test_refresh_decisions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

import httpx
import pytest
from oauth_keeper.adapters.provider_http import HttpProviderClient
from oauth_keeper.domain.errors import ProviderError
from oauth_keeper.domain.tokens import ClientCredentials
from oauth_keeper.usecases.breaker import CLOSED, MAX_RETRY_AFTER, OPEN, Cause, CircuitBreakers
from oauth_keeper.usecases.refresh import PAUSED, REFRESHED, RETRYING

from tests.unit.test_provider_answers import GOOD, TIKTOK
from tests.unit.test_refresh_decisions import T0, World

pytestmark = pytest.mark.unit

Answer = Callable[[httpx.Request], httpx.Response]


def rate_limited(retry_after: str | bytes | None, status: int = 429) -> Answer:
    """TikTok refusing with `status` (rate_limit_exceeded) and, unless None, this Retry-After header."""
    headers = [] if retry_after is None else [
        (b"Retry-After", retry_after if isinstance(retry_after, bytes) else retry_after.encode())]
    return lambda request: httpx.Response(status, headers=headers, json={"error": "rate_limit_exceeded"})


def tokens_for(account: str) -> Answer:
    return lambda request: httpx.Response(200, json={**GOOD, "open_id": account})


class HttpWorld(World):
    """The refresher's in-memory world, with the real HTTP provider client in front of scripted HTTP answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer] = []
        self.requests: list[httpx.Request] = []
        self.provider = HttpProviderClient(httpx.Client(transport=httpx.MockTransport(self._answer)), self.clock.now)
        self.refresher = self.worker()

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.answers, "the provider was called but nothing was scripted"
        return self.answers.pop(0)(request)

    def breaker(self):
        return CircuitBreakers(self.items, self.clock.now).read("tiktok")  # as another container reads it


@pytest.fixture
def world() -> HttpWorld:
    return HttpWorld()


# -- end to end: the refresher opens the provider's breaker for as long as TikTok asked ---------------------------
def test_a_429_with_retry_after_120_pauses_the_whole_provider_for_120_seconds(world):
    a, b = world.connect("acct-a"), world.connect("acct-b")
    tripped_at = world.now
    world.answers.append(rate_limited("120"))

    outcome = world.refresher.refresh(a, force=True)

    assert (outcome.result, outcome.reason) == (RETRYING, "rate_limited")
    breaker = world.breaker()
    assert (breaker.state, breaker.cause, breaker.open_until) == (OPEN, Cause.RATE_LIMITED, tripped_at + 120)

    # Another container, a second before the end: paused, TikTok not asked.
    world.clock.advance(119)
    paused = world.worker().refresh(b, force=True)
    assert (paused.result, paused.reason) == (PAUSED, "rate_limited")
    assert len(world.requests) == 1

    # At 120 s one caller probes, and its success closes the breaker.
    world.clock.advance(1)
    world.answers.append(tokens_for("acct-b"))
    assert world.worker().refresh(b, force=True).result == REFRESHED
    assert len(world.requests) == 2 and world.breaker().state == CLOSED


def test_a_huge_retry_after_is_honoured_for_an_hour_at_most(world):
    assert MAX_RETRY_AFTER == 3600
    cid = world.connect()
    world.answers.append(rate_limited("999999"))
    world.refresher.refresh(cid, force=True)
    assert world.breaker().open_until == world.now + 3600


@pytest.mark.parametrize("value", ["1234567890", "9" * 5000])
def test_a_retry_after_of_ten_digits_or_more_is_capped_too(world, value):
    """Found in review: ten digits or more were ignored, so `999999999` paused the provider for an hour and
    `1234567890` not at all. A longer wait is still a wait (never converted: 5,000 digits would be slow)."""
    cid = world.connect()
    world.answers.append(rate_limited(value))
    assert world.refresher.refresh(cid, force=True).result == RETRYING
    assert world.breaker().open_until == world.now + MAX_RETRY_AFTER


def test_an_unreadable_retry_after_does_not_open_the_breaker(world):
    cid = world.connect()
    world.answers.append(rate_limited("12a"))
    assert world.refresher.refresh(cid, force=True).result == RETRYING
    assert world.breaker().state == CLOSED  # one failure among this container's last calls is no outage


# -- the adapter: what counts as a Retry-After ------------------------------------------------------------------
def retry_after_of(answer: Answer, now: float = T0) -> int | None:
    """What HttpProviderClient.refresh reports for this answer, with the injected clock at `now`."""
    client = HttpProviderClient(httpx.Client(transport=httpx.MockTransport(answer)), lambda: now)
    with pytest.raises(ProviderError) as failed:
        client.refresh(TIKTOK, ClientCredentials("ck", "cs"), "rft.1")
    return failed.value.retry_after


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120), (" 120 ", 120), ("1", 1), ("999999", 999999), ("999999999", 999_999_999),  # nine digits: read
    ("1234567890", 1_000_000_000), ("99999999999999999999", 1_000_000_000),  # longer: longer than any cap
])
def test_seconds_are_read(value, seconds):
    assert retry_after_of(rate_limited(value)) == seconds


@pytest.mark.parametrize("value", [
    None, "", "   ", "0",
    # Arabic-Indic and full-width digits: str.isdigit() says yes, and int() would read them
    pytest.param("١٢٠".encode(), id="arabic_indic_digits"), pytest.param("１２０".encode(), id="fullwidth_digits"),
    "12a", "-5", "+120", "1e3", "120.5", "12 13",
    "soon", "Thu, 99 Jan 2027 00:00:00 GMT",
])
def test_anything_else_is_no_retry_after(value):
    assert retry_after_of(rate_limited(value)) is None


def test_an_http_date_counts_from_the_injected_clock():
    assert retry_after_of(rate_limited(formatdate(T0 + 120, usegmt=True))) == 120
    assert retry_after_of(rate_limited(formatdate(T0 + 120, usegmt=True)), now=T0 + 100) == 20


@pytest.mark.parametrize("ago", [0, 1, 3600])
def test_an_http_date_now_or_in_the_past_is_no_retry_after(ago):
    assert retry_after_of(rate_limited(formatdate(T0 - ago, usegmt=True))) is None


def test_only_a_429_carries_a_retry_after():
    """What the code does: Retry-After is read on 429 only (the docs say "A 429's Retry-After"), not on 503."""
    assert retry_after_of(rate_limited("120", status=503)) is None
