"""Grants nobody keeps are revoked in the background, never inside the browser's request (issue 11, case 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from oauth_keeper.domain.connection import TokenBinding
from oauth_keeper.domain.errors import FailureKind, ProviderError
from oauth_keeper.domain.schedule import due_shard
from oauth_keeper.usecases.orphans import GIVE_UP_AFTER, OrphanGrants, is_orphan
from oauth_keeper.usecases.sweep import Sweep
from oauth_keeper.usecases.worker import RefreshWorker

from local.memory import ListQueue
from tests.unit.test_callback import STATE, tokens
from tests.unit.test_callback import World as CallbackWorld

pytestmark = pytest.mark.unit


class Revokes:
    """The provider's revoke endpoint, scripted: None revokes, an exception refuses or fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answers: list[BaseException | None] = []

    def revoke(self, profile, creds, access_token, *, deadline=None):
        self.calls.append(access_token)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return "log-revoke"


@pytest.fixture
def world():
    world = CallbackWorld()
    world.revokes = Revokes()
    world.provider.revoke = world.revokes.revoke
    world.orphans = OrphanGrants(items=world.items, cipher=world.store._cipher, profiles=world.profiles,  # noqa: SLF001
                                 credentials=world.callback._credentials, provider=world.provider,  # noqa: SLF001
                                 clock=world.clock, due_shards=4, connections=world.store)
    world.callback._orphans = world.orphans  # noqa: SLF001 - as the composition root wires it
    return world


def orphans_in(world) -> list[dict]:
    return [i for i in world.items.items() if is_orphan(i["connection_id"])]


def refused_connect(world) -> None:
    world.start()
    world.provider.exchanges.append(replace(tokens("acct-1"), refresh_token=None, refresh_expires_at=None))
    assert world.complete({"state": [STATE], "code": ["c"]}).params["error"] == "incomplete_grant"


def test_a_refused_connect_leaves_its_grant_for_the_background_not_revoked_in_the_request(world):
    refused_connect(world)
    assert world.revokes.calls == []  # the browser did not wait on a revoke
    (orphan,) = orphans_in(world)
    assert orphan["provider"] == "tiktok" and "at-1" not in str(orphan)  # sealed, never in clear


def test_the_sweep_finds_the_orphan_and_a_worker_revokes_it_then_forgets_it(world):
    refused_connect(world)
    queue = ListQueue()
    Sweep(world.store, queue, world.clock, 300).run()
    assert len(queue.messages) == 1 and is_orphan(queue.messages[0])
    class NoRefresher:  # only an orphan is queued: nothing to refresh
        now = world.clock.now

        def refresh(self, *args, **kwargs):
            raise AssertionError("an orphan is not a connection")

    worker = RefreshWorker(NoRefresher(), concurrency=2, orphans=world.orphans)  # type: ignore[arg-type]
    assert worker.process(queue.drain()) == {"batchItemFailures": []}
    assert world.revokes.calls == ["at-1"] and orphans_in(world) == []


def test_a_failing_revoke_is_retried_later_then_given_up_after_a_day(world):
    refused_connect(world)
    (orphan,) = orphans_in(world)
    key = orphan["connection_id"]
    down = ProviderError("down", code="server_error", kind=FailureKind.TRANSIENT, http_status=503)
    world.revokes.answers = [down] * 1000
    assert world.orphans.revoke(key) == "retrying"
    assert orphans_in(world)[0]["next_refresh_at"] > world.now  # backed off, still due later
    world.clock.advance(GIVE_UP_AFTER)
    assert world.orphans.revoke(key) == "abandoned" and orphans_in(world) == []


def test_a_refused_revoke_is_not_retried(world):
    refused_connect(world)
    key = orphans_in(world)[0]["connection_id"]
    world.revokes.answers = [ProviderError("no", code="invalid_request", kind=FailureKind.REJECTED)]
    assert world.orphans.revoke(key) == "abandoned" and orphans_in(world) == []
    assert world.orphans.revoke(key) == "gone"


def test_a_scope_upgrade_answered_for_another_account_orphans_that_grant_too(world):
    cid = world.seed("acct-1")
    world.start(connection_id=cid)
    world.provider.exchanges.append(tokens("acct-2", suffix="other"))
    assert world.complete({"state": [STATE], "code": ["c"]}).params["error"] == "account_mismatch"
    assert len(orphans_in(world)) == 1


def test_an_exchange_answer_without_the_account_orphans_its_grant(world):
    """Found in review: the provider made a grant, the callback refused it (account_unavailable: without the
    account id a reconnect cannot be told from a new account) and nobody revoked it."""
    world.start()
    world.provider.exchanges.append(replace(tokens("acct-1"), account_id=None))
    assert world.complete({"state": [STATE], "code": ["c"]}).params["error"] == "account_unavailable"
    assert world.revokes.calls == []
    (orphan,) = orphans_in(world)
    assert orphan["provider"] == "tiktok"
    assert world.orphans.revoke(orphan["connection_id"]) == "revoked"
    assert world.revokes.calls == ["at-1"]


def test_a_grant_that_cannot_be_stored_is_orphaned_and_the_error_still_reaches_the_handler(world):
    """The connection kept changing under every attempt (or the store refused): nothing was stored, so the
    grant the provider made must not stay alive unseen."""
    world.start()
    world.provider.exchanges.append(tokens("acct-1"))

    def never(plan):
        return None  # a conditional write that loses every race

    world.store.write_grant = never
    with pytest.raises(RuntimeError):
        world.complete({"state": [STATE], "code": ["c"]})
    assert len(orphans_in(world)) == 1


def test_an_orphaned_grant_whose_revoke_is_retried_moves_under_todays_count(world):
    """So the shards above a lowered count empty out, and the sweep's cost comes back down."""
    world.orphans._shards = 16  # noqa: SLF001 - as a deployment with 16 shards recorded it
    refused_connect(world)
    (orphan,) = orphans_in(world)
    key = orphan["connection_id"]
    lowered = next(n for n in range(15, 0, -1) if due_shard(key, n) != due_shard(key, 16))
    world.orphans._shards = lowered  # noqa: SLF001 - the deploy lowered it
    world.revokes.answers = [ProviderError("down", code="server_error", kind=FailureKind.TRANSIENT, http_status=503)]
    assert world.orphans.revoke(key) == "retrying"
    assert orphans_in(world)[0]["due_shard"] == due_shard(key, lowered)


# -- the access token expired before the revoke (issue 12, case 1 follow-up) ----------------------------------------
class Refreshes:
    """The provider's token endpoint for refreshes, scripted: a TokenSet answers, an exception refuses or fails.
    Like TikTok, a successful refresh rotates: the refresh token sent dies."""

    def __init__(self, world) -> None:
        self.world = world
        self.calls: list[str] = []
        self.answers: list[BaseException | None] = []
        self.issued = 0

    def refresh(self, profile, creds, refresh_token, *, deadline=None):
        self.calls.append(refresh_token)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        self.issued += 1
        return tokens("acct-other", now=self.world.now, suffix=f"fresh{self.issued}")


@pytest.fixture
def refreshes(world):
    refreshes = Refreshes(world)
    world.provider.refresh = refreshes.refresh
    return refreshes


def orphaned_with_refresh_token(world) -> str:
    """A scope upgrade answered for another account: its grant (access and refresh token) is orphaned."""
    cid = world.seed("acct-1")
    world.start(connection_id=cid)
    world.provider.exchanges.append(replace(tokens("acct-other", suffix="other"), access_expires_at=world.now + 7200))
    assert world.complete({"state": [STATE], "code": ["c"]}).params["error"] == "account_mismatch"
    (orphan,) = orphans_in(world)
    return orphan["connection_id"]


def stored_tokens(world, key: str) -> dict:
    item = world.items.get(key)
    # An orphaned grant belongs to no owner; it is bound to the account it is for (held-elsewhere check).
    binding = TokenBinding(key, "tiktok", "", item.get("account_id") or "", 0)
    return world.orphans._cipher.open(item["tokens"], binding)  # noqa: SLF001


def expired_access(world) -> None:
    world.clock.advance(3 * 3600)  # past the two hours the access token lives, as a few retries may take


def test_an_orphan_whose_access_token_expired_is_refreshed_then_revoked_with_the_fresh_token(world, refreshes):
    key = orphaned_with_refresh_token(world)
    expired_access(world)
    assert world.orphans.revoke(key) == "revoked"
    assert refreshes.calls == ["rt-other"] and world.revokes.calls == ["at-fresh1"]
    assert orphans_in(world) == []


def test_a_crash_between_storing_the_refreshed_tokens_and_the_revoke_keeps_the_live_refresh_token(world, refreshes):
    key = orphaned_with_refresh_token(world)
    expired_access(world)

    class Crash(BaseException):  # the function dies (a timeout kills it): nothing of it catches this
        pass

    def crash(*args, **kwargs):
        raise Crash("the function died")

    world.provider.revoke = crash
    with pytest.raises(Crash):
        world.orphans.revoke(key)
    # The provider's old refresh token died with the refresh: the new one is on the item, the lease given back.
    assert stored_tokens(world, key) == {"access_token": "at-fresh1", "refresh_token": "rt-fresh1"}
    assert "lease_owner" not in world.items.get(key)
    world.provider.revoke = world.revokes.revoke
    assert world.orphans.revoke(key) == "revoked"
    assert refreshes.calls == ["rt-other"] and world.revokes.calls == ["at-fresh1"]  # no second refresh


def test_an_orphan_whose_refresh_is_answered_invalid_grant_had_already_ended(world, refreshes):
    key = orphaned_with_refresh_token(world)
    expired_access(world)
    refreshes.answers = [ProviderError("gone", code="invalid_grant", kind=FailureKind.TERMINAL)]
    assert world.orphans.revoke(key) == "ended"
    assert world.revokes.calls == [] and orphans_in(world) == []


def test_a_transient_refresh_failure_is_retried_later_with_the_same_tokens(world, refreshes):
    key = orphaned_with_refresh_token(world)
    expired_access(world)
    refreshes.answers = [ProviderError("down", code="server_error", kind=FailureKind.TRANSIENT, http_status=503)]
    assert world.orphans.revoke(key) == "retrying"
    (orphan,) = orphans_in(world)
    assert orphan["next_refresh_at"] > world.now and "lease_owner" not in orphan
    assert stored_tokens(world, key)["refresh_token"] == "rt-other"
    world.clock.advance(orphan["next_refresh_at"] - world.now)
    assert world.orphans.revoke(key) == "revoked"
    assert world.revokes.calls == ["at-fresh1"]


def test_a_revoke_refused_before_the_recorded_expiry_is_refreshed_and_revoked(world, refreshes):
    """The provider ended the access token sooner than it said: the refusal, not the clock, tells."""
    key = orphaned_with_refresh_token(world)
    world.revokes.answers = [ProviderError("expired", code="invalid_grant", kind=FailureKind.TERMINAL)]
    assert world.orphans.revoke(key) == "revoked"
    assert refreshes.calls == ["rt-other"] and world.revokes.calls == ["at-other", "at-fresh1"]


def test_an_invalid_grant_after_a_refresh_whose_answer_was_lost_is_no_proof_the_grant_ended(world, refreshes):
    """A worker died at the provider under the lease: TikTok may have rotated the token to one nobody saved."""
    key = orphaned_with_refresh_token(world)
    expired_access(world)
    world.items.update(key, set={"lease_owner": "dead-worker", "lease_expires_at": world.now - 1}, expect={})
    refreshes.answers = [ProviderError("rotated", code="invalid_grant", kind=FailureKind.TERMINAL)]
    assert world.orphans.revoke(key) == "abandoned"


def test_an_orphan_another_worker_is_refreshing_is_left_to_it(world, refreshes):
    key = orphaned_with_refresh_token(world)
    expired_access(world)
    world.items.update(key, set={"lease_owner": "other-worker", "lease_expires_at": world.now + 10}, expect={})
    assert world.orphans.revoke(key) == "waiting"
    assert refreshes.calls == [] and world.revokes.calls == []


def test_an_orphaned_grant_of_an_account_another_connection_holds_is_dropped_never_revoked(world):
    """TikTok may keep one grant per app and user: revoking this grant could end the live connection of the same
    account, and its revoke can trigger `authorization.removed` for every owner of it."""
    held = world.seed("acct-other")
    key = orphaned_with_refresh_token(world)  # a scope upgrade answered for acct-other
    assert world.orphans.revoke(key) == "held"
    assert world.revokes.calls == [] and orphans_in(world) == []
    assert world.store.get(held).status == "active"


def test_an_orphan_whose_account_was_rewritten_in_the_table_is_never_revoked(world):
    """The account steers the held-elsewhere check, so it is bound into the sealed tokens: a write that changes
    it (to make a held account look free) leaves tokens that no longer open."""
    key = orphaned_with_refresh_token(world)
    world.items.update(key, set={"account_id": "acct-nobody-holds"}, expect={})
    assert world.orphans.revoke(key) == "abandoned"
    assert world.revokes.calls == [] and orphans_in(world) == []
