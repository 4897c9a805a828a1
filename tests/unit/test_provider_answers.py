"""Every value from a provider is parsed, typed and bounded (RFC 6749 sections 5.1 and 5.2, TikTok's lifetimes).

The token endpoint's answer goes through `domain.protocol.token_answer`; the HTTP adapter decides, from how a
request failed, whether the provider may have processed it (and so rotated the refresh token).
"""

from __future__ import annotations

import math
from dataclasses import replace

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth_keeper.adapters.provider_http import HttpProviderClient
from oauth_keeper.domain.errors import FailureKind, ProviderError
from oauth_keeper.domain.protocol import MAX_TOKEN_LENGTH, token_answer
from oauth_keeper.domain.providers import profile_for
from oauth_keeper.domain.timestamps import iso8601
from oauth_keeper.domain.tokens import ClientCredentials, TokenSet

pytestmark = pytest.mark.unit
TIKTOK = profile_for("tiktok", ("tiktok",), {})
GENERIC = profile_for("acme", ("acme",), {"acme": {"profile": "generic", "token_url": "https://id.acme.test/token"}})
SENT = 1_800_000_000
DAY = 86_400
GOOD = {"access_token": "act.1", "expires_in": 7200, "open_id": "u1", "refresh_token": "rft.1",
        "refresh_expires_in": 15_552_000, "scope": "user.info.basic,video.list", "token_type": "Bearer"}


def answer(status: int = 200, **changes) -> TokenSet:
    body = {**GOOD, **changes}
    return token_answer(TIKTOK, {k: v for k, v in body.items() if v is not ...}, status, SENT)


def refused(body, status: int) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        token_answer(TIKTOK, body, status, SENT)
    return raised.value


# -- lifetimes -------------------------------------------------------------------------------------------------
def test_plausible_lifetimes_are_taken_from_the_answer():
    tokens = answer(expires_in=86_400, refresh_expires_in=31_536_000)  # the older pages' 24 h and 365 days
    assert (tokens.access_expires_at, tokens.refresh_expires_at) == (SENT + DAY, SENT + 365 * DAY)
    assert tokens.anomalies == ()


@pytest.mark.parametrize(("value", "anomaly"), [
    (10_000_000_000_000, "expires_in:out_of_bounds"), (7_200_000, "expires_in:out_of_bounds"),
    ("7200000", "expires_in:out_of_bounds"),
    (..., "expires_in:missing"), (None, "expires_in:missing"), ("", "expires_in:missing"),
    ("7200s", "expires_in:unparsable"), (True, "expires_in:unparsable"),
    ([7200], "expires_in:unparsable"), ({"s": 7200}, "expires_in:unparsable"), ("٧٢٠٠", "expires_in:unparsable"),
])
def test_an_implausible_access_lifetime_becomes_tiktoks_shortest_documented_one(value, anomaly):
    tokens = answer(expires_in=value)
    assert tokens.access_expires_at == SENT + 7200 and anomaly in tokens.anomalies


def test_a_numeric_string_lifetime_inside_the_bounds_is_trusted():
    assert answer(expires_in="3600").access_expires_at == SENT + 3600


@pytest.mark.parametrize("value", [10_000_000_000_000, ..., "soon", -1])
def test_an_implausible_refresh_lifetime_becomes_180_days(value):
    tokens = answer(refresh_expires_in=value)
    assert tokens.refresh_expires_at == SENT + 180 * DAY and tokens.anomalies


def test_no_refresh_token_means_no_refresh_expiry():
    tokens = answer(refresh_token=..., refresh_expires_in=...)
    assert tokens.refresh_token is None and tokens.refresh_expires_at is None


def test_a_generic_provider_has_bounds_too():
    tokens = token_answer(GENERIC, {"access_token": "a", "expires_in": 10**13}, 200, SENT)
    assert tokens.access_expires_at == SENT + GENERIC.access_lifetime.fallback


def test_iso8601_never_fails_on_a_stored_absurd_instant():
    assert iso8601(10**13) is None and iso8601(-1) is None and iso8601(1_800_000_000) == "2027-01-15T08:00:00Z"


# -- what an answer may carry ------------------------------------------------------------------------------------
def test_junk_in_optional_fields_is_dropped_not_stored():
    tokens = answer(token_type="Bearer<script>", scope="user.info.basic,<x>,video.list", open_id={"id": 1})
    assert tokens.token_type == "Bearer" and tokens.scopes == ("user.info.basic", "video.list")
    assert tokens.account_id is None  # never a made-up account: the callback refuses (account_unavailable)
    assert {"token_type:invalid", "scope:invalid_entries", "account_id:invalid"} <= set(tokens.anomalies) or \
        {"token_type:invalid", "scope:invalid_entries"} <= set(tokens.anomalies)


@pytest.mark.parametrize("changes", [
    {"access_token": 12345}, {"access_token": "x" * (MAX_TOKEN_LENGTH + 1)}, {"access_token": "a b"},
    {"refresh_token": ["rft"]}, {"refresh_token": "r" * (MAX_TOKEN_LENGTH + 1)}, {"refresh_token": "r\n"},
])
def test_a_success_answer_with_an_unusable_token_may_have_rotated(changes):
    error = refused({**GOOD, **changes}, 200)
    assert error.code == "invalid_answer" and error.kind == FailureKind.TRANSIENT and error.maybe_processed


@pytest.mark.parametrize("body", [{}, [], "<html>", None, {"access_token": ""}, {"data": {"access_token": "a"}}])
def test_a_2xx_without_an_access_token_or_an_error_may_have_rotated(body):
    error = refused(body, 200)
    assert error.code == "invalid_answer" and error.maybe_processed


@pytest.mark.parametrize(("status", "body", "code", "kind", "maybe"), [
    (400, {"error": "invalid_request", "log_id": "L1"}, "invalid_request", FailureKind.REJECTED, False),
    (400, {"error": "brand_new_code"}, "brand_new_code", FailureKind.REJECTED, False),
    (400, {"error": "invalid_grant"}, "invalid_grant", FailureKind.TERMINAL, False),
    (200, {"error": "invalid_grant"}, "invalid_grant", FailureKind.TERMINAL, False),  # TikTok's statuses vary
    (401, {"error": "invalid_client"}, "invalid_client", FailureKind.OPERATOR, False),
    (429, {"error": "rate_limit_exceeded"}, "rate_limit_exceeded", FailureKind.TRANSIENT, False),
    (502, "<html>Bad Gateway</html>", "http_502", FailureKind.TRANSIENT, True),
    (302, "", "http_302", FailureKind.REJECTED, True),  # found by the hostile-provider property suite
    (503, {"error": "server_error"}, "server_error", FailureKind.TRANSIENT, True),
    (400, {"error": {"code": "x" * 500}}, "unrecognised_error", FailureKind.REJECTED, False),
    (404, {"error": ["nested"]}, "http_404", FailureKind.REJECTED, False),
])
def test_error_answers_are_classified_and_say_whether_the_provider_may_have_processed_them(
        status, body, code, kind, maybe):
    error = refused(body, status)
    assert (error.code, error.kind, error.maybe_processed) == (code, kind, maybe)


def test_a_log_id_that_is_not_a_short_string_is_dropped():
    assert refused({"error": "invalid_request", "log_id": {"x": 1}}, 400).log_id is None
    assert refused({"error": "invalid_request", "log_id": "L" * 500}, 400).log_id is None


# -- the property: whatever a provider says ------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=4), max_leaves=12)
FIELD_VALUES = st.one_of(JSON, st.integers(min_value=-(10**20), max_value=10**20), st.text(max_size=5000),
                         st.sampled_from(["7200", "7200000", "", "Bearer", "act.x", "rft.y"]))
ANSWERS = st.one_of(JSON, st.dictionaries(
    st.sampled_from(["access_token", "refresh_token", "expires_in", "refresh_expires_in", "scope", "open_id",
                     "token_type", "error", "log_id"]), FIELD_VALUES, max_size=9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=ANSWERS, status=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503, 504]),
       profile=st.sampled_from([TIKTOK, GENERIC, replace(TIKTOK, issues_refresh_tokens=False)]))
def test_any_provider_answer_becomes_bounded_tokens_or_a_classified_error(body, status, profile):
    try:
        tokens = token_answer(profile, body, status, SENT)
    except ProviderError as error:
        assert isinstance(error.kind, FailureKind) and len(error.code) <= 64
        assert error.log_id is None or len(error.log_id) <= 128
        if 200 <= status < 300 and error.code == "invalid_answer":
            assert error.maybe_processed  # an unusable success may hide a rotation
        return
    bounds = profile.access_lifetime
    assert 0 < len(tokens.access_token) <= MAX_TOKEN_LENGTH
    # Never past the plausible maximum; below the minimum only as reported (never made longer), not before sent.
    assert SENT <= tokens.access_expires_at <= SENT + bounds.maximum
    assert tokens.refresh_token is None or len(tokens.refresh_token) <= MAX_TOKEN_LENGTH
    if tokens.refresh_expires_at is not None:
        assert tokens.refresh_expires_at - SENT <= profile.refresh_lifetime.maximum
    assert iso8601(tokens.access_expires_at) and (tokens.account_id is None or len(tokens.account_id) <= 256)
    assert not math.isnan(tokens.access_expires_at)


# -- how a request failed says whether the provider may have processed it ----------------------------------------
@pytest.mark.parametrize(("raised", "maybe"), [
    (httpx.ConnectTimeout, False), (httpx.ConnectError, False), (httpx.PoolTimeout, False),
    (httpx.ReadTimeout, True), (httpx.WriteTimeout, True), (httpx.RemoteProtocolError, True),
    (httpx.ReadError, True),
])
def test_a_failure_after_the_request_left_may_have_been_processed(raised, maybe):
    def transport(request: httpx.Request) -> httpx.Response:
        raise raised("simulated", request=request)

    client = HttpProviderClient(httpx.Client(transport=httpx.MockTransport(transport)), lambda: SENT)
    with pytest.raises(ProviderError) as failed:
        client.refresh(TIKTOK, ClientCredentials("ck", "cs"), "rft.1")
    assert failed.value.kind == FailureKind.TRANSIENT and failed.value.maybe_processed is maybe


def test_a_huge_answer_is_not_parsed():
    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"access_token": "' + b"a" * 400_000 + b'"}')

    client = HttpProviderClient(httpx.Client(transport=httpx.MockTransport(transport)), lambda: SENT)
    with pytest.raises(ProviderError) as failed:
        client.refresh(TIKTOK, ClientCredentials("ck", "cs"), "rft.1")
    assert failed.value.code == "invalid_answer" and failed.value.maybe_processed


def test_a_call_that_waited_for_a_pool_thread_past_its_budget_is_never_sent(monkeypatch):
    """Found in review: the provider calls run on a pool thread. When every thread was busy, a call could start
    after its caller had given up, and a refresh sent then rotates a token whose answer nobody waits for."""
    from concurrent.futures import ThreadPoolExecutor

    from oauth_keeper.adapters import provider_http

    from local.memory import ManualClock

    clock = ManualClock(SENT)
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=GOOD)

    class BusyPool(ThreadPoolExecutor):
        """A pool whose threads were all busy: the call starts `queued` seconds after it was submitted."""

        queued = 0.0

        def submit(self, fn, /, *args, **kwargs):
            clock.advance(self.queued)
            return super().submit(fn, *args, **kwargs)

    pool = BusyPool(max_workers=1)
    monkeypatch.setattr(provider_http, "_calls", lambda: pool)
    client = HttpProviderClient(httpx.Client(transport=httpx.MockTransport(transport)), clock.now)

    pool.queued = 7.5  # of the 8 s budget: too little is left to tell an answer from a hang
    with pytest.raises(ProviderError) as failed:
        client.refresh(TIKTOK, ClientCredentials("ck", "cs"), "rft.1")
    assert failed.value.code == "no_time" and not failed.value.maybe_processed
    assert sent == []

    pool.queued = 2.0  # a short wait still leaves most of the budget: the call goes out
    assert client.refresh(TIKTOK, ClientCredentials("ck", "cs"), "rft.1").access_token == "act.1"
    assert len(sent) == 1
    pool.shutdown()
