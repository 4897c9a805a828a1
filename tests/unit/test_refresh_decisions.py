"""What the refresher decides, on in-memory adapters only: no moto, no HTTP, time from a ManualClock.

Each test builds the use cases directly (ConnectionStore over a MemoryItemStore, CircuitBreakers, OutboxRelay
over a MemoryPublisher) with a scripted provider, and checks what a user of the service would notice: the
stored connection, the outcome returned, and the events published.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.adapters.kms import DataKeys, EnvelopeCipher
from oauth_keeper.domain.connection import ACTIVE, AT_RISK, NEEDS_REAUTH, Connection, Grant
from oauth_keeper.domain.errors import FailureKind, ProviderError
from oauth_keeper.domain.events import AT_RISK as AT_RISK_EVENT
from oauth_keeper.domain.events import CREATED, EXPIRING, RECOVERED
from oauth_keeper.domain.events import NEEDS_REAUTH as NEEDS_REAUTH_EVENT
from oauth_keeper.domain.providers import ProviderProfile, profile_for
from oauth_keeper.domain.timestamps import iso8601
from oauth_keeper.domain.tokens import ClientCredentials, TokenSet, UserProfile
from oauth_keeper.usecases.breaker import PROBE_INTERVAL, CircuitBreakers
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.outbox import OutboxRelay
from oauth_keeper.usecases.refresh import (
    BUSY,
    INACTIVE,
    LEASE_SECONDS,
    NEEDS_USER,
    NOT_DUE,
    PAUSED,
    REFRESHED,
    RETRYING,
    Refresher,
)

from local.memory import FakeKms, ManualClock, MemoryItemStore, MemoryPublisher, StaticCredentials, no_sleep

pytestmark = pytest.mark.unit

T0 = 1_800_000_000
DAY = 86_400
SWEEP = 300  # seconds: the sweep's look-ahead
WARNING = 14 * DAY  # Connection Expiring when the refresh token ends within this
OWNER = "owner-1"
SCOPES = ("user.info.basic", "video.list")
FIRST_DUE = 3600  # seconds after connecting that a seeded connection is due


# -- stand-ins -----------------------------------------------------------------------------------------------
class CeilingRng(random.Random):
    """Jitter and backoff at their ceiling, so every schedule in these tests is exact."""

    def uniform(self, a: float, b: float) -> float:
        return b

    def randint(self, a: int, b: int) -> int:
        return b


class Profiles:
    """The ProviderProfiles port: TikTok's real profile with this test's overrides (e.g. refresh_policy)."""

    def __init__(self, **overrides: str) -> None:
        self.overrides = dict(overrides)

    def profile(self, provider: str) -> ProviderProfile:
        return profile_for(provider, ("tiktok",), {"tiktok": self.overrides})


class RecordingCredentials:
    """StaticCredentials that remember whether each read asked to skip the cache (`fresh`)."""

    def __init__(self) -> None:
        self._static = StaticCredentials({"client_key": "ck", "client_secret": "cs"})
        self.fresh: list[bool] = []

    def credentials(self, profile: ProviderProfile, *, with_id: bool = True, with_secret: bool = True,
                    fresh: bool = False) -> ClientCredentials:
        self.fresh.append(fresh)
        return self._static.credentials(profile, with_id=with_id, with_secret=with_secret, fresh=fresh)


Answer = TokenSet | BaseException | Callable[[], "TokenSet | BaseException"]


class ScriptedProvider:
    """The ProviderClient port: each refresh takes the next scripted answer (a TokenSet, an exception to raise,
    or a callable giving either) and records the refresh token it was sent. Unscripted calls fail the test."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.calls: list[str] = []
        self.deadlines: list[float | None] = []

    def script(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def refresh(self, profile: ProviderProfile, creds: ClientCredentials, refresh_token: str, *,
                deadline: float | None = None) -> TokenSet:
        self.calls.append(refresh_token)
        self.deadlines.append(deadline)
        assert self.answers, "the provider was called but nothing was scripted"
        answer = self.answers.pop(0)
        if callable(answer):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def exchange_code(self, *args: Any, **kwargs: Any) -> TokenSet:
        raise AssertionError("the refresher never exchanges codes")

    def revoke(self, *args: Any, **kwargs: Any) -> str | None:
        raise AssertionError("the refresher never revokes")

    def fetch_user(self, *args: Any, **kwargs: Any) -> UserProfile:
        raise AssertionError("the refresher never fetches the user")


class WorkerDied(Exception):
    """The function died mid-request (timeout, out of memory): nothing after the provider call ran."""


def transient(code: str = "server_error", http_status: int | None = 503, *,
              maybe_processed: bool = False) -> ProviderError:
    """As the HTTP adapter raises it: `maybe_processed` when the request may have reached the provider."""
    return ProviderError("provider trouble", code=code, kind=FailureKind.TRANSIENT, http_status=http_status,
                         log_id="log-transient", maybe_processed=maybe_processed)


def invalid_grant() -> ProviderError:
    return ProviderError("refresh token refused", code="invalid_grant", kind=FailureKind.TERMINAL, http_status=400,
                         log_id="log-invalid-grant")


def invalid_client() -> ProviderError:
    return ProviderError("client refused", code="invalid_client", kind=FailureKind.OPERATOR, http_status=401,
                         log_id="log-invalid-client")


class World:
    """The refresher's ports, all in memory and sharing one table, one clock and one event bus."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.items = MemoryItemStore()
        self.kms = FakeKms()
        cipher = EnvelopeCipher(DataKeys(lambda: self.kms, "arn:memory", self.clock.now))
        self.store = ConnectionStore(self.items, cipher, due_shards=4)
        self.publisher = MemoryPublisher()
        self.outbox = OutboxRelay(self.store, self.publisher)
        self.profiles = Profiles(refresh_policy="eager")
        self.credentials = RecordingCredentials()
        self.provider = ScriptedProvider()
        self.refresher = self.worker()

    def worker(self) -> Refresher:
        """A refresher as another warm container holds one: its own lease identity and breaker cache."""
        return Refresher(connections=self.store, breakers=CircuitBreakers(self.items, self.clock.now),
                         profiles=self.profiles, credentials=self.credentials, provider=self.provider,
                         outbox=self.outbox, clock=self.clock, sweep_interval=SWEEP, expiry_warning=WARNING,
                         rng=CeilingRng())

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def answer(self, suffix: str, *, account: str = "acct-1", refresh_ends: int | None = None,
               scopes: tuple[str, ...] = ()) -> TokenSet:
        """The provider's answer to a refresh sent now: a 24 h access token and a rotated refresh token."""
        return TokenSet(access_token=f"at-{suffix}", refresh_token=f"rt-{suffix}", token_type="Bearer",
                        access_expires_at=self.now + DAY,
                        refresh_expires_at=refresh_ends if refresh_ends is not None else self.now + 365 * DAY,
                        scopes=scopes, account_id=account, issued_at=self.now)

    def connect(self, account: str = "acct-1", *, access_ttl: int = DAY, refresh_ttl: int = 365 * DAY,
                due_in: int = FIRST_DUE) -> str:
        """A connection as the callback stores it (its Created event already published, then forgotten)."""
        tokens = TokenSet(access_token=f"at-{account}", refresh_token=f"rt-{account}", token_type="Bearer",
                          access_expires_at=self.now + access_ttl, refresh_expires_at=self.now + refresh_ttl,
                          scopes=SCOPES, account_id=account, issued_at=self.now)
        grant = Grant(owner_id=OWNER, provider="tiktok", account_id=account, tokens=tokens,
                      scopes_requested=SCOPES, scopes_granted=SCOPES)
        saved = save_grant(self.store, grant, next_refresh_at=self.now + due_in, missing_scopes=[], now=self.now,
                           sleep=no_sleep)
        self.outbox.publish(saved.connection)
        assert self.types() == [CREATED]
        self.publisher.events.clear()
        return saved.connection.connection_id

    def at(self, connection_id: str) -> Connection:
        connection = self.store.get(connection_id)
        assert connection is not None
        return connection

    def tokens(self, connection_id: str) -> dict[str, Any]:
        return self.store.open_tokens(self.at(connection_id))

    def advance_to(self, moment: int) -> None:
        self.clock.advance(moment - self.clock.now())

    def types(self) -> list[str]:
        return [e["detail_type"] for e in self.publisher.events]

    def is_due_listed(self, connection_id: str, horizon: int) -> bool:
        return connection_id in self.store.due(self.store.shard_of(connection_id), horizon)


@pytest.fixture
def world() -> World:
    return World()


# -- 1. the refresher ------------------------------------------------------------------------------------------
def test_a_due_connection_is_refreshed_and_the_rotated_tokens_are_committed(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(world.answer("2"))

    outcome = world.refresher.refresh(cid)

    assert outcome.result == REFRESHED
    assert world.provider.calls == ["rt-acct-1"]
    stored = world.at(cid)
    assert world.tokens(cid) == {"access_token": "at-2", "refresh_token": "rt-2", "token_type": "Bearer"}
    assert stored.token_version == 2 and outcome.connection.token_version == 2
    assert stored.status == ACTIVE and stored.lease_owner is None and stored.failures == 0
    assert stored.access_expires_at == world.now + DAY
    assert world.now + SWEEP < stored.next_refresh_at < stored.access_expires_at  # planned ahead, not due now
    assert world.publisher.events == []  # a routine refresh tells nobody

    # The rotated refresh token is the one the next refresh sends (the old one is dead at TikTok).
    world.provider.script(world.answer("3"))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.provider.calls == ["rt-acct-1", "rt-2"]
    assert world.at(cid).token_version == 3


def test_a_connection_not_yet_due_is_left_alone_and_the_provider_is_not_called(world):
    cid = world.connect()
    before = world.items.get(cid)

    world.advance_to(T0 + FIRST_DUE - SWEEP - 1)  # due just beyond one sweep's look-ahead
    outcome = world.refresher.refresh(cid)

    assert outcome.result == NOT_DUE
    assert world.provider.calls == []
    assert world.items.get(cid) == before  # nothing written

    world.clock.advance(1)  # now due within the next sweep: refreshed ahead of time
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid).result == REFRESHED
    assert world.provider.calls == ["rt-acct-1"]


def test_a_forced_refresh_refreshes_a_connection_that_is_not_due(world):
    cid = world.connect()
    world.provider.script(world.answer("2"))

    outcome = world.refresher.refresh(cid, force=True)

    assert outcome.result == REFRESHED
    assert world.provider.calls == ["rt-acct-1"]
    assert world.tokens(cid)["refresh_token"] == "rt-2"
    assert world.at(cid).token_version == 2


def test_a_refresh_token_past_its_end_needs_reauth_without_asking_the_provider(world):
    cid = world.connect(refresh_ttl=FIRST_DUE, due_in=FIRST_DUE)
    world.advance_to(T0 + FIRST_DUE)

    outcome = world.refresher.refresh(cid)

    assert (outcome.result, outcome.reason) == (NEEDS_USER, "refresh_token_expired")
    assert world.provider.calls == []
    assert world.at(cid).status == NEEDS_REAUTH
    assert [e["detail"]["reason"] for e in world.publisher.of_type(NEEDS_REAUTH_EVENT)] == ["refresh_token_expired"]


# -- 2. lease / single flight ------------------------------------------------------------------------------------
def test_while_another_refresher_holds_the_lease_a_second_one_is_busy_and_does_not_call_the_provider(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    sibling = world.worker()
    sibling_outcomes = []

    def answer_while_the_sibling_tries():
        sibling_outcomes.append(sibling.refresh(cid, force=True))  # the token route, during our provider call
        return world.answer("2")

    world.provider.script(answer_while_the_sibling_tries)
    outcome = world.refresher.refresh(cid)

    assert [o.result for o in sibling_outcomes] == [BUSY]
    assert world.provider.calls == ["rt-acct-1"]  # one refresh in flight, ever
    assert outcome.result == REFRESHED
    assert world.tokens(cid)["refresh_token"] == "rt-2" and world.at(cid).token_version == 2


def test_a_lease_that_expired_without_a_commit_makes_a_later_invalid_grant_rotation_lost(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(WorkerDied("timed out after the request was sent"))
    with pytest.raises(WorkerDied):
        world.refresher.refresh(cid)
    assert world.at(cid).lease_owner is not None  # the dead worker's lease is still on the item

    assert world.worker().refresh(cid, force=True).result == BUSY  # until it expires, nobody else tries
    assert world.provider.calls == ["rt-acct-1"]

    world.clock.advance(LEASE_SECONDS)
    in_doubt_during_call = []

    def refused():
        in_doubt_during_call.append(world.at(cid).refresh_in_doubt)
        return invalid_grant()

    world.provider.script(refused)
    outcome = world.worker().refresh(cid)

    assert in_doubt_during_call == [True]  # marked in doubt before the provider was asked again
    assert (outcome.result, outcome.reason) == (NEEDS_USER, "rotation_lost")
    stored = world.at(cid)
    assert (stored.status, stored.status_reason) == (NEEDS_REAUTH, "rotation_lost")
    assert stored.lease_owner is None
    events = world.publisher.of_type(NEEDS_REAUTH_EVENT)
    assert [e["detail"]["reason"] for e in events] == ["rotation_lost"]


def test_a_successful_refresh_after_a_lost_lease_saves_the_tokens_and_clears_the_doubt(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(WorkerDied("out of memory"))
    with pytest.raises(WorkerDied):
        world.refresher.refresh(cid)
    world.clock.advance(LEASE_SECONDS)
    world.provider.script(world.answer("2"))

    outcome = world.worker().refresh(cid)

    assert outcome.result == REFRESHED
    stored = world.at(cid)
    assert not stored.refresh_in_doubt and stored.lease_owner is None
    assert world.tokens(cid)["refresh_token"] == "rt-2"


# -- 3. classification -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("error", "reason"), [
    (transient("server_error", 503), "provider_unavailable"),
    (transient("temporarily_unavailable", None), "provider_unavailable"),
    (transient("rate_limit_exceeded", 429), "rate_limited"),
    (transient("access_token_limit", 429), "rate_limited"),  # HTTP 429, whatever the body calls it
], ids=["5xx", "temporarily_unavailable", "rate_limit_exceeded", "http_429"])
def test_a_transient_failure_schedules_a_retry_and_keeps_a_connection_with_a_valid_token_active(world, error, reason):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(error)

    outcome = world.refresher.refresh(cid)

    assert (outcome.result, outcome.reason) == (RETRYING, reason)
    stored = world.at(cid)
    assert (stored.status, stored.status_reason) == (ACTIVE, None)
    assert stored.failures == 1
    assert stored.last_refresh_reason == reason
    assert stored.next_refresh_at == world.now + 30  # the first backoff step (jitter at its ceiling)
    assert world.is_due_listed(cid, world.now + 30)
    assert stored.lease_owner is None and not stored.refresh_in_doubt
    assert world.tokens(cid)["refresh_token"] == "rt-acct-1" and stored.token_version == 1
    assert world.publisher.events == []


def test_three_transient_failures_put_a_connection_at_risk_once_and_the_next_success_recovers_it(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    statuses, delays = [], []
    for _ in range(4):
        world.advance_to(world.at(cid).next_refresh_at)
        world.provider.script(transient())
        assert world.refresher.refresh(cid).result == RETRYING
        stored = world.at(cid)
        statuses.append(stored.status)
        delays.append(stored.next_refresh_at - world.now)

    assert statuses == [ACTIVE, ACTIVE, AT_RISK, AT_RISK]
    assert delays == [30, 60, 120, 240]  # exponential backoff
    assert world.at(cid).failures == 4
    at_risk = world.publisher.of_type(AT_RISK_EVENT)
    assert len(at_risk) == 1
    assert at_risk[0]["detail"]["status"] == "at_risk"
    assert at_risk[0]["detail"]["reason"] == "provider_unavailable"
    assert at_risk[0]["detail"]["retryable"] is True

    world.advance_to(world.at(cid).next_refresh_at)
    world.provider.script(world.answer("2"))
    assert world.refresher.refresh(cid).result == REFRESHED

    stored = world.at(cid)
    assert (stored.status, stored.status_reason, stored.failures) == (ACTIVE, None, 0)
    assert world.types() == [AT_RISK_EVENT, RECOVERED]
    recovered = world.publisher.of_type(RECOVERED)[0]["detail"]
    assert (recovered["status"], recovered["reason"]) == ("active", "refreshed")


def test_invalid_grant_needs_reauth_leaves_the_due_index_and_sends_one_event(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(invalid_grant())

    outcome = world.refresher.refresh(cid)

    assert (outcome.result, outcome.reason) == (NEEDS_USER, "invalid_grant")
    stored = world.at(cid)
    assert (stored.status, stored.status_reason) == (NEEDS_REAUTH, "invalid_grant")
    assert stored.next_refresh_at is None
    assert not world.is_due_listed(cid, world.now + 10 * 365 * DAY)
    assert stored.lease_owner is None
    events = world.publisher.of_type(NEEDS_REAUTH_EVENT)
    assert len(events) == 1 and world.types() == [NEEDS_REAUTH_EVENT]
    assert events[0]["detail"]["reason"] == "invalid_grant"
    assert events[0]["detail"]["status"] == "needs_reauth"
    assert events[0]["detail"]["provider_log_id"] == "log-invalid-grant"

    # Nothing more is tried, and nothing more is said, until the user reconnects.
    again = world.refresher.refresh(cid, force=True)
    assert again.result == INACTIVE
    assert world.provider.calls == ["rt-acct-1"]
    assert world.types() == [NEEDS_REAUTH_EVENT]


def test_a_timeout_marks_the_refresh_in_doubt_so_a_later_invalid_grant_is_rotation_lost(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(transient("timeout", None, maybe_processed=True))

    outcome = world.refresher.refresh(cid)

    assert outcome.result == RETRYING
    stored = world.at(cid)
    assert stored.refresh_in_doubt
    assert stored.status == ACTIVE

    world.advance_to(stored.next_refresh_at)
    world.provider.script(invalid_grant())
    outcome = world.refresher.refresh(cid)
    assert (outcome.result, outcome.reason) == (NEEDS_USER, "rotation_lost")
    assert world.at(cid).status_reason == "rotation_lost"


# -- 4. operator errors and the provider-wide breaker -------------------------------------------------------------
def test_invalid_client_pauses_every_connection_of_the_provider_and_never_blames_the_user(world):
    a, b = world.connect("acct-a"), world.connect("acct-b")
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(invalid_client())

    tripped = world.refresher.refresh(a)

    assert (tripped.result, tripped.reason) == (PAUSED, "provider_config")
    stored_a = world.at(a)
    assert (stored_a.status, stored_a.status_reason) == (ACTIVE, None)  # not needs_reauth: our fault, not theirs
    assert stored_a.lease_owner is None
    assert stored_a.last_refresh_outcome == "operator_error"
    assert world.tokens(a)["refresh_token"] == "rt-acct-a"

    # Another worker container sees the same breaker: B is paused without a provider call.
    paused = world.worker().refresh(b)
    assert (paused.result, paused.reason) == (PAUSED, "provider_config")
    assert world.provider.calls == ["rt-acct-a"]
    assert world.at(b).status == ACTIVE
    assert world.publisher.of_type(NEEDS_REAUTH_EVENT) == []
    assert world.publisher.events == []  # the access tokens are still valid: nobody is at risk yet

    # Still open a second before the probe interval ends, even when forced.
    world.clock.advance(PROBE_INTERVAL - 1)
    assert world.worker().refresh(a, force=True).result == PAUSED
    assert world.provider.calls == ["rt-acct-a"]


def test_after_the_probe_interval_one_probe_reads_fresh_credentials_and_its_success_closes_the_breaker(world):
    a, b = world.connect("acct-a"), world.connect("acct-b")
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(invalid_client())
    assert world.refresher.refresh(a).result == PAUSED
    assert world.credentials.fresh == [False]

    # Another container looks a second before probe time and remembers the breaker as it was then.
    sibling = world.worker()
    world.clock.advance(PROBE_INTERVAL - 1)
    assert sibling.refresh(a, force=True).result == PAUSED
    world.clock.advance(1)
    during_probe = []

    def probe_succeeds():
        # Probe time for the sibling too, but the probe is already claimed: only one probe at a time.
        during_probe.append(sibling.refresh(a, force=True))
        return world.answer("b2", account="acct-b")

    world.provider.script(probe_succeeds)
    probe = world.refresher.refresh(b)

    assert probe.result == REFRESHED
    assert [o.result for o in during_probe] == [PAUSED]
    assert world.credentials.fresh == [False, True]  # the probe skipped the credentials cache
    assert world.tokens(b)["refresh_token"] == "rt-b2"

    # The breaker is closed: A refreshes normally, with cached credentials again.
    world.provider.script(world.answer("a2", account="acct-a"))
    assert world.worker().refresh(a, force=True).result == REFRESHED
    assert world.provider.calls == ["rt-acct-a", "rt-acct-b", "rt-acct-a"]
    assert world.credentials.fresh == [False, True, False]
    assert world.tokens(a)["refresh_token"] == "rt-a2"
    assert world.at(a).status == ACTIVE and world.at(b).status == ACTIVE


# -- 5. refresh policy ------------------------------------------------------------------------------------------
def test_under_eager_a_transient_failure_after_the_access_token_expired_is_at_risk_at_once(world):
    cid = world.connect(access_ttl=2 * FIRST_DUE)
    world.advance_to(T0 + 2 * FIRST_DUE + 60)  # the refresh window was missed: the access token has ended
    world.provider.script(transient())

    outcome = world.refresher.refresh(cid)

    assert outcome.result == RETRYING
    stored = world.at(cid)
    assert (stored.status, stored.status_reason, stored.failures) == (AT_RISK, "provider_unavailable", 1)
    assert stored.next_refresh_at <= world.now + SWEEP  # retried at least every sweep
    assert len(world.publisher.of_type(AT_RISK_EVENT)) == 1


def test_under_on_demand_an_expired_access_token_is_normal_and_only_repeated_failures_are_at_risk(world):
    world.profiles.overrides["refresh_policy"] = "on_demand"
    cid = world.connect(access_ttl=2 * FIRST_DUE)
    world.advance_to(T0 + 2 * FIRST_DUE + 60)

    statuses = []
    for _ in range(3):
        world.advance_to(max(world.now, world.at(cid).next_refresh_at))
        world.provider.script(transient())
        assert world.refresher.refresh(cid).result == RETRYING
        statuses.append(world.at(cid).status)

    assert statuses == [ACTIVE, ACTIVE, AT_RISK]
    assert len(world.publisher.of_type(AT_RISK_EVENT)) == 1


# -- 6. the refresh token's end approaching -------------------------------------------------------------------
def test_connection_expiring_is_sent_once_when_refreshing_no_longer_extends_the_grant(world):
    cid = world.connect(refresh_ttl=10 * DAY)  # ends within the 14-day warning window
    end = T0 + 10 * DAY
    world.advance_to(T0 + FIRST_DUE)
    world.provider.script(world.answer("2", refresh_ends=end))  # rotated, but the grant's end stays

    assert world.refresher.refresh(cid).result == REFRESHED

    expiring = world.publisher.of_type(EXPIRING)
    assert len(expiring) == 1
    assert expiring[0]["detail"]["reason"] == "refresh_token_expiring"
    assert expiring[0]["detail"]["status"] == "active"
    assert expiring[0]["detail"]["refresh_expires_at"] == iso8601(end)
    assert world.at(cid).expiring_notified

    world.advance_to(world.at(cid).next_refresh_at)
    world.provider.script(world.answer("3", refresh_ends=end))
    assert world.refresher.refresh(cid).result == REFRESHED
    assert world.tokens(cid)["refresh_token"] == "rt-3"
    assert world.types() == [EXPIRING]  # not again

    # Re-consent (a refresh that extends the grant) re-arms the warning.
    world.provider.script(world.answer("4"))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert not world.at(cid).expiring_notified
    assert world.types() == [EXPIRING]


# -- 7. unreadable tokens ----------------------------------------------------------------------------------------
def _flip_ciphertext(world: World, cid: str) -> bytes:
    blob = bytearray(world.items.get(cid)["tokens"])
    blob[-1] ^= 0x01
    return bytes(blob)


def _flip_wrapped_key(world: World, cid: str) -> bytes:
    blob = bytearray(world.items.get(cid)["tokens"])
    blob[3] ^= 0x01  # the first byte of the KMS-wrapped data key
    return bytes(blob)


def _copied_from_another_connection(world: World, cid: str) -> bytes:
    other = world.connect("acct-other")
    return world.items.get(other)["tokens"]


@pytest.mark.parametrize("damage", [_flip_ciphertext, _flip_wrapped_key, _copied_from_another_connection],
                         ids=["ciphertext", "wrapped_key", "moved"])
def test_tokens_that_fail_authentication_need_reauth_as_token_unreadable(world, damage):
    cid = world.connect()
    world.items.update(cid, set={"tokens": damage(world, cid)}, expect={})
    world.advance_to(T0 + FIRST_DUE)

    outcome = world.refresher.refresh(cid)

    assert (outcome.result, outcome.reason) == (NEEDS_USER, "token_unreadable")
    assert world.provider.calls == []  # never sent anywhere
    stored = world.at(cid)
    assert (stored.status, stored.status_reason) == (NEEDS_REAUTH, "token_unreadable")
    assert stored.next_refresh_at is None and stored.lease_owner is None
    assert [e["detail"]["reason"] for e in world.publisher.of_type(NEEDS_REAUTH_EVENT)] == ["token_unreadable"]


# -- 8. the outbox ---------------------------------------------------------------------------------------------
def test_an_event_the_bus_refused_stays_in_the_outbox_and_the_next_refresh_call_publishes_it(world):
    cid = world.connect()
    world.advance_to(T0 + FIRST_DUE)
    world.publisher.down = True
    world.provider.script(invalid_grant())

    assert world.refresher.refresh(cid).result == NEEDS_USER

    assert world.publisher.events == []
    waiting = list(world.at(cid).outbox.values())
    assert [e["detail_type"] for e in waiting] == [NEEDS_REAUTH_EVENT]
    assert cid in world.store.with_pending_events(world.store.shard_of(cid))

    world.publisher.down = False
    world.clock.advance(SWEEP)
    assert world.refresher.refresh(cid).result == INACTIVE

    assert [e["event_id"] for e in world.publisher.events] == [waiting[0]["event_id"]]
    assert world.at(cid).outbox == {}
    assert cid not in world.store.with_pending_events(world.store.shard_of(cid))
    assert world.provider.calls == ["rt-acct-1"]

    world.refresher.refresh(cid)
    assert len(world.publisher.events) == 1  # published once


# -- found while writing these tests: the connection a refresh returned held its scopes as one joined string, so
# the token route answered a refresh-then-read with `"scopes": ["u", "s", "e", ...]` ------------------------------
def test_the_connection_a_refresh_returns_keeps_its_granted_scopes_as_scopes(world):
    cid = world.connect()
    world.provider.script(world.answer("2", scopes=SCOPES))

    outcome = world.refresher.refresh(cid, force=True)

    assert world.at(cid).scopes_granted == SCOPES  # stored correctly
    assert outcome.connection.scopes_granted == SCOPES


def test_a_token_read_that_refreshes_first_lists_the_granted_scopes(world):
    from oauth_keeper.usecases.tokens import TokenAccess

    from local.memory import no_sleep

    cid = world.connect()
    world.provider.script(world.answer("2", scopes=SCOPES))
    world.clock.advance(DAY)  # the access token has ended: the read refreshes first
    answer = TokenAccess(connections=world.store, refresher=world.refresher, profiles=world.profiles,
                         clock=world.clock, sleep=no_sleep).token_for(cid, None)
    assert answer["access_token"] == "at-2" and answer["scopes"] == list(SCOPES)
