"""The refresh lease in one write (`ConnectionStore.take_lease`, issue 16): the same answers from moto's DynamoDB (the
UpdateItem with ReturnValues=ALL_NEW and its condition, as DynamoItemStore writes them) and from the in-memory
table the simulations use (local/memory.py), so the bench's figures on memory describe what DynamoDB does.
"""

from __future__ import annotations

import boto3
import pytest
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.adapters.dynamodb import DynamoItemStore

from local import cfn
from local.memory import MemoryItemStore
from local.stack import REGION

NOW = 1_800_000_000
BASE = {"owner_id": "owner-1", "provider": "tiktok", "account_id": "acct-1", "status": "active", "revision": 4,
        "token_version": 1, "created_at": NOW - 100, "updated_at": NOW - 100, "next_refresh_at": NOW + 60,
        "due_shard": 0}


class NoCipher:
    def prepare(self, for_seconds: float) -> None: ...


@pytest.fixture(params=["memory", "dynamodb"])
def store(request, aws) -> ConnectionStore:
    if request.param == "memory":
        items = MemoryItemStore()
    else:
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(**cfn.table_definition("ConnectionsTable", "lease-test"))
        items = DynamoItemStore(client, "lease-test")
    return ConnectionStore(items, NoCipher(), 4)  # type: ignore[arg-type]


def put(store: ConnectionStore, key: str, **attributes) -> None:
    item = {**BASE, **attributes}
    store.items.update(key, set={k: v for k, v in item.items() if v is not None}, expect={})


def lease(store: ConnectionStore, key: str, *, due_by: int | None = NOW + 300):
    return store.take_lease(key, owner="me", expires_at=NOW + 22, statuses=("active", "at_risk"), due_by=due_by)


def test_a_due_connection_nobody_holds_is_leased_and_returned_as_written(store):
    put(store, "con_a")
    leased, found = lease(store, "con_a")
    assert found is None
    assert (leased.lease_owner, leased.lease_expires_at, leased.revision) == ("me", NOW + 22, 5)
    assert leased.account_id == "acct-1" and leased.next_refresh_at == NOW + 60  # the whole item came back
    stored = store.get("con_a")
    assert (stored.lease_owner, stored.revision) == ("me", 5)


def test_an_item_without_a_revision_counts_it_from_zero(store):
    put(store, "con_a", revision=None)
    leased, _ = lease(store, "con_a")
    assert leased.revision == 1 and store.get("con_a").revision == 1


@pytest.mark.parametrize(("attributes", "due_by"), [
    ({"lease_owner": "sibling", "lease_expires_at": NOW + 10}, NOW + 300),  # held
    ({"lease_owner": "crashed", "lease_expires_at": NOW - 10}, NOW + 300),  # expired: read first, in doubt
    ({"next_refresh_at": NOW + 600}, NOW + 300),  # not due
    ({"next_refresh_at": None, "due_shard": None}, NOW + 300),  # nothing scheduled
    ({"status": "needs_reauth"}, None),  # ended, even forced
    ({"status": "disconnecting"}, None),
    ({"outbox_shard": 1}, NOW + 300),  # an event waits: published before any lease
])
def test_anything_else_is_refused_and_the_item_comes_back_as_it_was(store, attributes, due_by):
    put(store, "con_a", **attributes)
    before = store.items.get("con_a")
    leased, found = lease(store, "con_a", due_by=due_by)
    assert leased is None and found is not None and found.revision == 4
    assert store.items.get("con_a") == before  # nothing written


def test_a_forced_lease_ignores_the_schedule(store):
    put(store, "con_a", next_refresh_at=NOW + 86_400)
    leased, _ = lease(store, "con_a", due_by=None)
    assert leased is not None and leased.lease_owner == "me"


def test_no_item_and_items_that_are_no_connection_are_left_alone(store):
    assert lease(store, "con_missing") == (None, None)
    assert store.items.get("con_missing") is None  # the failed condition created nothing
    store.items.update("guard#x", set={"guarded_connection": "con_a", "status": "active"}, expect={})
    assert lease(store, "guard#x", due_by=None) == (None, None)
    assert "lease_owner" not in store.items.get("guard#x")
