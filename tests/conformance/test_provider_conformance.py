"""Every shipped provider profile against its simulated provider (local/sim_provider.py), over simulated time.

Per provider, three connections are kept alive for 400 simulated days with nothing lost (the clock skips to each
next due time; an app answers Connection Expiring by asking its user to reconnect, as the README says), plus the
quirk tests its strategy calls for, its error classes mapped to the lifecycle and, for rotating providers, the
strict-rotation races. The simulator's knobs per provider model what providers.md reports of each (lifetimes,
error shapes); the profiles alone decide what oauth-keeper does.
"""

from __future__ import annotations

import pytest
from oauth_keeper.domain import events

from local.provider_world import ProviderWorld
from local.sim_provider import DAY, SIMULATED

pytestmark = pytest.mark.unit

PROVIDERS = sorted(SIMULATED)
WARNING = 14 * DAY


def world_of(name: str, **options) -> ProviderWorld:
    return ProviderWorld.create(name=name, quirks=SIMULATED[name](), **{"expiry_warning": WARNING, **options})


def to_due(world: ProviderWorld, connection_id: str) -> None:
    """The clock at the connection's planned refresh: the token is as old as it ever is when refreshed."""
    world.clock.advance(max(0.0, world.get(connection_id).next_refresh_at - world.clock.now()))


def connected(world: ProviderWorld, user: str) -> str:
    result = world.connect(user)
    assert result["status"] == "connected", result
    return result["connection_id"]


@pytest.mark.parametrize("name", PROVIDERS)
def test_400_days_of_keep_alive_lose_nothing(name):
    world = world_of(name)
    users = {connected(world, user): user for user in ("ana", "ben", "cho")}
    end = world.clock.now() + 400 * DAY
    answered = 0
    while world.clock.now() < end:
        world.run_until(min(end, world.clock.now() + DAY))
        expiring = world.events(events.EXPIRING)
        for event in expiring[answered:]:  # the app asks its user to reconnect, as the README says
            assert connected(world, users[event["detail"]["connection_id"]]) == event["detail"]["connection_id"]
        answered = len(expiring)
        assert {c.status for c in world.connections()} == {"active"}, (name, world.clock.now())
    for connection_id in users:
        assert world.services.tokens.token_for(connection_id, None)["access_token"]
    assert world.events(events.NEEDS_REAUTH) == [] and world.events(events.AT_RISK) == []
    assert world.provider.reused_refresh_tokens == 0  # a rotated refresh token is never sent again
    assert all(c.status == 200 for c in world.provider.calls), [c for c in world.provider.calls if c.status != 200]


@pytest.mark.parametrize("name", [n for n in PROVIDERS if world_of(n).profile.timing.min_token_age])
def test_an_extension_before_the_minimum_age_is_not_sent(name):
    world = world_of(name)
    connection_id = connected(world, "ana")
    world.clock.advance(world.profile.timing.min_token_age - 60)
    assert world.services.refresher.refresh(connection_id, force=True).result == "not_due"
    assert world.provider.sent("refresh") == []


@pytest.mark.parametrize(("name", "options", "cap"), [
    ("linkedin", {}, 365 * DAY),
    ("youtube", {"overrides": {"app_status": "testing"}}, 7 * DAY),
])
def test_a_hard_cap_leads_to_expiring_then_needs_reauth(name, options, cap):
    world = world_of(name, expiry_warning=2 * DAY, **options)
    connection_id = connected(world, "ana")
    ends = world.get(connection_id).connected_at + cap
    world.run_until(ends - 1)
    assert world.get(connection_id).status == "active"
    assert len(world.events(events.EXPIRING)) == 1
    world.run_until(ends + DAY)
    connection = world.get(connection_id)
    assert (connection.status, connection.status_reason) == ("needs_reauth", "refresh_token_expired")


@pytest.mark.parametrize("name", [n for n in PROVIDERS if world_of(n).profile.issues_refresh_tokens])
def test_a_reconnect_without_a_refresh_token_keeps_the_stored_one(name):
    world = world_of(name)
    connection_id = connected(world, "ana")
    stored = world.tokens(connection_id)["refresh_token"]
    world.provider.quirks.omit_refresh_on_next_code = True  # e.g. Google without prompt=consent
    assert connected(world, "ana") == connection_id
    assert world.tokens(connection_id)["refresh_token"] == stored
    world.clock.advance(3 * 3600)
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"


@pytest.mark.parametrize("name", PROVIDERS)
def test_error_classes_map_to_the_lifecycle(name):
    world = world_of(name)
    connection_id = connected(world, "ana")
    to_due(world, connection_id)
    refresher = world.services.refresher
    world.provider.fail_next("refresh", 429, {"error": "rate_limit_exceeded"})
    assert (refresher.refresh(connection_id, force=True).reason) == "rate_limited"
    world.provider.fail_next("refresh", 503, {})
    assert refresher.refresh(connection_id, force=True).reason == "provider_unavailable"
    world.provider.fail_next("refresh", *world.provider.quirks.dead_grant)
    outcome = refresher.refresh(connection_id, force=True)
    assert outcome.result == "needs_reauth", (name, outcome)


@pytest.mark.parametrize("name", PROVIDERS)
def test_refused_client_credentials_pause_the_provider_and_blame_nobody(name):
    world = world_of(name)
    connection_id = connected(world, "ana")
    to_due(world, connection_id)
    world.provider.client_secret = "rotated-by-someone"  # noqa: S105 - the app's secret changed at the provider
    outcome = world.services.refresher.refresh(connection_id, force=True)
    if world.profile.request("refresh").client_auth == "none":  # the token alone: the secret is not involved
        assert outcome.result == "refreshed"
    else:
        assert outcome.result == "paused" and world.get(connection_id).status == "active"


@pytest.mark.parametrize("name", [n for n in PROVIDERS if world_of(n).profile.rotates_refresh_tokens])
def test_strict_rotation_one_refresh_in_flight(name):
    """A second refresher arriving while the provider is rotating finds the lease and sends nothing."""
    world = world_of(name)
    connection_id = connected(world, "ana")
    to_due(world, connection_id)
    sibling = world.services.refresher.__class__  # another worker: same code, its own lease identity
    outcomes = []

    def race() -> None:
        world.provider.quirks.on_refresh = None
        other = sibling(connections=world.services.connections, breakers=world.services.breakers,
                        profiles=world.services.profiles, credentials=world.services.credentials,
                        provider=world.services.provider, outbox=world.services.outbox, clock=world.clock,
                        sweep_interval=300, expiry_warning=WARNING)
        outcomes.append(other.refresh(connection_id, force=True))

    world.provider.quirks.on_refresh = race
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert [o.result for o in outcomes] == ["busy"]
    assert len(world.provider.sent("refresh")) == 1 and world.provider.reused_refresh_tokens == 0


@pytest.mark.parametrize("name", [n for n in PROVIDERS if world_of(n).profile.rotates_refresh_tokens])
def test_strict_rotation_a_lost_answer_is_never_retried_with_the_spent_token_blindly(name):
    """The provider rotated, the answer was lost: the next refusal is read as the lost rotation (honestly
    `rotation_lost`), not as the user's revocation, and the connection asks for the user."""
    world = world_of(name)
    connection_id = connected(world, "ana")
    to_due(world, connection_id)
    world.provider.quirks.lose_next_refresh_answer = True
    assert world.services.refresher.refresh(connection_id, force=True).result == "retrying"
    assert world.get(connection_id).refresh_in_doubt
    world.clock.advance(3600)
    outcome = world.services.refresher.refresh(connection_id, force=True)
    assert (outcome.result, outcome.reason) == ("needs_reauth", "rotation_lost")
