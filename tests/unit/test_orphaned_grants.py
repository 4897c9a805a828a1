"""Grants nobody keeps are revoked in the background, never inside the browser's request (issue 11, case 1)."""

from __future__ import annotations

from dataclasses import replace

import pytest
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
                                 clock=world.clock, due_shards=4)
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
