"""What happens around the refresh lease (usecases/refresh.py): the data key for the commit is made ready before the
lease is claimed, so no KMS call happens under it; and the breaker is looked at again once the lease is held, so a
breaker tripped meanwhile stops the provider call, pauses the connection and releases the lease.

On the in-memory refresher of tests/unit/test_refresh_decisions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from oauth_keeper.domain.connection import Connection
from oauth_keeper.domain.deadlines import LEASE_SECONDS
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

    def claim(self, connection: Connection, changes: dict[str, Any], **kwargs: Any):
        self.log.append("claim" if changes.get("lease_owner") else "claim without a lease")
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


# -- b: the data key is ready before the lease -------------------------------------------------------------------
def test_the_data_key_for_the_commit_is_made_ready_before_the_lease_is_claimed(world):
    cid = world.connect()
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.store.log == ["prepare_seal", "claim", "apply"]


def test_no_kms_call_happens_while_the_lease_is_held(world, monkeypatch):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)  # the cached data key (300 s) and unwrapped key (3600 s) are both stale
    calls: list[tuple[str, bool]] = []

    def recorded(name: str, kms_call: Callable[..., Any]) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            calls.append((name, world.items.get(cid).get("lease_owner") is not None))
            return kms_call(**kwargs)
        return call

    monkeypatch.setattr(world.kms, "generate_data_key", recorded("GenerateDataKey", world.kms.generate_data_key))
    monkeypatch.setattr(world.kms, "decrypt", recorded("Decrypt", world.kms.decrypt))
    world.provider.script(world.answer("2"))

    assert world.refresher.refresh(cid).result == REFRESHED

    assert calls == [("Decrypt", False), ("GenerateDataKey", False)]  # open the tokens, then the data key


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
    assert world.store.log == ["prepare_seal", "claim", "apply"]  # the lease was taken, then given back
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
    assert world.store.log == ["prepare_seal", "claim", "apply"]
    stored = world.at(cid)
    assert stored.lease_owner is None and stored.lease_expires_at is None
    assert stored.next_refresh_at > world.now + LEASE_SECONDS  # parked, not retried at once
