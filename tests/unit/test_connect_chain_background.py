"""The connect chain's later link as background work (ADR 0025): a callback without time for a link, or whose link
failed transiently, stores the connection on the short-lived token, `active` and honestly `connect_finishing`;
the sweep and the worker run the link under the refresh lease, and a refused or never-finished link ends the
connect honestly (`needs_reauth`, `connect_incomplete`). Driven through the real use cases, the injected clock and
the simulated provider of the shipped profiles."""

import pytest
from oauth_keeper.domain import events
from oauth_keeper.domain.errors import ConnectionUnavailable
from oauth_keeper.usecases.connections import connection_view

from local.provider_world import ProviderWorld
from local.sim_provider import DAY, Quirks
from tests.event_schemas import envelope, problems

pytestmark = pytest.mark.unit

SHORT = 3600  # the simulator's short-lived token (Meta's hour)
REFUSED = (400, {"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}})
DOWN = (503, {"error": {"message": "Service temporarily unavailable", "type": "OAuthException", "code": 2}})


def world_of(name: str = "instagram", **options) -> ProviderWorld:
    return ProviderWorld.create(name=name, quirks=Quirks(access_ttl=60 * DAY), **options)


# How long a slow code exchange takes of the callback's 9 seconds (its 10 s timeout less the handler's margin) to
# leave too little for the link and the save after it, yet enough for the user-info call a profile still needs.
SLOW = {"instagram": 5, "facebook_pages": 5, "threads": 7}  # threads' code answer names the account


def slow_connect(world: ProviderWorld, user: str = "ana", **options) -> dict[str, str]:
    """A connect whose code exchange is slow (`SLOW`): no time is left for the link."""
    world.provider.quirks.on_code_exchange = lambda: world.clock.advance(SLOW[world.name])
    try:
        return world.connect(user, deadline=world.clock.now() + 9, **options)
    finally:
        world.provider.quirks.on_code_exchange = None


def finishing(world: ProviderWorld) -> str:
    result = slow_connect(world)
    assert result["status"] == "connected" and result["status_reason"] == "connect_finishing", result
    return result["connection_id"]


@pytest.mark.parametrize("name", ["instagram", "threads", "facebook_pages"])
def test_a_slow_provider_connects_on_the_short_token_and_the_next_sweep_finishes_the_chain(name):
    world = world_of(name)
    sent = world.clock.now()
    cid = finishing(world)
    assert world.provider.sent("chain") == []  # never started without the time for it
    connection, now = world.get(cid), world.clock.now()
    view = connection_view(connection, now)
    assert (view["status"], view["status_reason"]) == ("active", "connect_finishing")
    assert connection.access_expires_at == sent + SHORT and connection.next_refresh_at <= now  # due right away
    short = world.services.tokens.token_for(cid, None)
    assert short["access_token"] == world.tokens(cid)["access_token"]  # the valid short-lived token is served
    [created] = world.events(events.CREATED)
    assert created["detail"]["connect_finishing"] is True and problems(envelope(created)) == []

    world.tick()  # one sweep, one worker pass
    connection = world.get(cid)
    assert [c.status for c in world.provider.sent("chain")] == [200]
    assert (connection.status, connection.status_reason, connection.chain_next) == ("active", None, None)
    assert connection.access_expires_at == world.clock.now() + 60 * DAY  # the long-lived token replaced it
    assert world.services.tokens.token_for(cid, None)["access_token"] != short["access_token"]
    assert connection.next_refresh_at > world.clock.now() + DAY  # planned by the profile's strategy again
    assert world.provider.sent("refresh") == []  # the link ran instead of a refresh
    world.clock.advance(60)
    world.tick()
    assert len(world.provider.sent("chain")) == 1  # done: never run twice


@pytest.mark.parametrize("name", ["instagram", "threads", "facebook_pages"])
def test_a_prompt_provider_finishes_the_chain_inside_the_callbacks_ten_seconds(name):
    world = world_of(name)
    result = world.connect("ana", deadline=world.clock.now() + 9)
    assert result["status"] == "connected" and "status_reason" not in result
    assert world.get(result["connection_id"]).access_expires_at == world.clock.now() + 60 * DAY


def test_a_link_slower_than_the_time_left_is_abandoned_and_finished_in_the_background():
    world = world_of()
    # The link takes 5 s; with the save and the user-info call still to come, it had 4.5 of the callback's 9.
    world.provider.quirks.on_chain = lambda: world.clock.advance(5)
    result = world.connect("ana", deadline=world.clock.now() + 9)
    world.provider.quirks.on_chain = None
    assert (result["status"], result["status_reason"]) == ("connected", "connect_finishing")
    assert world.get(result["connection_id"]).account_id == "ana"  # the user-info call still had its time
    world.tick()
    assert world.get(result["connection_id"]).status_reason is None


def test_a_transient_link_failure_at_the_callback_is_finished_in_the_background():
    world = world_of()
    world.provider.fail_next("chain", *DOWN)
    result = world.connect("ana")
    assert (result["status"], result["status_reason"]) == ("connected", "connect_finishing")
    world.tick()
    assert world.get(result["connection_id"]).status_reason is None
    assert [c.status for c in world.provider.sent("chain")] == [503, 200]


def test_a_refused_link_at_the_callback_still_fails_the_connect_and_stores_nothing():
    world = world_of()
    world.provider.fail_next("chain", *REFUSED)
    result = world.connect("ana")
    assert (result["status"], result["error"]) == ("error", "exchange_failed")
    assert world.connections() == []


def test_a_link_refused_in_the_background_fails_the_connect_honestly():
    world = world_of()
    cid = finishing(world)
    world.provider.fail_next("chain", *REFUSED)
    world.tick()
    connection = world.get(cid)
    assert (connection.status, connection.status_reason) == ("needs_reauth", "connect_incomplete")
    assert connection.next_refresh_at is None
    [event] = world.events(events.NEEDS_REAUTH)
    assert event["detail"]["reason"] == "connect_incomplete" and problems(envelope(event)) == []
    with pytest.raises(ConnectionUnavailable):
        world.services.tokens.token_for(cid, None)


def test_transient_link_failures_are_retried_until_the_short_token_ends_then_needs_reauth():
    world = world_of()
    cid = finishing(world)
    ends = world.get(cid).access_expires_at
    world.provider.faults.extend([("chain", *DOWN)] * 200)
    world.run_until(ends - 120)
    connection = world.get(cid)
    assert (connection.status, connection.status_reason) == ("active", "connect_finishing")  # the token is valid
    tries = world.provider.sent("chain")
    assert len(tries) >= 5 and all(c.status == 503 and c.at < ends for c in tries)
    world.run_until(ends + 600)
    connection = world.get(cid)
    assert (connection.status, connection.status_reason) == ("needs_reauth", "connect_incomplete")
    assert all(c.at < ends for c in world.provider.sent("chain"))  # never sent with the ended token
    assert [e["detail"]["reason"] for e in world.events(events.NEEDS_REAUTH)] == ["connect_incomplete"]
    assert world.events(events.AT_RISK) == []  # its token was valid throughout: nobody was at risk


def test_a_refresh_racing_the_background_link_never_runs_it_twice():
    world = world_of()
    cid = finishing(world)
    raced = []
    # While the worker's link is at the provider, the token route and a duplicate message both want it.
    world.provider.quirks.on_chain = lambda: raced.append(world.services.refresher.refresh(cid, force=True))
    world.tick()
    world.provider.quirks.on_chain = None
    assert [o.result for o in raced] == ["busy"]  # the lease: the link is in flight already
    assert len(world.provider.sent("chain")) == 1 and world.get(cid).status_reason is None


def test_the_token_route_near_the_short_tokens_end_runs_the_link_under_the_lease():
    world = world_of()
    cid = finishing(world)
    world.clock.advance(SHORT - 200)  # no sweep ran meanwhile; 200 s left, below the route's 300 s minimum
    answer = world.services.tokens.token_for(cid, None)
    assert len(world.provider.sent("chain")) == 1
    assert answer["access_token"] == world.tokens(cid)["access_token"] and world.get(cid).status_reason is None


def test_a_link_answer_without_an_access_token_is_retried_like_an_outage():
    world = world_of()
    cid = finishing(world)
    world.provider.fail_next("chain", 200, {"token_type": "bearer", "expires_in": 5_184_000})
    outcome = world.services.refresher.refresh(cid)
    assert (outcome.result, outcome.reason) == ("retrying", "invalid_answer")
    assert world.get(cid).status_reason == "connect_finishing"
    world.clock.advance(world.get(cid).next_refresh_at - world.clock.now())
    assert world.services.refresher.refresh(cid).result == "refreshed"
    assert world.get(cid).status_reason is None


def test_an_absurd_link_lifetime_is_bounded_as_any_answer_is():
    world = world_of()
    cid = finishing(world)
    world.provider.fail_next("chain", 200, {"access_token": "IGlong", "token_type": "bearer",
                                            "expires_in": 10 ** 12})
    assert world.services.refresher.refresh(cid).result == "refreshed"
    connection = world.get(cid)
    fallback = world.profile.chain[0].access_lifetime.fallback  # the long-lived token's, not the code token's
    assert fallback == 60 * DAY
    assert connection.access_expires_at == world.clock.now() + fallback  # never a date ten thousand years ahead
    assert connection.status_reason is None and world.tokens(cid)["access_token"] == "IGlong"


def test_a_held_grant_with_its_chain_unfinished_is_claimed_finishing_and_finished_the_same_way():
    world = world_of(connect_confirmation="required")
    result = slow_connect(world, owner_id="owner")
    assert result["status"] == "pending_confirmation" and world.provider.sent("chain") == []
    claimed = world.services.pending.claim({"claim": result["claim"], "owner_id": "owner"})
    cid = claimed["connection"]["connection_id"]
    assert claimed["connection"]["status_reason"] == "connect_finishing"
    world.tick()
    connection = world.get(cid)
    assert connection.status_reason is None and connection.access_expires_at == world.clock.now() + 60 * DAY
    assert len(world.provider.sent("chain")) == 1


def test_a_reconnect_that_finishes_the_chain_at_once_clears_an_unfinished_one():
    world = world_of()
    cid = finishing(world)
    again = world.connect("ana")  # all the time it needs this time
    assert again["connection_id"] == cid and "status_reason" not in again
    connection = world.get(cid)
    assert (connection.status_reason, connection.chain_next) == (None, None)
    assert connection.access_expires_at == world.clock.now() + 60 * DAY
