"""Attacks a reviewer played against the refresher and the callback's store (issue 11), kept as regressions:
a reconnect never forgets a possible lost rotation, another account's tokens are never kept, a strict-rotation
answer without a refresh token leaves the old one in doubt, unreadable stored tokens never break a reconnect."""

from __future__ import annotations

import pytest
from oauth_keeper.domain.connection import Grant
from oauth_keeper.domain.tokens import TokenSet
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.refresh import REFRESHED, RETRYING

from local.memory import no_sleep
from tests.unit.test_refresh_decisions import OWNER, SCOPES, World, invalid_grant, transient

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def reconnect_without_refresh_token(world, account="acct-1"):
    tokens = TokenSet(access_token="at-re", refresh_token=None, token_type="Bearer",
                      access_expires_at=world.now + 7200, refresh_expires_at=None, scopes=SCOPES,
                      account_id=account, issued_at=world.now)
    grant = Grant(owner_id=OWNER, provider="tiktok", account_id=account, tokens=tokens,
                  scopes_requested=SCOPES, scopes_granted=SCOPES)
    return save_grant(world.store, grant, next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now,
                      sleep=no_sleep).connection


def test_A_reconnect_without_refresh_token_forgets_a_possible_lost_rotation(world):
    cid = world.connect()
    # a refresh that timed out after sending: TikTok may have rotated rt-acct-1 away
    world.provider.script(transient("timeout", None, maybe_processed=True))
    assert world.refresher.refresh(cid, force=True).result == RETRYING
    assert world.at(cid).refresh_in_doubt
    # the user reconnects; TikTok's exchange answer carries no refresh token: the stored one is kept
    c = reconnect_without_refresh_token(world)
    _ = ("after reconnect: status", c.status, "in_doubt", world.at(cid).refresh_in_doubt,
          "rt", world.tokens(cid)["refresh_token"])
    # the kept (rotated-away) refresh token is refused
    world.provider.script(invalid_grant())
    out = world.refresher.refresh(cid, force=True)
    _ = ("outcome", out.result, out.reason)
    assert out.reason == "rotation_lost", out.reason


def test_B_refresh_answer_for_another_account_is_committed(world):
    cid = world.connect("acct-1")
    world.provider.script(world.answer("2", account="acct-OTHER"))
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, world.at(cid).account_id, world.tokens(cid))
    assert out.result != REFRESHED, "tokens of acct-OTHER stored under acct-1's connection"


def test_C_refresh_answer_without_refresh_token_under_strict_rotation(world):
    cid = world.connect()
    a = world.answer("2")
    from dataclasses import replace
    world.provider.script(replace(a, refresh_token=None, refresh_expires_at=None))
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, world.tokens(cid)["refresh_token"], world.at(cid).refresh_in_doubt)
    world.provider.script(invalid_grant())
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, out.reason)
    assert out.reason == "rotation_lost", out.reason


def test_E_reconnect_without_refresh_token_over_unreadable_tokens(world):
    cid = world.connect()
    blob = bytearray(world.items.get(cid)["tokens"])
    blob[-1] ^= 1
    world.items.update(cid, set={"tokens": bytes(blob), "status": "needs_reauth",
                                 "status_reason": "token_unreadable"}, expect={})
    from oauth_keeper.domain.lifecycle import NoUsableRefreshToken
    try:
        reconnect_without_refresh_token(world)
    except NoUsableRefreshToken:
        return  # the callback answers incomplete_grant (retryable)
    except Exception as exc:  # the callback's generic handler: a 500 page after the code was spent
        pytest.fail(f"save_grant raised {type(exc).__name__}: {exc}")




def test_A2_a_reconnect_without_refresh_token_during_a_refresh_keeps_the_rotated_one(world):
    """Found in review: the reconnect landed while a refresh was at the provider and kept the stored refresh
    token, which the provider was rotating away that very moment; the refresh then saw another token version,
    dropped its answer (superseded), and the connection was left holding a dead refresh token, not even in
    doubt. The answer's refresh token is the only live one: it is kept."""
    cid = world.connect()

    def reconnect_meanwhile():
        reconnect_without_refresh_token(world)
        return world.answer("2")

    world.provider.script(reconnect_meanwhile)
    world.refresher.refresh(cid, force=True)
    assert world.tokens(cid)["refresh_token"] == "rt-2"
    stored = world.at(cid)
    assert stored.status == "active" and stored.lease_owner is None

    world.provider.script(world.answer("3"))  # the next refresh sends the live token and succeeds
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.provider.calls == ["rt-acct-1", "rt-2"]


def test_A2_a_reconnect_with_its_own_refresh_token_during_a_refresh_wins(world):
    """The reconnect brought a new grant and its own refresh token: the refresh's answer must not overwrite it."""
    cid = world.connect()

    def reconnect_meanwhile():
        tokens = TokenSet(access_token="at-new", refresh_token="rt-new", token_type="Bearer",
                          access_expires_at=world.now + 7200, refresh_expires_at=world.now + 365 * 86400,
                          scopes=SCOPES, account_id="acct-1", issued_at=world.now)
        save_grant(world.store, Grant(owner_id=OWNER, provider="tiktok", account_id="acct-1", tokens=tokens,
                                      scopes_requested=SCOPES, scopes_granted=SCOPES),
                   next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now, sleep=no_sleep)
        return world.answer("2")

    world.provider.script(reconnect_meanwhile)
    assert world.refresher.refresh(cid, force=True).result == "superseded"
    assert world.tokens(cid)["refresh_token"] == "rt-new"


def test_a_short_refresh_end_is_trusted_where_it_is_the_end_already_known(world):
    """A provider that does not extend refresh tokens reports their remaining life, which falls below the
    profile's plausible minimum in the last day: that matches the known end, so it is the truth. A short end
    that matches nothing is an absurd value and never ends a connection early."""
    from dataclasses import replace

    cid = world.connect(refresh_ttl=20 * 86400, access_ttl=3600, due_in=1800)
    end = world.at(cid).refresh_expires_at
    world.advance_to(end - 3 * 3600)
    world.provider.script(replace(world.answer("2"), refresh_expires_at=world.now + 180 * 86400,
                                  short_refresh_expires_at=end))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.at(cid).refresh_expires_at == end

    world.provider.script(replace(world.answer("3"), refresh_expires_at=world.now + 180 * 86400,
                                  short_refresh_expires_at=world.now + 600))  # matches nothing known
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.at(cid).refresh_expires_at == world.now + 180 * 86400


def test_A2_a_reconnect_that_keeps_a_refresh_token_under_a_live_lease_marks_it_in_doubt(world):
    """If the refresh holding the lease then dies, the provider may have rotated the kept token: a later
    invalid_grant must read as rotation_lost, not as the user's revocation."""
    cid = world.connect()
    world.store.apply(world.at(cid), {"lease_owner": "a-live-refresh", "lease_expires_at": world.now + 20})
    assert reconnect_without_refresh_token(world).refresh_in_doubt


def test_a_probe_goes_to_a_connection_of_its_own_provider_when_parking_ranges_overlap(world):
    """Found in review: the due index holds keys only, so a provider's probe took the first connection parked
    in its range, which could be another provider's (its episode parks in an overlapping range): the open
    breaker then never got its probe and stayed open."""
    from oauth_keeper.usecases.breaker import Cause, CircuitBreakers
    from oauth_keeper.usecases.sweep import Sweep

    from local.memory import ListQueue

    breakers = CircuitBreakers(world.items, world.clock.now)
    ours = world.connect("acct-ours")
    theirs = []
    for n in range(3):  # another provider's connections (the ids are hashes: nothing tells them apart)
        tokens = TokenSet(access_token=f"at-o{n}", refresh_token=f"rt-o{n}", token_type="Bearer",
                          access_expires_at=world.now + 7200, refresh_expires_at=world.now + 365 * 86400,
                          scopes=SCOPES, account_id=f"other-{n}", issued_at=world.now)
        saved = save_grant(world.store, Grant(owner_id=OWNER, provider="acme", account_id=f"other-{n}",
                                              tokens=tokens, scopes_requested=SCOPES, scopes_granted=SCOPES),
                           next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now, sleep=no_sleep)
        theirs.append(world.outbox.publish(saved.connection).connection_id)
    breakers.trip("acme", "server_error", cause=Cause.OUTAGE)
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)  # same moment: the very same parking range
    base = breakers.read("tiktok").park_base
    for n, cid in enumerate(theirs):  # parked earliest in the range, so read first
        world.store.apply(world.at(cid), world.store.schedule_attributes(cid, base + n))
    world.store.apply(world.at(ours), world.store.schedule_attributes(ours, base + 10))
    world.clock.advance(120)  # both breakers wait for a probe

    queue = ListQueue()
    Sweep(world.store, queue, world.clock, 300, breakers=breakers, providers=("tiktok",)).run()
    assert queue.messages == [ours] and queue.forced == [True]


@pytest.mark.parametrize(("failure", "metric"), [
    ("outage", "ProviderOutage"), ("rate_limited", "ProviderRateLimited"), ("operator", "CircuitBreakerOpen")])
def test_only_refused_credentials_raise_the_alarm_that_asks_the_operator_to_fix_them(world, failure, metric):
    """CircuitBreakerAlarm says "fix the SSM client secret": an outage or a rate limit must not page for that."""
    from oauth_keeper.domain.errors import FailureKind, ProviderError
    from oauth_keeper.observability import metrics

    from tests.unit.test_refresh_decisions import invalid_client

    metrics.provider.metric_set.clear()
    cids = [world.connect(f"acct-{n}") for n in range(10)]
    for cid in cids:
        if failure == "outage":
            world.provider.script(transient())
        elif failure == "rate_limited":
            world.provider.script(ProviderError("slow down", code="rate_limit_exceeded", kind=FailureKind.TRANSIENT,
                                                http_status=429, retry_after=120))
        else:
            world.provider.script(invalid_client())
        world.refresher.refresh(cid, force=True)
        if world.refresher._breakers.read("tiktok").state == "open":  # noqa: SLF001
            break
    recorded = set(metrics.provider.metric_set)
    metrics.provider.metric_set.clear()
    assert metric in recorded
    assert ("CircuitBreakerOpen" in recorded) is (failure == "operator")


# -- found by the second review ------------------------------------------------------------------------------------
def test_a_reconnect_keeping_the_refresh_token_keeps_the_lease_so_no_sibling_sends_it_again(world):
    """The reconnect cleared the live lease: a sibling (the force-refresh route) then sent the refresh token the
    first refresh was spending, TikTok refused it (rotated), and the user was told to reconnect."""
    from oauth_keeper.domain.events import NEEDS_REAUTH

    cid = world.connect()
    sibling = {}

    def reconnect_then_sibling():
        reconnect_without_refresh_token(world)
        sibling["outcome"] = world.worker().refresh(cid, force=True)
        return world.answer("2")

    world.provider.script(reconnect_then_sibling)
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert sibling["outcome"].result == "busy"
    assert world.provider.calls == ["rt-acct-1"]
    assert NEEDS_REAUTH not in world.types() and world.tokens(cid)["refresh_token"] == "rt-2"


def test_a_commit_over_a_reconnect_opens_no_token_under_the_lease(world):
    """Telling whether the reconnect kept the refresh token we spent must not cost a KMS call after the answer:
    the lease is derived from three AWS calls after it."""
    from oauth_keeper.adapters.connections import ConnectionStore
    from oauth_keeper.adapters.kms import DataKeys, EnvelopeCipher

    cid = world.connect()
    callback_store = ConnectionStore(world.items, EnvelopeCipher(DataKeys(lambda: world.kms, "arn:memory",
                                                                           world.clock.now)), due_shards=4)
    decrypts_under_lease = []
    decrypt = world.kms.decrypt

    def recording_decrypt(**request):
        decrypts_under_lease.append(world.items.get(cid).get("lease_owner") is not None)
        return decrypt(**request)

    def reconnect_meanwhile():  # in another container, with data keys of its own
        tokens = TokenSet(access_token="at-re", refresh_token=None, token_type="Bearer",
                          access_expires_at=world.now + 7200, refresh_expires_at=None, scopes=SCOPES,
                          account_id="acct-1", issued_at=world.now)
        save_grant(callback_store, Grant(owner_id=OWNER, provider="tiktok", account_id="acct-1", tokens=tokens,
                                         scopes_requested=SCOPES, scopes_granted=SCOPES),
                   next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now, sleep=no_sleep)
        world.kms.decrypt = recording_decrypt
        return world.answer("2")

    world.provider.script(reconnect_meanwhile)
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert True not in decrypts_under_lease


def test_a_failing_look_at_parked_connections_never_stops_the_due_ones(world):
    from oauth_keeper.usecases.breaker import Cause, CircuitBreakers
    from oauth_keeper.usecases.sweep import Sweep

    from local.memory import ListQueue

    due = world.connect("acct-due", due_in=60)
    parked = world.connect("acct-parked")
    breakers = CircuitBreakers(world.items, world.clock.now)
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)
    world.store.apply(world.at(parked), world.store.schedule_attributes(parked, breakers.read("tiktok").park_base))
    world.clock.advance(61)

    def denied(connection_id):
        raise RuntimeError("AccessDeniedException")

    world.store.provider_of = denied  # type: ignore[method-assign]
    queue = ListQueue()
    Sweep(world.store, queue, world.clock, 300, breakers=breakers, providers=("tiktok",)).run()
    assert due in queue.messages


def test_a_probe_is_found_behind_many_connections_another_provider_parked(world):
    from oauth_keeper.usecases.breaker import Cause, CircuitBreakers
    from oauth_keeper.usecases.sweep import Sweep

    from local.memory import ListQueue

    breakers = CircuitBreakers(world.items, world.clock.now)
    ours = world.connect("acct-ours")
    breakers.trip("acme", "server_error", cause=Cause.OUTAGE)
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)
    base = breakers.read("tiktok").park_base
    for n in range(60):
        tokens = TokenSet(access_token=f"at-o{n}", refresh_token=f"rt-o{n}", token_type="Bearer",
                          access_expires_at=world.now + 7200, refresh_expires_at=world.now + 365 * 86400,
                          scopes=SCOPES, account_id=f"other-{n}", issued_at=world.now)
        saved = save_grant(world.store, Grant(owner_id=OWNER, provider="acme", account_id=f"other-{n}",
                                              tokens=tokens, scopes_requested=SCOPES, scopes_granted=SCOPES),
                           next_refresh_at=base + n, missing_scopes=[], now=world.now, sleep=no_sleep)
        world.outbox.publish(saved.connection)
    world.store.apply(world.at(ours), world.store.schedule_attributes(ours, base + 100))
    world.clock.advance(120)
    queue = ListQueue()
    Sweep(world.store, queue, world.clock, 300, breakers=breakers, providers=("tiktok",)).run()
    assert queue.messages == [ours]


def test_expiring_is_sent_once_when_the_reported_end_differs_from_the_known_one_by_a_little(world):
    from dataclasses import replace

    from oauth_keeper.domain.events import EXPIRING

    cid = world.connect(refresh_ttl=20 * 86400, access_ttl=3600, due_in=1800)
    end = world.at(cid).refresh_expires_at
    world.advance_to(end - 10 * 86400)  # inside the 14-day window, not extended: Expiring, once
    world.provider.script(replace(world.answer("2"), refresh_expires_at=end))
    assert world.refresher.refresh(cid, force=True).result == REFRESHED
    for hours_left, skew in ((5, 120), (3, 100)):  # its last day: the remaining life, a little off
        world.advance_to(end - hours_left * 3600)
        world.provider.script(replace(world.answer(f"{hours_left}"), refresh_expires_at=world.now + 180 * 86400,
                                      short_refresh_expires_at=end + skew))
        assert world.refresher.refresh(cid, force=True).result == REFRESHED
    assert world.types().count(EXPIRING) == 1 and world.at(cid).refresh_expires_at == end


def test_a_forced_refresh_with_no_time_to_call_the_provider_says_so(world):
    from oauth_keeper.usecases.tokens import TokenAccess

    cid = world.connect()
    access = TokenAccess(connections=world.store, refresher=world.refresher, profiles=world.profiles,
                         clock=world.clock, sleep=no_sleep)
    answer = access.force_refresh(cid, deadline=world.clock.now() + 15)
    assert world.provider.calls == [] and answer["result"] == "not_started"


def test_a_probe_candidate_that_ended_is_forgotten_so_the_provider_gets_probed_again(world):
    """Found in review: the remembered candidate was disconnected; its probes never reached TikTok, so the
    breaker stayed open and every parked connection waited out the parking period."""
    from oauth_keeper.usecases.breaker import Cause, CircuitBreakers

    breakers = CircuitBreakers(world.items, world.clock.now)
    ended, parked = world.connect("acct-ended"), world.connect("acct-parked")
    breakers.trip("tiktok", "server_error", cause=Cause.OUTAGE)
    breakers.remember_probe("tiktok", ended)
    world.store.apply(world.at(ended), {"status": "disconnected"})
    world.clock.advance(10)
    world.refresher.refresh(ended, force=True)  # the sweep's probe reaches an ended connection
    world.clock.advance(10)
    assert breakers.read("tiktok").probe_candidate is None
    breakers.remember_probe("tiktok", parked)
    assert breakers.read("tiktok").probe_candidate == parked


@pytest.mark.parametrize(("value", "lifetime"), [(0, 0), (-5, 0), (0.5, 0), (1799.5, 1799)])
def test_an_access_lifetime_is_never_made_longer_than_reported(value, lifetime):
    from oauth_keeper.domain.protocol import parse_token_response
    from oauth_keeper.domain.providers import profile_for

    tiktok = profile_for("tiktok", ("tiktok",), {})
    tokens = parse_token_response(tiktok, {"access_token": "a", "expires_in": value, "refresh_token": "r",
                                           "refresh_expires_in": 15_552_000, "open_id": "u1"}, sent_at=1000)
    assert tokens.access_expires_at == 1000 + lifetime
