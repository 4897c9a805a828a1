"""An owner's erasure ends every connect in progress (issue 12, case 2): links and flows issued before it are
refused through the real handlers on moto, the owner's sessions and flows are deleted at once, the tombstone
holds no owner id, and a connect started after the erasure works."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.adapters.flows import DynamoFlowStore
from oauth_keeper.domain.erasure import TOMBSTONE_KEPT
from oauth_keeper.domain.flows import SESSION_TTL, secret_hash

from tests.integration.conftest import APP_ORIGIN, create_session, location_query
from tests.integration.test_backend_api import call, connect, run_jobs

pytestmark = pytest.mark.integration


def flows_items() -> list[dict]:
    answer = boto3.client("dynamodb").scan(TableName=os.environ["FLOWS_TABLE"])
    return answer["Items"]


def owner_connections(owner_id: str = "owner-1") -> list[dict]:
    status, body = call("GET", "/connections", raw_query=f"owner_id={owner_id}")
    assert status == 200
    return body["connections"]


def erase(owner_id: str = "owner-1") -> dict:
    status, operation = call("DELETE", f"/owners/{owner_id}/connections")
    assert status == 202, operation
    return operation


def connect_url(owner_id: str = "owner-1") -> str:
    created = create_session(owner_id=owner_id)
    assert created["statusCode"] == 201, created
    return json.loads(created["body"])["connect_url"]


def test_a_connect_link_issued_before_the_erasure_cannot_connect_the_owner_afterwards(stack, tiktok, browser, clock):
    link = connect_url()
    clock.advance(30)
    erase()
    clock.advance(30)
    page = browser.get(link)
    assert page["statusCode"] == 410 and "Location" not in page.get("headers", {})
    assert "start again" in page["body"] and page["headers"]["Content-Type"].startswith("text/html")
    assert tiktok.stats["authorizations"] == 0 and owner_connections() == []
    assert not [i for i in flows_items() if i["flow_key"]["S"].startswith("state#")]  # no flow stored


def test_an_oauth_flow_started_before_the_erasure_cannot_connect_the_owner_afterwards(stack, tiktok, browser, clock):
    authorize = browser.get(connect_url())
    back_from_tiktok = tiktok.approve(authorize["headers"]["Location"], user="alice")
    clock.advance(30)
    erase()
    page = browser.get(back_from_tiktok)
    # The erasure deleted the flow: the callback finds nothing to complete (an HTML page, never a 5xx).
    assert page["statusCode"] == 400 and "start again" in page["body"]
    assert tiktok.stats["code_exchanges"] == 0 and owner_connections() == []


def test_a_flow_the_erasure_could_not_find_yet_is_refused_by_the_tombstone(stack, tiktok, browser, clock,
                                                                           monkeypatch):
    """The owner index lags its table a little: a flow it did not show the erasure is refused all the same, back
    to the app with a retryable error, before the code is exchanged."""
    authorize = browser.get(connect_url())
    back_from_tiktok = tiktok.approve(authorize["headers"]["Location"], user="alice")
    monkeypatch.setattr(DynamoFlowStore, "delete_owned", lambda self, *a, **k: (0, None))
    erase()
    answer = browser.get(back_from_tiktok)
    assert answer["statusCode"] == 302
    assert answer["headers"]["Location"].startswith(APP_ORIGIN)
    result = location_query(answer)
    assert result["status"] == ["error"] and result["error"] == ["owner_erased"] and result["retryable"] == ["true"]
    assert tiktok.stats["code_exchanges"] == 0 and owner_connections() == []


def test_an_erasure_during_the_code_exchange_stores_nothing_and_hands_the_grant_to_the_revoke(stack, tiktok,
                                                                                              browser, monkeypatch):
    authorize = browser.get(connect_url())
    back_from_tiktok = tiktok.approve(authorize["headers"]["Location"], user="alice")
    provider = root.container().provider
    exchange = provider.exchange_code

    def erased_meanwhile(*args, **kwargs):
        tokens = exchange(*args, **kwargs)
        root.container().disconnection.request_erasure("owner-1")
        return tokens

    monkeypatch.setattr(provider, "exchange_code", erased_meanwhile)
    result = location_query(browser.get(back_from_tiktok))
    assert result["error"] == ["owner_erased"] and owner_connections() == []
    monkeypatch.undo()
    run_jobs()  # the orphaned grant is revoked in the background
    assert tiktok.stats["revocations"] == 1


def test_the_owners_sessions_and_flows_are_gone_right_after_the_erasure(stack, tiktok, browser, clock):
    connect_url()
    browser.get(connect_url())  # a flow, waiting for the user at TikTok
    connect_url(owner_id="owner-2")
    owner_keys = {i.get("owner_key", {}).get("S") for i in flows_items()}
    assert len(owner_keys) == 2 and None not in owner_keys
    erase()
    left = flows_items()
    # owner-2's session, and owner-1's tombstone
    assert sorted(i["flow_key"]["S"].split("#")[0] for i in left) == ["erased", "session"]
    (tombstone,) = [i for i in left if i["flow_key"]["S"].startswith("erased#")]
    assert set(tombstone) == {"flow_key", "kind", "erased_at", "purge_at"}
    assert int(tombstone["purge_at"]["N"]) == int(tombstone["erased_at"]["N"]) + TOMBSTONE_KEPT
    assert "owner-1" not in json.dumps(left)  # the tombstone names the owner by its keyed hash alone
    (remaining,) = [i for i in left if i["flow_key"]["S"].startswith("session#")]
    assert remaining["owner_id"]["S"] == "owner-2"


def test_sessions_the_erasure_call_had_no_time_for_are_deleted_by_the_job(stack, tiktok, browser, clock):
    connect_url()
    root.container().disconnection.request_erasure("owner-1", deadline=clock.now() + 1)
    assert [i for i in flows_items() if i["flow_key"]["S"].startswith("session#")]  # refused, not yet deleted
    run_jobs()
    assert [i["flow_key"]["S"].split("#")[0] for i in flows_items()] == ["erased"]


def test_a_connect_started_after_the_erasure_works_and_survives_the_erasures_job(stack, tiktok, browser, clock):
    assert connect(browser, tiktok)["status"] == ["connected"]
    erase()
    clock.advance(1)
    result = connect(browser, tiktok, user="bob")
    assert result["status"] == ["connected"]
    run_jobs()  # the erasure's job deletes only what was issued before it
    run_jobs()
    assert [c["connection_id"] for c in owner_connections()] == result["connection_id"]


def test_a_connect_link_asked_for_in_the_erasures_own_second_is_refused_then_given_a_second_later(stack, clock):
    erase()
    refused = create_session()
    assert refused["statusCode"] == 409
    assert json.loads(refused["body"])["error"]["code"] == "owner_erased"
    assert [i["flow_key"]["S"].split("#")[0] for i in flows_items()] == ["erased"]  # nothing stored
    clock.advance(1)
    assert create_session()["statusCode"] == 201


def test_a_session_stored_by_the_previous_version_is_refused_after_the_erasure(stack, tiktok, browser, clock):
    """Sessions written before this version carry neither issued_at nor owner_key: the check reads its issue
    time from expires_at and hashes the owner id."""
    token = "old-session-token"
    boto3.client("dynamodb").put_item(TableName=os.environ["FLOWS_TABLE"], Item={
        "flow_key": {"S": secret_hash("session", token)}, "kind": {"S": "session"}, "owner_id": {"S": "owner-1"},
        "provider": {"S": "tiktok"}, "return_to": {"S": f"{APP_ORIGIN}/settings"}, "scopes": {"L": []},
        "mode": {"S": "redirect"}, "expires_at": {"N": str(int(clock.now()) + SESSION_TTL)},
        "purge_at": {"N": str(int(clock.now()) + SESSION_TTL + 86_400)},
    })
    erase()
    clock.advance(5)
    page = browser.get(f"https://keeper.example.com/connect/tiktok?session={token}")
    assert page["statusCode"] == 410 and tiktok.stats["authorizations"] == 0


@pytest.mark.parametrize("owner_id", ["a/b", "x" * 129, "owner%00", "ünïcode"])
def test_an_erasure_of_a_malformed_owner_id_is_a_400_and_records_nothing(stack, owner_id):
    from urllib.parse import quote

    status, body = call("DELETE", f"/owners/{quote(owner_id, safe='')}/connections")
    assert 400 <= status < 500, body
    assert flows_items() == []
