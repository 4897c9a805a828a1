"""Honest health when the provider misbehaves: every reason says what happened, a possible unsaved rotation is
remembered, and `active` is claimed only while a way to a valid access token is held (issue 11, cases 1-4)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from oauth_keeper.domain.connection import Grant
from oauth_keeper.domain.errors import FailureKind, ProviderError
from oauth_keeper.domain.events import EXPIRING, NEEDS_REAUTH
from oauth_keeper.domain.lifecycle import NoUsableRefreshToken
from oauth_keeper.domain.providers import ProviderProfile
from oauth_keeper.domain.tokens import TokenSet
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.refresh import NEEDS_USER, NOT_DUE, REFRESHED, RETRYING
from oauth_keeper.usecases.sweep import Sweep

from local.memory import ListQueue, no_sleep
from tests.unit.test_refresh_decisions import DAY, OWNER, SCOPES, WARNING, World, invalid_grant, transient

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def refused(code: str, status: int) -> ProviderError:
    return ProviderError("refused", code=code, kind=FailureKind.REJECTED, http_status=status, log_id="L-400")


# -- 3. every reason says what happened ----------------------------------------------------------------------------
@pytest.mark.parametrize(("error", "reason"), [
    (refused("invalid_request", 400), "request_rejected"),
    (refused("unheard_of", 418), "request_rejected"),
    (ProviderError("x", code="invalid_answer", kind=FailureKind.TRANSIENT, http_status=200, maybe_processed=True),
     "invalid_answer"),
    (transient("rate_limit_exceeded", 429), "rate_limited"),
    (transient("server_error", 503), "provider_unavailable"),
])
def test_a_failed_refresh_records_what_actually_happened(world, error, reason):
    cid = world.connect()
    world.provider.script(error)
    outcome = world.refresher.refresh(cid, force=True)
    assert outcome.result == RETRYING
    stored = world.at(cid)
    assert stored.last_refresh_reason == reason and stored.status == "active"  # the token is still valid


# -- 4. a possible unsaved rotation is remembered ---------------------------------------------------------------------
@pytest.mark.parametrize("maybe_processed", [True, False])
def test_only_a_failure_that_may_have_been_processed_puts_the_refresh_in_doubt(world, maybe_processed):
    cid = world.connect()
    world.provider.script(transient("server_error", 502, maybe_processed=maybe_processed), invalid_grant())
    world.refresher.refresh(cid, force=True)
    assert world.at(cid).refresh_in_doubt is maybe_processed
    world.refresher.refresh(cid, force=True)
    after = world.at(cid)
    assert after.status == "needs_reauth"
    assert after.status_reason == ("rotation_lost" if maybe_processed else "invalid_grant")


# -- 1. active only with a way to a valid access token ------------------------------------------------------------
def tokens(world: World, *, refresh: str | None, access_ttl: int = 2 * 3600) -> TokenSet:
    return TokenSet(access_token="at-1", refresh_token=refresh, token_type="Bearer",
                    access_expires_at=world.now + access_ttl,
                    refresh_expires_at=world.now + 180 * DAY if refresh else None, scopes=SCOPES,
                    account_id="acct-1", issued_at=world.now)


def grant(answer: TokenSet) -> Grant:
    return Grant(owner_id=OWNER, provider="tiktok", account_id="acct-1", tokens=answer, scopes_requested=SCOPES,
                 scopes_granted=SCOPES)


def test_a_first_grant_without_a_refresh_token_is_never_stored_for_a_provider_that_issues_them(world):
    with pytest.raises(NoUsableRefreshToken):
        save_grant(world.store, grant(tokens(world, refresh=None)), next_refresh_at=None, missing_scopes=[],
                   now=world.now, sleep=no_sleep)
    assert world.items.items() == []


def test_a_connection_stored_without_its_refresh_token_says_so_not_invalid_grant(world):
    """What an older version stored: active, no refresh token. TikTok refused nothing."""
    saved = save_grant(world.store, grant(tokens(world, refresh=None)), next_refresh_at=world.now,
                       missing_scopes=[], now=world.now, sleep=no_sleep, requires_refresh_token=False)
    outcome = world.refresher.refresh(saved.connection.connection_id, force=True)
    assert outcome.result == NEEDS_USER and outcome.reason == "no_refresh_token"
    assert world.provider.calls == []


class NoRefreshTokens:
    """A provider whose grants end with their access token (no refresh tokens at all)."""

    def profile(self, provider: str) -> ProviderProfile:
        return replace(World().profiles.profile(provider), issues_refresh_tokens=False)


def test_a_provider_without_refresh_tokens_gets_an_early_warning_then_an_honest_end(world):
    world.profiles = NoRefreshTokens()
    world.refresher = world.worker()
    lifetime = 60 * DAY
    saved = save_grant(world.store, grant(tokens(world, refresh=None, access_ttl=lifetime)),
                       next_refresh_at=None, missing_scopes=[], now=world.now, sleep=no_sleep,
                       requires_refresh_token=False)
    cid, ends = saved.connection.connection_id, world.now + lifetime
    assert saved.connection.status == "active" and saved.connection.next_refresh_at == world.now  # swept at once
    world.outbox.publish(saved.connection)
    world.publisher.events.clear()  # Connection Created
    assert world.refresher.refresh(cid).result == NOT_DUE
    assert world.at(cid).next_refresh_at == ends - WARNING and world.types() == []  # nothing to say yet
    world.advance_to(ends - WARNING)
    world.refresher.refresh(cid)
    assert world.types() == [EXPIRING] and world.publisher.events[0]["detail"]["reason"] == "access_token_expiring"
    assert world.at(cid).next_refresh_at == ends
    world.refresher.refresh(cid, force=True)
    assert world.types() == [EXPIRING]  # once
    world.advance_to(ends)
    outcome = world.refresher.refresh(cid)
    assert outcome.result == NEEDS_USER and outcome.reason == "access_token_expired"
    assert world.types() == [EXPIRING, NEEDS_REAUTH] and world.provider.calls == []


# -- 2. nothing stored can make things fail; absurd plans heal ---------------------------------------------------------
def test_a_schedule_stored_absurdly_far_ahead_is_found_by_the_hourly_sweep_and_replanned(world):
    cid = world.connect()
    world.store.items.update(cid, set=world.store.schedule_attributes(cid, world.now + 10**13), expect={})
    queue = ListQueue()
    world.advance_to((world.now // 3600 + 1) * 3600)  # the first sweep of an hour
    Sweep(world.store, queue, world.clock, 300).run()
    assert queue.messages == [cid]
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid).result == REFRESHED
    assert world.at(cid).next_refresh_at < world.now + DAY


def test_other_sweeps_of_the_hour_do_not_pay_for_that_extra_query(world):
    cid = world.connect()
    world.store.items.update(cid, set=world.store.schedule_attributes(cid, world.now + 10**13), expect={})
    queue = ListQueue()
    world.advance_to((world.now // 3600 + 1) * 3600 + 600)
    Sweep(world.store, queue, world.clock, 300).run()
    assert queue.messages == []


def test_a_stored_absurd_refresh_expiry_is_replaced_at_the_next_refresh(world):
    cid = world.connect()
    world.store.items.update(cid, set={"refresh_expires_at": world.now + 10**13}, expect={})
    answer = replace(world.answer("2"), refresh_token=None, refresh_expires_at=None)  # nothing new to go by
    world.provider.script(answer)
    world.refresher.refresh(cid, force=True)
    assert world.at(cid).refresh_expires_at == world.now + 180 * DAY


def test_a_stale_lease_cleared_by_a_pause_still_leaves_the_connection_in_doubt(world):
    """Found in review: a missing credential paused the connection and removed an expired lease of a crashed
    worker without remembering that its refresh may have rotated the token."""
    from oauth_keeper.domain.errors import ConfigurationError

    cid = world.connect()
    world.store.apply(world.at(cid), {"lease_owner": "crashed-worker", "lease_expires_at": world.now - 1})

    class Missing:
        def credentials(self, *args, **kwargs):
            raise ConfigurationError("missing")

    world.credentials = Missing()
    world.refresher = world.worker()
    world.refresher.refresh(cid, force=True)
    stored = world.at(cid)
    assert stored.lease_owner is None and stored.refresh_in_doubt


def test_too_little_time_left_is_not_a_provider_failure(world):
    cid = world.connect()
    outcome = world.refresher.refresh(cid, force=True, deadline=world.now + 5)
    assert outcome.result == "busy" and outcome.reason == "no_time"
    stored = world.at(cid)
    assert world.provider.calls == [] and stored.failures == 0 and stored.lease_owner is None


def test_a_trip_while_the_last_outage_is_still_resuming_keeps_its_parking_range(world):
    from oauth_keeper.usecases.breaker import Cause, CircuitBreakers

    breakers = CircuitBreakers(world.items, world.clock.now)
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)
    first = breakers.read("tiktok").park_base
    world.clock.advance(600)
    breakers.close("tiktok")
    world.clock.advance(60)
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)  # the outage came back within the resume hour
    assert breakers.read("tiktok").park_base == first
