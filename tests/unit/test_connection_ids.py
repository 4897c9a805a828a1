"""Connection ids nobody can compute, and one connection per owner, provider and account (issue 13, section 3).

The attack: a caller allowed the token route who knows an owner id and a TikTok open_id computed the connection id
(ADR 0010 derived it from the three) and read the token. New ids are random; the guard item `guard#<hash>` names
the one connection of each (owner, provider, account), written in the same transaction as the connection, so
reconnects and racing connects still find and update that one (ADR 0018). Connections written before keep their
derived ids: their guard is written when they are first touched. In memory here; on moto in
tests/integration/test_connection_ids.py.
"""

from __future__ import annotations

import threading

import pytest
from oauth_keeper.adapters.connections import GUARDED
from oauth_keeper.domain.connection import (
    DISCONNECTED,
    GUARD_PREFIX,
    Grant,
    derived_connection_id,
    guard_key,
    new_connection_id,
)
from oauth_keeper.domain.lifecycle import plan_grant
from oauth_keeper.ports import MISSING, TransactWrite
from oauth_keeper.usecases.connect import save_grant

from local.memory import MemoryItemStore, no_sleep
from tests.unit.test_callback import OWNER, SCOPES, STATE, World, tokens

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def grant(account: str = "acct-1", owner: str = OWNER, suffix: str = "1") -> Grant:
    return Grant(owner_id=owner, provider="tiktok", account_id=account, tokens=tokens(account, suffix=suffix),
                 scopes_requested=SCOPES, scopes_granted=SCOPES)


def save(world: World, granted: Grant):
    return save_grant(world.store, granted, next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now,
                      sleep=no_sleep)


def connect(world: World, account: str = "acct-1", suffix: str = "1") -> dict[str, str]:
    """The callback, as a browser finishing a connect (confirmation off): the return address' parameters."""
    world.start()
    world.provider.exchanges.append(tokens(account, suffix=suffix))
    return world.complete({"state": [STATE], "code": [f"code-{suffix}"]}).params


def write_as_before_guards(world: World, granted: Grant) -> str:
    """A connection as versions before guards wrote it: the same item (write_grant's layout did not change but
    for the guard), under the id derived from owner, provider and account, with no guard item."""
    cid = derived_connection_id(granted.owner_id, granted.provider, granted.account_id)
    plan = plan_grant(None, granted, connection_id=cid, stored_refresh_token=None, next_refresh_at=world.now + 3600,
                      missing_scopes=[], now=world.now)
    written = world.store.write_grant(plan)
    assert written is not None
    world.outbox.publish(written)
    world.publisher.events.clear()
    assert world.items.delete(guard_key(granted.owner_id, granted.provider, granted.account_id), expect={})
    assert guards(world) == {}
    return cid


def connections(world: World) -> list[str]:
    return sorted(i["connection_id"] for i in world.items.items() if "owner_id" in i)


def guards(world: World) -> dict[str, str]:
    return {i["connection_id"]: i[GUARDED] for i in world.items.items() if i["connection_id"].startswith(GUARD_PREFIX)}


# -- the attack: an id computed from what the caller knows ---------------------------------------------------------
def test_a_new_connection_s_id_cannot_be_computed_from_its_owner_provider_and_account(world):
    params = connect(world)
    cid = params["connection_id"]
    assert cid != derived_connection_id(OWNER, "tiktok", "acct-1")  # what an attacker would compute
    assert world.store.get(derived_connection_id(OWNER, "tiktok", "acct-1")) is None
    # Random, in the format the API has always documented (openapi.yaml ConnectionId: con_ + 32 base32).
    other = World()
    assert connect(other)["connection_id"] != cid
    for found in (cid, new_connection_id()):
        assert found.startswith("con_") and len(found) == 36
        assert set(found[4:]) <= set("abcdefghijklmnopqrstuvwxyz234567")


def test_a_new_connection_is_written_with_its_guard_and_a_reconnect_finds_it_through_the_guard(world):
    first = connect(world)["connection_id"]
    assert guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): first}
    again = connect(world, suffix="2")
    assert again["connection_id"] == first
    assert connections(world) == [first] and world.store.get(first).token_version == 2
    assert world.store.find(OWNER, "tiktok", "acct-1").connection_id == first
    # Another owner of the same account, or another account of the same owner: another connection, another guard.
    assert save(world, grant(owner="owner-2")).connection.connection_id not in (first,)
    assert save(world, grant(account="acct-2")).created
    assert len(connections(world)) == 3 and len(guards(world)) == 3


def test_a_guard_item_is_never_read_as_a_connection(world):
    connect(world)
    (key,) = guards(world)
    assert world.store.get(key) is None


def save_at_once(world, n: int) -> list:
    """`n` grants of the same account saved by `n` threads released together; what each save returned."""
    barrier, saved = threading.Barrier(n), []

    def one(i: int) -> None:
        barrier.wait()
        saved.append(save(world, grant(suffix=str(i))))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return saved


def test_concurrent_connects_of_one_account_make_one_connection(world):
    saved = save_at_once(world, 8)
    assert len({s.connection.connection_id for s in saved}) == 1
    assert sum(s.created for s in saved) == 1
    (cid,) = connections(world)
    assert world.store.get(cid).token_version == 8 and list(guards(world).values()) == [cid]


def test_a_connect_that_loses_the_guard_to_another_reconnects_the_winner(world):
    """Between this connect's lookup and its write, another one wrote the connection and its guard: the
    transaction fails as a whole (no second connection, no guard overwritten), and the grant is planned again."""
    winner = save(world, grant(suffix="w")).connection.connection_id
    granted = grant(suffix="late")
    plan = plan_grant(None, granted, connection_id=new_connection_id(), stored_refresh_token=None,
                      next_refresh_at=None, missing_scopes=[], now=world.now)
    assert world.store.write_grant(plan) is None  # as planned before the winner's write was seen
    assert connections(world) == [winner] and list(guards(world).values()) == [winner]
    assert save(world, granted).connection.connection_id == winner


# -- the transition: connections written before guards keep their ids ----------------------------------------------
def test_a_reconnect_of_a_connection_written_before_guards_keeps_its_id_and_writes_its_guard(world):
    legacy = write_as_before_guards(world, grant())
    params = connect(world, suffix="2")
    assert params["connection_id"] == legacy
    assert connections(world) == [legacy] and world.store.get(legacy).token_version == 2
    assert guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): legacy}
    assert connect(world, suffix="3")["connection_id"] == legacy  # through the guard from now on


def test_concurrent_reconnects_of_a_connection_written_before_guards_never_duplicate_it(world):
    legacy = write_as_before_guards(world, grant())
    saved = save_at_once(world, 6)
    assert {s.connection.connection_id for s in saved} == {legacy} and not any(s.created for s in saved)
    assert connections(world) == [legacy] and guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): legacy}
    assert world.store.get(legacy).token_version == 7


def test_a_new_connection_never_lands_beside_one_an_older_version_wrote_meanwhile(world):
    """An older version still running during the deploy writes the derived id after this connect looked: the
    transaction checks that id is free, so it fails, and the grant is planned again onto that connection."""
    granted = grant(suffix="new")
    plan = plan_grant(None, granted, connection_id=new_connection_id(), stored_refresh_token=None,
                      next_refresh_at=None, missing_scopes=[], now=world.now)
    legacy = write_as_before_guards(world, grant(suffix="old"))
    assert world.store.write_grant(plan) is None
    assert connections(world) == [legacy] and guards(world) == {}
    assert save(world, granted).connection.connection_id == legacy


# -- deleted connections: their guard goes with them; a stale one is replaced ------------------------------------
def erase(world: World, cid: str) -> None:
    connection = world.store.get(cid)
    assert world.store.apply(connection, {"status": DISCONNECTED, "tokens": None}) is not None
    assert world.store.erase(cid)


def test_erasing_a_connection_deletes_its_guard_and_a_later_connect_makes_a_new_one(world):
    first = connect(world)["connection_id"]
    erase(world, first)
    assert world.items.items() == []  # nothing of it left, its guard included
    second = connect(world, suffix="2")["connection_id"]
    assert second != first and connections(world) == [second]
    assert guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): second}


def test_erasing_a_connection_written_before_guards_deletes_it(world):
    legacy = write_as_before_guards(world, grant())
    erase(world, legacy)
    assert world.items.items() == []
    assert connect(world, suffix="2")["connection_id"] not in (legacy,)


def test_a_guard_naming_a_deleted_connection_is_stale_and_replaced(world):
    """A guard left behind (a connection deleted without it) never resolves to the deleted id: the next connect
    makes a new connection and the guard names it."""
    first = connect(world)["connection_id"]
    world.items.delete(first, expect={})
    assert world.store.find(OWNER, "tiktok", "acct-1") is None
    second = connect(world, suffix="2")["connection_id"]
    assert second != first and connections(world) == [second]
    assert guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): second}


def test_a_stale_guard_gives_way_to_a_connection_written_before_guards(world):
    """The guard names a deleted connection while the derived id holds a live one (an older version wrote it):
    that one is the connection, and the guard now names it."""
    legacy = write_as_before_guards(world, grant())
    world.items.update(guard_key(OWNER, "tiktok", "acct-1"), set={GUARDED: new_connection_id()},
                       expect={"connection_id": MISSING})
    assert connect(world, suffix="2")["connection_id"] == legacy
    assert connections(world) == [legacy] and guards(world) == {guard_key(OWNER, "tiktok", "acct-1"): legacy}


# -- the in-memory twin keeps TransactWriteItems' contract ---------------------------------------------------------
def test_a_transaction_writes_everything_or_nothing():
    items = MemoryItemStore()
    items.update("a", set={"v": 1}, expect={})
    refused = [TransactWrite("b", set={"v": 2}, expect={"connection_id": MISSING}),
               TransactWrite("a", "delete", expect={"v": 2}),  # fails: v is 1
               TransactWrite("c", "check", expect={"connection_id": MISSING})]
    assert not items.transact(refused)
    assert items.items() == [{"connection_id": "a", "v": 1}]
    accepted = [TransactWrite("b", set={"v": 2}, expect={"connection_id": MISSING}),
                TransactWrite("a", "delete", expect={"v": 1}),
                TransactWrite("c", "check", expect={"connection_id": MISSING})]
    assert items.transact(accepted)
    assert items.items() == [{"connection_id": "b", "v": 2}]
    with pytest.raises(ValueError):
        items.transact([TransactWrite("b", "check", expect={"v": 2}), TransactWrite("b", "delete")])
