"""The refresher's edge decisions, each with a test that fails when the decision is removed: a sibling's rotation
is not the user's revocation, a disconnect is never overwritten, a missing credential is ours, a lost claim
reports what won it, and a refresh token's end bounds every retry."""

from __future__ import annotations

import pytest
from oauth_keeper.domain.errors import ConfigurationError
from oauth_keeper.domain.events import NEEDS_REAUTH
from oauth_keeper.usecases.refresh import BUSY, PAUSED, RETRYING, SUPERSEDED

from tests.unit.test_refresh_decisions import DAY, World, invalid_grant, transient

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def test_an_invalid_grant_after_a_sibling_rotated_the_token_is_not_the_users_revocation(world):
    cid = world.connect()

    def sibling_rotates_then_the_old_token_is_refused():
        current = world.at(cid)
        world.store.apply(current, {"token_version": current.token_version + 1,
                                    "tokens": world.store.seal_tokens(current, {
                                        "access_token": "at-sibling", "refresh_token": "rt-sibling",
                                        "token_type": "Bearer"}, token_version=current.token_version + 1)})
        return invalid_grant()

    world.provider.script(sibling_rotates_then_the_old_token_is_refused)
    outcome = world.refresher.refresh(cid, force=True)
    assert outcome.result == SUPERSEDED
    assert world.at(cid).status == "active" and NEEDS_REAUTH not in world.types()
    assert world.tokens(cid)["refresh_token"] == "rt-sibling"


def test_a_refresh_answer_never_overwrites_a_disconnect_that_happened_meanwhile(world):
    cid = world.connect()

    def the_user_disconnects_meanwhile():
        world.store.apply(world.at(cid), {"status": "disconnected", "status_reason": "app_disconnected",
                                          "tokens": None})
        return world.answer("2")

    world.provider.script(the_user_disconnects_meanwhile)
    outcome = world.refresher.refresh(cid, force=True)
    assert outcome.result == SUPERSEDED
    stored = world.at(cid)
    assert stored.status == "disconnected" and stored.sealed_tokens is None


def test_a_missing_client_credential_during_a_refresh_is_our_configuration_not_the_user(world):
    cid = world.connect()

    class Missing:
        def credentials(self, *args, **kwargs):
            raise ConfigurationError("Client credentials for tiktok are missing under /oauth-keeper/tiktok.")

    world.credentials = Missing()
    world.refresher = world.worker()
    outcome = world.refresher.refresh(cid, force=True)
    assert outcome.result == PAUSED
    stored = world.at(cid)
    assert stored.status == "active" and stored.last_refresh_reason == "provider_config"
    assert world.provider.calls == []
    assert world.refresher.refresh(world.connect("acct-2"), force=True).result == PAUSED  # provider-wide


def test_a_lost_claim_reports_the_connection_as_the_winner_wrote_it(world):
    cid = world.connect()
    # An expired lease left behind: the lease in one write refuses it, so the refresher reads first, and a
    # sibling can write between that read and the lease guarded on it.
    world.store.apply(world.at(cid), {"lease_owner": "crashed", "lease_expires_at": world.now - 1})
    sibling = world.worker()
    real_check = world.refresher._breakers.check  # noqa: SLF001 - the moment between the read and the claim

    def a_sibling_claims_first(provider):
        current = world.at(cid)
        world.store.apply(current, {"lease_owner": "the-sibling", "lease_expires_at": world.now + 20})
        return real_check(provider)

    world.refresher._breakers.check = a_sibling_claims_first  # noqa: SLF001
    outcome = world.refresher.refresh(cid, force=True)
    assert outcome.result == BUSY and outcome.connection.lease_owner == "the-sibling"
    assert world.provider.calls == [] and sibling  # nobody called TikTok twice


def test_a_refusal_that_comes_after_the_refresh_tokens_end_says_it_expired(world):
    cid = world.connect(refresh_ttl=DAY)

    def answered_after_the_end():
        world.advance_to(world.at(cid).refresh_expires_at + 1)
        return invalid_grant()

    world.provider.script(answered_after_the_end)
    world.refresher.refresh(cid, force=True)
    assert world.at(cid).status_reason == "refresh_token_expired"


def test_a_retry_is_never_planned_past_the_refresh_tokens_end(world):
    cid = world.connect(refresh_ttl=10)  # shorter than the first backoff (30 s at its ceiling)
    world.provider.script(transient())
    assert world.refresher.refresh(cid, force=True).result == RETRYING
    stored = world.at(cid)
    assert stored.next_refresh_at <= stored.refresh_expires_at
