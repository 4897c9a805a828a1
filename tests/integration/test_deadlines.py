"""Lambda's limits, honoured (issue 11, cases 5 and 6): the real handlers run under each function's Timeout and
API Gateway's 30 s, in simulated time (local/lambda_harness.py). A slow TikTok moves the clock; nobody sleeps.
Every test fails if a write or an answer lands after the point where Lambda would have cut the invocation off.
"""

from __future__ import annotations

import json

import boto3
import pytest
from oauth_keeper import root

from local import apigw
from local.lambda_harness import SimulatedLambda
from local.sim_transport import InProcessTransport
from local.stack import install_from_env
from tests.integration.conftest import create_session, location_query

pytestmark = pytest.mark.integration


@pytest.fixture
def slow(stack, tiktok, clock):
    """TikTok reached through a transport that turns its latency into simulated time."""
    import httpx

    transport = InProcessTransport(tiktok)
    transport.advance = clock.advance
    install_from_env(clock=clock, http=httpx.Client(transport=transport))
    return transport


@pytest.fixture
def lam(clock) -> SimulatedLambda:
    return SimulatedLambda(clock)


def timed(lam: SimulatedLambda, clock, method: str, url: str, *, cookies=None, function: str) -> tuple[dict, object]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    route, event = apigw.http_event(method, parts.path, raw_query=parts.query, cookies=cookies)
    with lam.invoke(function, api=True) as call:
        answer = route.load_handler()(event, call.context(clock))
    return answer, call


def browser_cookies(browser) -> list[str]:
    return [f"{k}={v}" for k, v in browser.cookies.items()]


def until_callback(browser, tiktok) -> str:
    created = json.loads(create_session(owner_id="owner-1")["body"])
    authorize = browser.get(created["connect_url"])
    return tiktok.approve(authorize["headers"]["Location"], user="alice")


def test_a_slow_exchange_and_slow_user_info_still_fit_the_callback(stack, tiktok, browser, clock, slow, lam):
    """The failure report: exchange 6 s + user info 5 s took 11.2 s in a 10 s function."""
    callback = until_callback(browser, tiktok)
    slow.latency = {"token": 6.0, "userinfo": 5.0}
    answer, call = timed(lam, clock, "GET", callback, cookies=browser_cookies(browser), function="CallbackFunction")
    assert not call.late, call.late
    result = location_query(answer)
    assert result["status"] == ["connected"]
    connection = root.container().connections.get(result["connection_id"][0])
    assert connection.status == "active" and connection.profile_pending and connection.display_name is None

    # The user info the callback had no time for comes with the next refresh, from the worker.
    slow.latency = {"token": 0.5, "userinfo": 0.5}
    clock.advance(connection.next_refresh_at - clock.now())
    with lam.invoke("RefreshWorkerFunction") as call:
        root.container().refresh_worker.process([{"messageId": "m1", "body": json.dumps(
            {"connection_id": connection.connection_id})}], deadline=root.deadline_of(call.context(clock)))
    assert not call.late
    enriched = root.container().connections.get(connection.connection_id)
    assert enriched.display_name == "Alice Example" and not enriched.profile_pending


def test_an_exchange_slower_than_the_callback_can_wait_ends_in_a_retryable_error_in_time(
        stack, tiktok, browser, clock, slow, lam):
    callback = until_callback(browser, tiktok)
    slow.latency = {"token": 30.0}
    answer, call = timed(lam, clock, "GET", callback, cookies=browser_cookies(browser), function="CallbackFunction")
    assert not call.late, call.late
    result = location_query(answer)
    assert result["error"] == ["exchange_failed"] and result["retryable"] == ["true"]
    assert boto3.client("dynamodb").scan(TableName=stack.env["CONNECTIONS_TABLE"])["Items"] == []


def connected(browser, tiktok) -> str:
    return location_query(browser.get(until_callback(browser, tiktok)))["connection_id"][0]


@pytest.mark.parametrize("seconds", [7.0, 30.0, 600.0])
def test_a_token_read_whose_refresh_hangs_answers_before_api_gateway_gives_up(
        stack, tiktok, browser, clock, slow, lam, seconds):
    connection_id = connected(browser, tiktok)
    clock.advance(7200 - 60)  # the token is about to end: the read refreshes first
    slow.latency = {"token": seconds}
    answer, call = timed(lam, clock, "GET", f"/connections/{connection_id}/token", function="BackendApiFunction")
    assert not call.late, call.late
    assert answer["statusCode"] in (200, 503)  # the still-valid token, or "try again in a minute"
    if seconds > 8:  # longer than any provider call may take: it was given up, and TikTok may have rotated
        assert root.container().connections.get(connection_id).refresh_in_doubt


def test_a_trickling_answer_is_cut_at_its_budget_and_may_have_rotated(stack, tiktok, browser, clock, slow, lam):
    connection_id = connected(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    slow.latency, slow.drip = {"token": 120.0}, 40  # 3 s between pieces, each inside any read timeout
    with lam.invoke("RefreshWorkerFunction") as call:
        result = root.container().refresh_worker.process([{"messageId": "m1", "body": json.dumps(
            {"connection_id": connection_id})}], deadline=root.deadline_of(call.context(clock)))
    assert not call.late, call.late
    assert result == {"batchItemFailures": []}
    stored = root.container().connections.get(connection_id)
    assert stored.last_refresh_reason == "provider_unavailable" and stored.refresh_in_doubt


def test_a_worker_batch_against_a_slow_provider_returns_what_it_cannot_finish(stack, tiktok, browser, clock, slow,
                                                                              lam, monkeypatch):
    ids = []
    for user in [f"u{i}" for i in range(10)]:
        tiktok.add_user(user)
        created = json.loads(create_session(owner_id="owner-1")["body"])
        authorize = browser.get(created["connect_url"])
        ids.append(location_query(browser.get(tiktok.approve(authorize["headers"]["Location"], user=user)))
                   ["connection_id"][0])
    clock.advance(7200)
    slow.latency = {"token": 7.5}  # each refresh takes 7.5 s: one at a time, ten do not fit in 60 s
    monkeypatch.setattr(root.container().refresh_worker, "_concurrency", 1)
    records = [{"messageId": f"m{i}", "body": json.dumps({"connection_id": cid})} for i, cid in enumerate(ids)]
    with lam.invoke("RefreshWorkerFunction") as call:
        result = root.container().refresh_worker.process(records, deadline=root.deadline_of(call.context(clock)))
    assert not call.late, call.late
    returned = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert 0 < len(returned) < 10  # some refreshed, the rest back to SQS for the next invocation
    refreshed = [cid for cid in ids if root.container().connections.get(cid).last_refresh_outcome == "succeeded"]
    assert len(refreshed) + len(returned) == 10
