"""Every budget fits what holds it (issue 11, case 5): derived from the configured values, not restated.

botocore's configuration (adapters/aws.py) gives an AWS call's worst case; the provider client's limit gives a
provider call's; the refresh lease must outlast everything done under it, and every function's planned work
must fit its Timeout in template.yaml with a margin.
"""

from __future__ import annotations

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
    refresh = function_timeout("BackendApiFunction") - d.HANDLER_MARGIN - d.COMMIT_RESERVE
    assert refresh >= d.MIN_PROVIDER_CALL + 2 * d.AWS_CALL_LIMIT  # read the connection, claim, then the call


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
    world.refresher.refresh(cid, force=True, deadline=world.now + 15)
    (deadline,) = world.provider.deadlines
    assert deadline == world.now + 15 - d.COMMIT_RESERVE
