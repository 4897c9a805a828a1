"""Every budget fits what holds it (issue 11, case 5): derived from the configured values, not restated.

botocore's configuration (adapters/aws.py) gives an AWS call's worst case; the provider client's limit gives a
provider call's; the refresh lease must outlast everything done under it, and every function's planned work
must fit its Timeout in template.yaml with a margin.
"""

from __future__ import annotations

import json

import pytest
from oauth_keeper.adapters import aws
from oauth_keeper.adapters.provider_http import PROVIDER_CALL_LIMIT as ADAPTER_PROVIDER_LIMIT
from oauth_keeper.domain import deadlines as d
from oauth_keeper.usecases.refresh import COMMIT_ATTEMPTS

from local.lambda_harness import API_GATEWAY_LIMIT, function_timeout
from tests.unit.test_refresh_decisions import World

pytestmark = pytest.mark.unit


def aws_call_worst_case() -> float:
    """From the botocore Config the adapters really use: attempts x (connect + read) + standard backoff."""
    config = aws._config()  # noqa: SLF001 - the one place it is built
    attempts = config.retries["total_max_attempts"]
    assert config.retries["mode"] == "standard"
    backoff = sum(min(1.0 * 2 ** (n - 1), 20) for n in range(1, attempts))  # botocore's exponential ceiling
    return attempts * (config.connect_timeout + config.read_timeout) + backoff


def test_an_aws_call_never_outlasts_its_budget():
    assert aws_call_worst_case() <= d.AWS_CALL_LIMIT


def test_the_lease_outlasts_everything_done_under_it():
    commit_calls = 1 + 2 * (COMMIT_ATTEMPTS - 1)  # the write; a re-read and a write for each retry
    assert commit_calls <= d.AWS_CALLS_AFTER_THE_ANSWER
    worst = commit_calls * aws_call_worst_case() + ADAPTER_PROVIDER_LIMIT
    assert worst <= d.LEASE_SECONDS, (d.LEASE_SECONDS, worst)
    assert d.LEASE_SECONDS - d.COMMIT_RESERVE >= ADAPTER_PROVIDER_LIMIT  # a full provider call fits a fresh lease
    assert commit_calls * aws_call_worst_case() <= d.COMMIT_RESERVE


@pytest.mark.parametrize("function", ["BackendApiFunction", "RefreshWorkerFunction"])
def test_a_function_that_refreshes_outlives_the_lease(function):
    assert function_timeout(function) > d.LEASE_SECONDS


@pytest.mark.parametrize("function", ["ConnectSessionsFunction", "AuthorizeFunction", "CallbackFunction",
                                      "BackendApiFunction", "WebhookFunction"])
def test_every_route_ends_before_api_gateway_gives_up(function):
    assert function_timeout(function) < API_GATEWAY_LIMIT


def test_the_callbacks_plan_fits_its_function():
    """Consume the flow, exchange the code, store the grant, answer: the exchange gets what is left, even when
    consuming the flow took an AWS call's worst case (TikTok's exchange usually answers in under a second)."""
    exchange = function_timeout("CallbackFunction") - d.HANDLER_MARGIN - d.SAVE_RESERVE - d.AWS_CALL_LIMIT
    assert exchange >= 3 * d.MIN_PROVIDER_CALL
    assert d.ENRICH_MIN >= d.MIN_PROVIDER_CALL


def test_the_token_routes_plan_fits_its_function():
    """Read the connection and claim the lease (one attempt each, as usual), then a whole provider call and the
    commit. Slower AWS answers leave too little: the route then answers 503, retryable, and calls nobody."""
    refresh = function_timeout("BackendApiFunction") - d.HANDLER_MARGIN - d.REFRESH_MIN_TIME
    assert refresh >= 2 * (d.AWS_CONNECT_TIMEOUT + d.AWS_READ_TIMEOUT)


def test_a_worker_invocation_has_room_for_a_refresh():
    assert function_timeout("RefreshWorkerFunction") - d.HANDLER_MARGIN > d.COMMIT_RESERVE + d.LEASE_SECONDS


def test_the_provider_call_of_a_refresh_ends_in_time_to_commit_inside_the_lease():
    world = World()
    cid = world.connect()
    world.provider.script(world.answer("2"))
    world.refresher.refresh(cid, force=True)
    (deadline,) = world.provider.deadlines
    assert deadline == world.now + d.LEASE_SECONDS - d.COMMIT_RESERVE


def test_a_callers_deadline_shortens_the_provider_call_by_the_commit_reserve():
    world = World()
    cid = world.connect()
    world.provider.script(world.answer("2"))
    world.refresher.refresh(cid, force=True, deadline=world.now + d.REFRESH_MIN_TIME + 0.5)
    (deadline,) = world.provider.deadlines
    assert deadline == world.now + d.REFRESH_MIN_TIME + 0.5 - d.COMMIT_RESERVE


# -- found in review: a refresh started late could abandon a slow but healthy provider's rotation -----------
@pytest.mark.parametrize("left", [d.COMMIT_RESERVE + d.MIN_PROVIDER_CALL + 0.5, d.REFRESH_MIN_TIME - 0.5])
def test_a_refresh_starts_only_with_a_whole_provider_call_and_the_commit_left(left):
    """With 14 s left, the provider call would get 1 s: a slow but healthy TikTok that answers in 1.5 s has
    rotated the refresh token by then, and the answer would be abandoned. So the refresh is not started."""
    world = World()
    cid = world.connect()
    outcome = world.refresher.refresh(cid, force=True, deadline=world.now + left)
    assert (outcome.result, outcome.reason) == ("busy", "no_time")
    assert world.provider.calls == []
    stored = world.at(cid)
    assert stored.failures == 0 and stored.lease_owner is None and not stored.refresh_in_doubt


def test_a_worker_hands_back_a_message_it_has_too_little_time_for():
    from oauth_keeper.usecases.worker import process_records

    world = World()
    cid = world.connect()
    records = [{"messageId": "m1", "body": json.dumps({"connection_id": cid, "force": True})}]
    result = process_records(records, world.refresher, 4, deadline=world.now + d.REFRESH_MIN_TIME - 1,
                             now=world.clock.now)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}  # SQS delivers it again
    assert world.provider.calls == []

    world.provider.script(world.answer("2"))  # the next invocation has the time
    assert process_records(records, world.refresher, 4, deadline=world.now + d.REFRESH_MIN_TIME,
                           now=world.clock.now) == {"batchItemFailures": []}
    assert world.provider.calls == ["rt-acct-1"]


def test_time_lost_before_the_lease_gives_the_lease_back_without_calling_the_provider():
    """Making the data key ready (KMS) or taking the lease (in one write, or read first) took long: what is left no
    longer fits."""
    world = World()
    cid = world.connect()
    deadline = world.now + d.REFRESH_MIN_TIME + 1

    def slowly(write):
        def slow_write(*args, **kwargs):
            world.clock.advance(2)  # DynamoDB answered slowly
            return write(*args, **kwargs)
        return slow_write

    world.store.claim = slowly(world.store.claim)  # type: ignore[method-assign]
    world.store.take_lease = slowly(world.store.take_lease)  # type: ignore[method-assign]
    outcome = world.refresher.refresh(cid, force=True, deadline=deadline)
    assert (outcome.result, outcome.reason) == ("busy", "no_time")
    assert world.provider.calls == []
    assert world.at(cid).lease_owner is None and world.at(cid).failures == 0


def test_a_call_the_adapter_found_no_time_for_is_nobodys_failure():
    """The HTTP adapter refuses to start a call with less than MIN_PROVIDER_CALL left (`no_time`): nothing was
    sent, so no failure is counted, nobody is told the connection is at risk, and the breaker hears nothing."""
    from oauth_keeper.domain.errors import FailureKind, ProviderError

    world = World()
    cid = world.connect(access_ttl=60)  # the access token has ended: a real failure would make it at risk
    world.clock.advance(120)
    for _ in range(12):  # more than the breaker's window
        world.provider.script(ProviderError("No time left", code="no_time", kind=FailureKind.TRANSIENT))
        outcome = world.refresher.refresh(cid, force=True)
        assert (outcome.result, outcome.reason) == ("busy", "no_time")
    stored = world.at(cid)
    assert stored.status == "active" and stored.failures == 0 and stored.lease_owner is None
    assert world.publisher.events == []
    assert world.refresher._breakers.read("tiktok").state == "closed"  # noqa: SLF001
