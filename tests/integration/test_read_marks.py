"""The `adaptive` policy's read marks on DynamoDB (moto): the conditional UpdateItem writes `last_read_at` once per
window, and a read that flips an idle connection to eager plans its refresh in that same write (ADR 0026)."""

from __future__ import annotations

import pytest
from oauth_keeper import root

from tests.integration.conftest import START
from tests.integration.test_connection_store import grant, save

pytestmark = pytest.mark.integration
DAY = 86_400


def test_the_read_mark_is_written_once_a_window_on_dynamodb(stack):
    store = root.container().connections
    cid = save(store, grant("rft.1", refresh_expires_at=START + 365 * DAY), START).connection.connection_id
    connection = store.get(cid)
    assert connection.last_read_at is None  # stored before any read: idle
    assert store.record_read(connection, START + 10, window=DAY)
    assert not store.record_read(store.get(cid), START + DAY - 1, window=DAY)  # within the window: refused
    assert store.get(cid).last_read_at == START + 10
    assert store.record_read(store.get(cid), START + 10 + DAY, window=DAY)
    assert store.get(cid).last_read_at == START + 10 + DAY
    assert store.get(cid).revision == connection.revision  # a read is not a decision


def test_a_flip_to_eager_is_guarded_on_the_revision_the_read_saw(stack):
    store = root.container().connections
    cid = save(store, grant("rft.1", refresh_expires_at=START + 365 * DAY), START).connection.connection_id
    seen = store.get(cid)
    store.apply(seen, {"failures": 1})  # a decision lands meanwhile
    assert not store.record_read(seen, START + 10, window=DAY, next_refresh_at=START + 5000)
    assert store.record_read(store.get(cid), START + 10, window=DAY, next_refresh_at=START + 5000)
    stored = store.get(cid)
    assert (stored.next_refresh_at, stored.last_read_at) == (START + 5000, START + 10)
    assert cid in list(store.due(store.shard_of(cid), START + 5000))  # the Due index entry moved with it


def test_of_two_reads_flipping_the_same_idle_connection_one_write_lands_on_dynamodb(stack):
    store = root.container().connections
    cid = save(store, grant("rft.1", refresh_expires_at=START + 365 * DAY), START).connection.connection_id
    first, second = store.get(cid), store.get(cid)  # two token reads, both before either mark landed
    assert store.record_read(first, START + 10, window=DAY, next_refresh_at=START + 5000)
    # A mark does not move the revision: the plan the second read saw is what stops it (the Due entry is not
    # moved a second time).
    assert not store.record_read(second, START + 11, window=DAY, next_refresh_at=START + 5001)
    stored = store.get(cid)
    assert (stored.next_refresh_at, stored.last_read_at) == (START + 5000, START + 10)
