"""Random connection ids and their guard items on the real adapters (moto, TransactWriteItems), through the real
flows, starting from a table of the items versions before guards wrote (issue 13, section 3; ADR 0018).

Those connections keep their ids (derived from owner, provider and account), and gain a guard item the first
time a connect touches them: reconnects, claims, scope upgrades and racing callbacks during the transition never
make a second connection. Erasures delete a connection's guard with it.
"""

from __future__ import annotations

import os

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.domain.connection import GUARD_PREFIX, derived_connection_id, guard_key

from tests.integration.conftest import location_query
from tests.integration.test_account_erasure import account_path
from tests.integration.test_backend_api import call, connect, item, run_jobs
from tests.integration.test_connect_confirmation import claim, finish_connect
from tests.integration.test_durable_disconnect import finish_marking

pytestmark = pytest.mark.integration


def table() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]


def connection_ids() -> list[str]:
    return sorted(i["connection_id"]["S"] for i in table() if "owner_id" in i and "status" in i)


def guards() -> dict[str, str]:
    return {i["connection_id"]["S"]: i["guarded_connection"]["S"] for i in table()
            if i["connection_id"]["S"].startswith(GUARD_PREFIX)}


def connect_as_before_guards(monkeypatch, browser, tiktok, *, user: str = "alice", owner_id: str = "owner-1") -> str:
    """A connection as versions before guards made it: the whole connect flow, the id derived from owner,
    provider and account, no guard item (the item layout is otherwise unchanged)."""
    open_id = tiktok.users[user].open_id
    legacy = derived_connection_id(owner_id, "tiktok", open_id)
    with monkeypatch.context() as before:
        before.setattr(ConnectionStore, "new_id", lambda self, *_: legacy)
        assert connect(browser, tiktok, user=user, owner_id=owner_id)["connection_id"] == [legacy]
    boto3.client("dynamodb").delete_item(TableName=os.environ["CONNECTIONS_TABLE"],
                                         Key={"connection_id": {"S": guard_key(owner_id, "tiktok", open_id)}})
    return legacy


@pytest.fixture
def old_table(stack, tiktok, browser, monkeypatch) -> dict[str, str]:
    """Today's table: three connections (two owners of alice's account, one of bob's), no guard item."""
    seeded = {(owner, user): connect_as_before_guards(monkeypatch, browser, tiktok, user=user, owner_id=owner)
              for owner, user in (("owner-1", "alice"), ("owner-2", "alice"), ("owner-1", "bob"))}
    assert guards() == {} and len(connection_ids()) == 3
    stack.received_events()  # their Created events: not this test's
    return {f"{owner}/{user}": cid for (owner, user), cid in seeded.items()}


def test_a_new_connection_gets_a_random_id_and_a_guard_in_the_same_transaction(stack, tiktok, browser):
    cid = connect(browser, tiktok)["connection_id"][0]
    open_id = tiktok.users["alice"].open_id
    assert cid != derived_connection_id("owner-1", "tiktok", open_id)
    assert guards() == {guard_key("owner-1", "tiktok", open_id): cid}
    assert connect(browser, tiktok)["connection_id"] == [cid]  # a reconnect, through the guard
    assert connection_ids() == [cid] and item(cid)["token_version"]["N"] == "2"


def test_the_transition_deploy_gives_new_connections_the_ids_an_older_instance_finds(stack, tiktok, browser, clock,
                                                                                    monkeypatch):
    """Upgrade step 1 (`ConnectionIds=derived`): a new connection gets the id versions before random ids compute
    (an older instance still running, or a rollback, looks there and finds it: no duplicate) and its guard. Step 2
    (`random`): reconnects find it through its guard; new accounts get random ids."""
    from local.stack import install_from_env

    monkeypatch.setenv("CONNECTION_IDS", "derived")
    root.reset()
    install_from_env(clock=clock)
    alice = connect(browser, tiktok)["connection_id"][0]
    alice_id = tiktok.users["alice"].open_id
    assert alice == derived_connection_id("owner-1", "tiktok", alice_id)  # where an older version looks
    assert guards() == {guard_key("owner-1", "tiktok", alice_id): alice}
    monkeypatch.setenv("CONNECTION_IDS", "random")
    root.reset()
    install_from_env(clock=clock)
    assert connect(browser, tiktok)["connection_id"] == [alice]
    bob = connect(browser, tiktok, user="bob")["connection_id"][0]
    assert bob != derived_connection_id("owner-1", "tiktok", tiktok.users["bob"].open_id)
    assert connection_ids() == sorted([alice, bob])


def test_reconnecting_connections_from_before_guards_keeps_their_ids_and_writes_their_guards(old_table, stack,
                                                                                           tiktok, browser):
    for key, cid in old_table.items():
        owner, user = key.split("/")
        assert connect(browser, tiktok, user=user, owner_id=owner)["connection_id"] == [cid]
        assert item(cid)["token_version"]["N"] == "2" and item(cid)["status"]["S"] == "active"
    assert connection_ids() == sorted(old_table.values())
    assert sorted(guards().values()) == sorted(old_table.values())
    assert [e["detail-type"] for e in stack.received_events()] == ["Connection Reconnected"] * 3
    # From then on through the guard: still the same connections.
    assert connect(browser, tiktok, user="alice", owner_id="owner-1")["connection_id"] == [old_table["owner-1/alice"]]
    assert len(connection_ids()) == 3


def test_claiming_a_reconnect_of_a_connection_from_before_guards_keeps_its_id(old_table, tiktok, browser, clock,
                                                                              monkeypatch):
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")
    from local.stack import install_from_env

    root.reset()
    install_from_env(clock=clock)
    back = finish_connect(browser, tiktok, owner_id="owner-2", user="alice")
    status, body = claim(back["claim"][0], "owner-2")
    assert status == 200 and body["result"] == "reconnected"
    assert body["connection"]["connection_id"] == old_table["owner-2/alice"]
    assert connection_ids() == sorted(old_table.values())
    assert list(guards().values()) == [old_table["owner-2/alice"]]


def test_concurrent_callbacks_for_a_connection_from_before_guards_never_duplicate_it(old_table, tiktok):
    from tests.integration.test_connect_flow import concurrent_callbacks

    results = concurrent_callbacks(tiktok, 4)
    assert {location_query(r)["connection_id"][0] for r in results} == {old_table["owner-1/alice"]}
    assert connection_ids() == sorted(old_table.values())
    assert item(old_table["owner-1/alice"])["token_version"]["N"] == "5"
    assert list(guards().values()) == [old_table["owner-1/alice"]]


def test_a_scope_upgrade_of_a_connection_from_before_guards_updates_it_and_refuses_another_account(old_table,
                                                                                                   tiktok, browser):
    legacy = old_table["owner-1/alice"]
    assert connect(browser, tiktok, user="alice", connection_id=legacy)["connection_id"] == [legacy]
    refused = connect(browser, tiktok, user="carol", connection_id=legacy)
    assert refused["error"] == ["account_mismatch"]
    assert connection_ids() == sorted(old_table.values())


def test_an_owner_erasure_deletes_the_guards_with_the_connections_and_a_new_connect_starts_afresh(stack, tiktok,
                                                                                                 browser, clock,
                                                                                                 monkeypatch):
    legacy = connect_as_before_guards(monkeypatch, browser, tiktok, user="bob")
    mine = connect(browser, tiktok, user="alice")["connection_id"][0]
    theirs = connect(browser, tiktok, user="alice", owner_id="owner-2")["connection_id"][0]
    assert len(guards()) == 2  # alice's two connections; bob's from before guards has none
    assert call("DELETE", "/owners/owner-1/connections")[0] == 202
    run_jobs()
    finish_marking(clock)
    assert item(mine) == {} and item(legacy) == {}
    assert connection_ids() == [theirs] and list(guards().values()) == [theirs]
    clock.advance(1)
    again = connect(browser, tiktok, user="alice")["connection_id"][0]
    assert again not in (mine, legacy) and item(again)["status"]["S"] == "active"
    assert sorted(guards().values()) == sorted([theirs, again])


def test_an_account_erasure_deletes_the_guards_of_every_owner_s_connection(stack, tiktok, browser, clock):
    alice = tiktok.users["alice"].open_id
    hers = [connect(browser, tiktok, user="alice", owner_id=o)["connection_id"][0] for o in ("owner-1", "owner-2")]
    bobs = connect(browser, tiktok, user="bob")["connection_id"][0]
    assert call("DELETE", account_path(alice))[0] == 202
    run_jobs()
    finish_marking(clock)
    assert all(item(c) == {} for c in hers)
    assert connection_ids() == [bobs] and list(guards().values()) == [bobs]


def test_a_transaction_that_loses_a_condition_writes_nothing_on_dynamodb(stack):
    """The adapter's TransactWriteItems: all or nothing, a failed condition is False, not an error."""
    from oauth_keeper.ports import MISSING, TransactWrite

    items = root.container().connections.items
    assert items.transact([TransactWrite("guard#a", set={"guarded_connection": "con_a"},
                                         expect={"connection_id": MISSING}),
                           TransactWrite("con_b", "check", expect={"connection_id": MISSING})])
    assert not items.transact([TransactWrite("guard#b", set={"guarded_connection": "con_b"},
                                             expect={"connection_id": MISSING}),
                               TransactWrite("guard#a", "check", expect={"connection_id": MISSING})])
    assert items.get("guard#b") is None
    assert items.transact([TransactWrite("guard#a", "delete", expect={"guarded_connection": "con_a"})])
    assert items.get("guard#a") is None
