"""An owner's erasure racing a callback that checked the tombstone just before it was written (issue 12, case 2).

The callback checks the tombstone, then writes the connection; the erasure writes the tombstone, then marks the
owner's connections, and once more RECHECK_AFTER later. Marking spares a connection connected after the erasure
(the tombstone let that connect through: it is the user's new connection). Whatever the interleaving, a connect
whose flow was issued before the erasure must not survive it. On moto with the simulated TikTok.
"""

from __future__ import annotations

import pytest
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.usecases.erasure import Erasures

from tests.integration.conftest import location_query
from tests.integration.test_backend_api import call, item, run_jobs
from tests.integration.test_durable_disconnect import finish_marking
from tests.integration.test_erasure_tombstone import connect_url, erase, owner_connections

pytestmark = pytest.mark.integration


def back_from_tiktok(browser, tiktok) -> str:
    """A connect issued now, consented at TikTok: the callback URL the browser is about to open."""
    authorize = browser.get(connect_url())
    return tiktok.approve(authorize["headers"]["Location"], user="alice")


def test_a_callback_that_checked_just_before_the_erasure_and_wrote_just_after_is_erased(stack, tiktok, browser,
                                                                                      clock, monkeypatch):
    """The callback's last tombstone check passes; the erasure lands (tombstone, first marking pass: nothing
    there yet); then the callback writes. Its `connected_at` is the callback's start, before its check, so not
    after the erasure: the recheck a minute later marks it. Kept as a regression test."""
    callback_url = back_from_tiktok(browser, tiktok)
    clock.advance(5)
    write_grant = ConnectionStore.write_grant
    operations = []

    def erasure_lands_before_the_write(self, plan):
        clock.advance(2)  # the exchange took a while; the owner's erasure comes in meanwhile
        monkeypatch.setattr(ConnectionStore, "write_grant", write_grant)
        operations.append(erase())
        return write_grant(self, plan)

    monkeypatch.setattr(ConnectionStore, "write_grant", erasure_lands_before_the_write)
    result = location_query(browser.get(callback_url))
    assert result["status"] == ["connected"]  # the callback never saw the tombstone
    connection_id = result["connection_id"][0]
    run_jobs()
    finish_marking(clock)
    run_jobs()
    assert owner_connections() == [] and item(connection_id) == {}
    assert not tiktok.grants_for(tiktok.users["alice"].open_id)
    assert call("GET", operations[0]["status_url"])[1]["status"] == "succeeded"


def test_a_callback_run_while_the_erasure_writes_its_tombstone_is_erased(stack, tiktok, browser, clock,
                                                                         monkeypatch):
    """The erasure takes its time, then computes the owner's key (a KMS call) and writes the tombstone; a
    callback that starts in the next second and checks before the tombstone lands writes a connection whose
    `connected_at` is after the erasure's time. Found by this test: that connection survived the erasure."""
    callback_url = back_from_tiktok(browser, tiktok)
    clock.advance(5)
    record = Erasures.record
    results = []

    def slow_key_service(self, owner_id, erased_at):
        clock.advance(1)  # the key service answers slowly: a callback runs meanwhile, start to end
        results.append(location_query(browser.get(callback_url)))
        return record(self, owner_id, erased_at)

    monkeypatch.setattr(Erasures, "record", slow_key_service)
    operation = erase()
    monkeypatch.setattr(Erasures, "record", record)
    assert results[0]["status"] == ["connected"]  # the tombstone was not there yet
    connection_id = results[0]["connection_id"][0]
    run_jobs()
    finish_marking(clock)
    run_jobs()
    assert owner_connections() == [] and item(connection_id) == {}
    assert not tiktok.grants_for(tiktok.users["alice"].open_id)
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"


def test_a_connect_begun_after_the_erasure_still_survives_it(stack, tiktok, browser, clock):
    """The other side of the rule: a connect issued after the erasure is the user's new connection."""
    operation = erase()
    clock.advance(1)
    callback_url = back_from_tiktok(browser, tiktok)
    connection_id = location_query(browser.get(callback_url))["connection_id"][0]
    run_jobs()
    finish_marking(clock)
    run_jobs()
    assert [c["connection_id"] for c in owner_connections()] == [connection_id]
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"
