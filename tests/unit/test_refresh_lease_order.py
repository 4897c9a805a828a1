"""What happens around the refresh lease (usecases/refresh.py). A due connection nobody holds is leased in one write
that returns the item (ReturnValues=ALL_NEW): the cached reads a provider call needs (breaker, data keys,
credentials) then happen under the lease, which is renewed when they ate into the time the provider call and the
commit need; the read-first path (an expired lease left behind) makes them ready before its lease, as before. The
breaker is looked at again just before the call, so a breaker tripped meanwhile stops the provider call, pauses
the connection and releases the lease.

On the in-memory refresher of tests/unit/test_refresh_decisions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from oauth_keeper.domain.connection import Connection
from oauth_keeper.domain.deadlines import COMMIT_RESERVE, LEASE_SECONDS, PROVIDER_CALL_LIMIT
from oauth_keeper.domain.providers import ProviderProfile
from oauth_keeper.domain.tokens import ClientCredentials
from oauth_keeper.usecases.breaker import Cause, CircuitBreakers
from oauth_keeper.usecases.refresh import PAUSED, REFRESHED, Refresher

from tests.unit.test_refresh_decisions import FIRST_DUE, SWEEP, T0, WARNING, CeilingRng, World

pytestmark = pytest.mark.unit


class RecordingStore:
    """The refresher's ConnectionRepository, recording the calls that matter here, in order: `prepare_seal`,
    `claim` (the lease) and `apply` (decision writes). Everything else goes straight to the real store."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.log: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def prepare_seal(self, for_seconds: float) -> None:
        self.log.append("prepare_seal")
        self._store.prepare_seal(for_seconds)

    def take_lease(self, connection_id: str, **kwargs: Any):
        leased, found = self._store.take_lease(connection_id, **kwargs)
        self.log.append("lease" if leased else "lease refused")
        return leased, found

    def claim(self, connection: Connection, changes: dict[str, Any], **kwargs: Any):
        self.log.append("claim" if changes.get("lease_owner") or changes.get("lease_expires_at")
                        else "claim without a lease")
        return self._store.claim(connection, changes, **kwargs)

    def apply(self, connection: Connection, changes: dict[str, Any], **kwargs: Any):
        self.log.append("apply")
        return self._store.apply(connection, changes, **kwargs)


class CredentialsWithMeanwhile:
    """The refresher's credentials; `meanwhile` runs once during the first read (what other threads or containers
    do while this refresher reads SSM, between its first look at the breaker and its lease)."""

    def __init__(self, credentials: Any, meanwhile: Callable[[], None]) -> None:
        self._credentials, self._meanwhile = credentials, meanwhile

    def credentials(self, profile: ProviderProfile, **kwargs: Any) -> ClientCredentials:
        meanwhile, self._meanwhile = self._meanwhile, lambda: None
        meanwhile()
        return self._credentials.credentials(profile, **kwargs)


@pytest.fixture
def world() -> World:
    world = World()
    world.store = RecordingStore(world.store)
    world.refresher = world.worker()
    return world


# -- b: one write for the lease; the data key made ready under it, or before a lease taken after a read -----------
def test_a_due_connection_is_leased_in_one_write_and_the_data_key_made_ready_under_it(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid).result == REFRESHED
    assert world.store.log == ["lease", "prepare_seal", "apply"]  # no read, no second lease write


def test_an_expired_lease_left_behind_is_read_first_and_the_data_key_made_ready_before_the_lease(world):
    cid = world.connect()
    world.store.apply(world.at(cid), {"lease_owner": "crashed", "lease_expires_at": world.now - 1})
    world.store.log.clear()
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.store.log == ["lease refused", "prepare_seal", "claim", "apply"]
    assert world.at(cid).refresh_in_doubt is False  # the commit cleared what the expired lease made doubtful


def kms_calls_recorded(world: World, cid: str, monkeypatch: Any, *, takes: float = 0.0) -> list[tuple[str, bool]]:
    """Every KMS call, with whether the lease was on the item at that moment; each takes `takes` seconds."""
    calls: list[tuple[str, bool]] = []

    def recorded(name: str, kms_call: Callable[..., Any]) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            calls.append((name, world.items.get(cid).get("lease_owner") is not None))
            world.clock.advance(takes)
            return kms_call(**kwargs)
        return call

    monkeypatch.setattr(world.kms, "generate_data_key", recorded("GenerateDataKey", world.kms.generate_data_key))
    monkeypatch.setattr(world.kms, "decrypt", recorded("Decrypt", world.kms.decrypt))
    return calls


def test_kms_calls_under_a_lease_taken_first_leave_the_provider_call_its_whole_time(world, monkeypatch):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)  # the cached data key (300 s) and unwrapped key (3600 s) are both stale
    calls = kms_calls_recorded(world, cid, monkeypatch)
    world.provider.script(world.answer("2"))

    assert world.refresher.refresh(cid).result == REFRESHED

    assert calls == [("Decrypt", True), ("GenerateDataKey", True)]  # open the tokens, then the data key
    (deadline,) = world.provider.deadlines
    assert deadline == world.now + LEASE_SECONDS - COMMIT_RESERVE  # answered in no time: the lease untouched
    assert world.store.log == ["lease", "prepare_seal", "apply"]


def test_slow_kms_calls_under_the_lease_renew_it_before_the_provider_call(world, monkeypatch):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    leased_at = world.now
    kms_calls_recorded(world, cid, monkeypatch, takes=1.5)  # 3 s in all: more than the lease's margin
    world.provider.script(world.answer("2"))

    assert world.refresher.refresh(cid).result == REFRESHED

    assert world.store.log == ["lease", "prepare_seal", "claim", "apply"]  # the renewal is the claim
    (deadline,) = world.provider.deadlines
    assert deadline == leased_at + 3 + LEASE_SECONDS - COMMIT_RESERVE  # counted from the renewal
    assert deadline - (leased_at + 3) >= PROVIDER_CALL_LIMIT  # a whole provider call still fits


# -- a: the breaker, looked at again under the lease ----------------------------------------------------------------
def test_a_breaker_a_sibling_in_this_container_tripped_after_the_first_look_stops_the_call(world):
    cid = world.connect()
    breakers = CircuitBreakers(world.items, world.clock.now)  # this container's, shared by its refreshers
    world.credentials = CredentialsWithMeanwhile(
        world.credentials, lambda: breakers.trip("tiktok", "invalid_client", cause=Cause.OPERATOR))
    refresher = Refresher(connections=world.store, breakers=breakers, profiles=world.profiles,
                          credentials=world.credentials, provider=world.provider, outbox=world.outbox,
                          clock=world.clock, sweep_interval=SWEEP, expiry_warning=WARNING, rng=CeilingRng())
    world.provider.script(world.answer("2"))  # what the provider would answer, were it asked

    outcome = refresher.refresh(cid, force=True)

    assert (outcome.result, outcome.reason) == (PAUSED, "provider_config")
    assert world.provider.calls == []
    assert world.store.log == ["lease", "prepare_seal", "apply"]  # the lease was taken, then given back
    stored = world.at(cid)
    assert stored.lease_owner is None and stored.lease_expires_at is None
    assert stored.last_refresh_outcome == "paused" and world.tokens(cid)["refresh_token"] == "rt-acct-1"


def test_a_breaker_another_container_tripped_is_seen_under_the_lease_once_the_cached_look_is_stale(world):
    cid = world.connect()

    def slow_read_while_another_container_is_rate_limited() -> None:
        world.clock.advance(5)  # the breaker cache's life: the second look reads the item again
        CircuitBreakers(world.items, world.clock.now).trip("tiktok", "rate_limit_exceeded",
                                                           cause=Cause.RATE_LIMITED, open_for=120)

    world.credentials = CredentialsWithMeanwhile(world.credentials, slow_read_while_another_container_is_rate_limited)
    refresher = world.worker()
    world.provider.script(world.answer("2"))

    outcome = refresher.refresh(cid, force=True)

    assert (outcome.result, outcome.reason) == (PAUSED, "rate_limited")
    assert world.provider.calls == []
    assert world.store.log == ["lease", "prepare_seal", "claim", "apply"]  # the 5 s read ate into it: renewed
    stored = world.at(cid)
    assert stored.lease_owner is None and stored.lease_expires_at is None
    assert stored.next_refresh_at > world.now + LEASE_SECONDS  # parked, not retried at once


def test_a_write_meanwhile_that_kept_our_lease_gets_it_back_when_the_renewal_fails(world, monkeypatch):
    """A reconnect that keeps the refresh token keeps the lease too (and moves the revision): the renewal then fails,
    nothing was sent, and the lease is given back rather than left to expire into a false `refresh_in_doubt`."""
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    kms_calls_recorded(world, cid, monkeypatch, takes=1.5)
    slow_data_key = world.kms.generate_data_key

    def data_key_while_the_user_reconnects(**kwargs: Any) -> Any:
        world.items.update(cid, set={"display_name": "Reconnected"}, add={"revision": 1}, expect={})
        return slow_data_key(**kwargs)

    monkeypatch.setattr(world.kms, "generate_data_key", data_key_while_the_user_reconnects)
    world.provider.script(world.answer("2"))

    outcome = world.refresher.refresh(cid)

    assert outcome.result == "busy" and world.provider.calls == []
    stored = world.at(cid)
    assert stored.lease_owner is None and not stored.refresh_in_doubt and stored.display_name == "Reconnected"
