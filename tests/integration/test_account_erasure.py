"""Erasing a provider account: every connection of it, whichever owner made it, durably (issue 12, case 1).

A provider's data-deletion request names its account (TikTok's open_id), not the app's owner. The API answers
202 with an `erase_account` operation at once; the job that ends owner erasures revokes, disconnects and
deletes each connection, and survives a crash after any step.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.usecases.disconnect import Disconnection

from local import apigw
from tests.integration.test_backend_api import call, connect, item, run_jobs
from tests.integration.test_durable_disconnect import crash_once, disconnected_events, finish_marking

pytestmark = pytest.mark.integration


def account_path(open_id: str) -> str:
    return f"/providers/tiktok/accounts/{quote(open_id, safe='')}/connections"


def operations() -> list[dict]:
    scan = boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])
    return [i for i in scan["Items"] if i["connection_id"]["S"].startswith("op#")]


def test_every_owner_s_connection_of_the_account_is_revoked_disconnected_and_deleted(stack, tiktok, browser,
                                                                                    clock):
    alice = tiktok.users["alice"].open_id
    hers = [connect(browser, tiktok, user="alice", owner_id=o)["connection_id"][0] for o in ("owner-1", "owner-2")]
    bobs = connect(browser, tiktok, user="bob", owner_id="owner-1")["connection_id"][0]
    stack.received_events()

    status, operation = call("DELETE", account_path(alice))
    assert status == 202, operation
    assert operation["kind"] == "erase_account" and operation["status"] == "running"
    assert (operation["provider"], operation["account_id"], operation["owner_id"]) == ("tiktok", alice, None)
    assert operation["remaining"] == 2
    assert all(call("GET", f"/connections/{c}/token")[0] == 409 for c in hers)  # no token from the answer on
    assert call("GET", f"/connections/{bobs}/token")[0] == 200

    run_jobs()
    assert all(item(c) == {} for c in hers) and tiktok.grants_for(alice) == []
    assert item(bobs)["status"]["S"] == "active" and tiktok.grants_for(tiktok.users["bob"].open_id)
    assert len(disconnected_events(stack)) == 2 and tiktok.stats["revocations"] == 2
    finish_marking(clock)
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["remaining"] == 0 and done["revoke_failed"] == 0


def test_an_account_id_with_reserved_characters_arrives_percent_encoded_and_is_decoded_once(stack, tiktok,
                                                                                            browser, clock):
    alice = tiktok.users["alice"].open_id
    mine = connect(browser, tiktok)["connection_id"][0]
    every_char_escaped = "".join(f"%{b:02X}" for b in alice.encode())
    status, operation = call("DELETE", f"/providers/tiktok/accounts/{every_char_escaped}/connections")
    assert status == 202 and operation["account_id"] == alice and operation["remaining"] == 1
    run_jobs()
    assert item(mine) == {}


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/providers/nope/accounts/acct-1/connections", 404, "unknown_provider"),
    ("/providers/tiktok/accounts/a%20b/connections", 400, "invalid_request"),
    ("/providers/tiktok/accounts/" + "a" * 129 + "/connections", 400, "invalid_request"),
    ("/providers/tiktok/accounts/%E2%82%AC/connections", 400, "invalid_request"),  # not ASCII
    ("/providers/tiktok/accounts/%00/connections", 400, "invalid_request"),
])
def test_bad_input_is_a_clear_4xx_and_nothing_is_stored(stack, path, status, code):
    answer, body = call("DELETE", path)
    assert (answer, body["error"]["code"]) == (status, code), body
    assert operations() == []


def test_an_account_with_no_connection_gets_an_operation_that_has_already_succeeded(stack, clock):
    _, operation = call("DELETE", account_path("nobody-here"))
    assert operation["remaining"] == 0
    finish_marking(clock)
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"


@pytest.mark.parametrize(("owner", "step"), [
    (Disconnection, "_mark"),  # the API call dies while marking
    (Disconnection, "_kick"),  # ...after marking, before handing the connections to the worker
    (Disconnection, "mark_disconnected"),  # the job dies after the revoke, before the tokens are erased
    (ConnectionStore, "erase"),  # ...after the event, before the item is deleted
])
def test_a_crash_after_any_step_is_finished_by_a_retry_or_the_next_sweep(stack, tiktok, browser, monkeypatch,
                                                                         clock, owner, step):
    alice = tiktok.users["alice"].open_id
    hers = [connect(browser, tiktok, user="alice", owner_id=o)["connection_id"][0] for o in ("owner-1", "owner-2")]
    stack.received_events()
    crash_once(monkeypatch, owner, step)
    answer = apigw.invoke("DELETE", account_path(alice))
    if answer["statusCode"] == 500:  # the crash hit the API call: the data-protection job tries again
        status, operation = call("DELETE", account_path(alice))
    else:
        status, operation = 202, json.loads(answer["body"])
    assert status == 202
    for _ in range(3):
        run_jobs()
    assert all(item(c) == {} for c in hers) and tiktok.grants_for(alice) == []
    assert len(disconnected_events(stack)) == 2
    finish_marking(clock)
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"


def test_a_call_with_no_time_to_mark_leaves_the_marking_to_the_job(stack, tiktok, browser, clock):
    alice = tiktok.users["alice"].open_id
    hers = [connect(browser, tiktok, user="alice", owner_id=o)["connection_id"][0]
            for o in ("owner-1", "owner-2", "owner-3")]
    erasure = root.container().disconnection
    operation = erasure.request_account_erasure("tiktok", alice, deadline=clock.now() + 1)
    assert operation["status"] == "running"
    assert all(call("GET", f"/connections/{c}")[1]["status"] == "active" for c in hers)
    run_jobs()  # the sweep finds the operation; the worker marks the connections and queues them
    run_jobs()
    assert all(item(c) == {} for c in hers) and tiktok.stats["revocations"] == 3
    finish_marking(clock)
    assert erasure.operation(operation["operation_id"])["status"] == "succeeded"


def test_a_connection_of_the_account_made_after_the_request_is_the_user_s_new_consent_and_stays(stack, tiktok,
                                                                                                browser, clock):
    alice = tiktok.users["alice"].open_id
    before = connect(browser, tiktok)["connection_id"][0]
    _, operation = call("DELETE", account_path(alice))
    run_jobs()
    assert item(before) == {}
    clock.advance(1)
    after = connect(browser, tiktok)["connection_id"][0]  # same owner, same account: a new connection
    finish_marking(clock)
    clock.advance(3600)
    run_jobs()
    assert after != before and item(after)["status"]["S"] == "active"  # the erased one's id is never reused
    assert call("GET", f"/connections/{after}/token")[0] == 200
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"


def test_a_revoke_tiktok_never_accepts_is_counted_on_the_operation_after_the_item_is_gone(stack, tiktok, browser,
                                                                                          clock):
    alice = tiktok.users["alice"].open_id
    mine = connect(browser, tiktok)["connection_id"][0]
    tiktok.set_outage("5xx")
    _, operation = call("DELETE", account_path(alice))
    while item(mine):
        assert clock.now() - 1_800_000_000 < 2 * 86_400
        run_jobs()
        if item(mine):
            clock.advance(max(1, int(item(mine)["next_refresh_at"]["N"]) - clock.now()))
    tiktok.clear_faults()
    finish_marking(clock)
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["revoke_failed"] == 1


def test_following_an_erasure_of_many_connections_reads_a_bounded_number_of_items(stack, tiktok, browser, clock,
                                                                                  monkeypatch):
    """GET /operations must answer within the API's time however many connections the erasure covers: past
    COUNT_LIMIT items it reports a lower bound and stays `running` (never a premature `succeeded`)."""
    from oauth_keeper.usecases import disconnect

    monkeypatch.setattr(disconnect, "COUNT_LIMIT", 2)
    mine = [connect(browser, tiktok, user="alice", owner_id=o)["connection_id"][0]
            for o in ("owner-1", "owner-2", "owner-3")]
    _, operation = call("DELETE", account_path(tiktok.users["alice"].open_id))
    reads: list[str] = []
    store = root.container().connections
    original = store.get
    monkeypatch.setattr(store, "get", lambda key: (reads.append(key), original(key))[1])
    view = call("GET", operation["status_url"])[1]
    assert len(reads) <= 2 and view["status"] == "running" and 1 <= view["remaining"] <= 2
    monkeypatch.setattr(store, "get", original)
    run_jobs()
    finish_marking(clock)
    assert all(item(c) == {} for c in mine)
    assert call("GET", operation["status_url"])[1]["status"] == "succeeded"
