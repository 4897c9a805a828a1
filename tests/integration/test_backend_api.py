"""The app's backend API over the template's IAM routes, and TikTok's deauthorization webhook."""

from __future__ import annotations

import json
import os
import threading
import time

import boto3
import pytest
from oauth_keeper import root

from local import apigw
from local.stack import another_container
from tests.integration.conftest import create_session, location_query

pytestmark = pytest.mark.integration


def connect(browser, tiktok, user="alice", owner_id="owner-1", scopes=None, **extra) -> dict:
    created = create_session(owner_id=owner_id, **extra)
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    return location_query(browser.get(tiktok.approve(authorize["headers"]["Location"], user=user, scopes=scopes)))


def call(method: str, path: str, raw_query: str = "", **kwargs) -> tuple[int, dict]:
    response = apigw.invoke(method, path, raw_query=raw_query, **kwargs)
    return response["statusCode"], json.loads(response["body"])


def current_grant(tiktok, user="alice"):
    (grant,) = tiktok.grants_for(tiktok.users[user].open_id)
    return grant


def item(connection_id: str) -> dict:
    return boto3.client("dynamodb").get_item(TableName=os.environ["CONNECTIONS_TABLE"],
                                             Key={"connection_id": {"S": connection_id}}).get("Item", {})


# -- GET /connections/{id}/token ----------------------------------------------------------------------------
def test_token_route_serves_the_current_access_token_and_audits_the_read(stack, tiktok, browser, log_output):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, body = call("GET", f"/connections/{connection_id}/token")
    assert status == 200
    assert body["access_token"] == current_grant(tiktok).access_token
    assert body["token_type"] == "Bearer" and body["account_id"] == tiktok.users["alice"].open_id
    assert body["expires_at"] == "2027-01-15T10:00:00Z" and "user.info.basic" in body["scopes"]
    assert tiktok.stats["refreshes"] == 0  # valid for longer than the 300 s buffer: no refresh
    out = log_output.getvalue()
    audit = [json.loads(line) for line in out.splitlines() if '"audit":"token_read"' in line]
    assert audit and audit[0]["caller"] == apigw.LOCAL_CALLER_ARN and audit[0]["connection_id"] == connection_id
    assert body["access_token"] not in out


def test_token_route_refreshes_first_when_the_token_expires_within_the_buffer(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    old = current_grant(tiktok).access_token
    clock.advance(7200 - 200)  # 200 s left, less than the default 300 s buffer
    status, body = call("GET", f"/connections/{connection_id}/token")
    assert status == 200 and body["access_token"] != old
    assert body["access_token"] == current_grant(tiktok).access_token
    assert tiktok.stats["refresh_successes"] == 1
    status, again = call("GET", f"/connections/{connection_id}/token", raw_query="min_valid_seconds=3600")
    assert again["access_token"] == body["access_token"] and tiktok.stats["refreshes"] == 1


def test_token_route_waits_for_a_refresh_already_in_flight_instead_of_refreshing_again(stack, tiktok, browser,
                                                                                        clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(7200 - 100)
    tiktok.latency = 1.0  # the sweep's refresh is slow to answer
    sweep_refresh = threading.Thread(target=another_container().refresher.refresh, args=(connection_id,))
    sweep_refresh.start()
    store = root.container().connections
    while not store.get(connection_id).lease_owner:  # the sweep's worker holds the lease now
        time.sleep(0.01)
    status, body = call("GET", f"/connections/{connection_id}/token")
    sweep_refresh.join()
    assert status == 200
    assert body["access_token"] == current_grant(tiktok).access_token  # the sibling's fresh token
    assert tiktok.stats["refreshes"] == 1


def test_a_connection_that_needs_the_user_answers_409_with_status_and_reason(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    tiktok.revoke_user(tiktok.users["alice"].open_id)
    clock.advance(7200)
    status, body = call("GET", f"/connections/{connection_id}/token")
    assert status == 409
    assert body["error"]["status"] == "needs_reauth" and body["error"]["reason"] == "invalid_grant"
    assert body["error"]["code"] == "needs_reauth" and body["error"]["message"]
    assert call("GET", "/connections/con_" + "a" * 32 + "/token")[0] == 404


def test_provider_trouble_with_an_expired_token_is_a_retryable_503(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(7300)
    tiktok.set_outage("5xx")
    status, body = call("GET", f"/connections/{connection_id}/token")
    assert status == 503 and body["error"]["retryable"] is True
    assert "access_token" not in json.dumps(body)


@pytest.mark.parametrize("query", ["min_valid_seconds=-1", "min_valid_seconds=abc", "min_valid_seconds=99999",
                                   "min_valid_seconds=1&min_valid_seconds=2"])
def test_bad_token_parameters_are_400(stack, tiktok, browser, query):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, body = call("GET", f"/connections/{connection_id}/token", raw_query=query)
    assert status == 400 and body["error"]["field"] == "min_valid_seconds"


# -- listing and inspecting ---------------------------------------------------------------------------------
def test_connections_are_listed_by_owner_in_pages_without_tokens(stack, tiktok, browser):
    ids = {connect(browser, tiktok, user=u)["connection_id"][0] for u in ("alice", "bob", "carol")}
    connect(browser, tiktok, user="alice", owner_id="someone-else")
    status, first = call("GET", "/connections", raw_query="owner_id=owner-1&limit=2")
    assert status == 200 and len(first["connections"]) == 2 and first["next_cursor"]
    status, second = call("GET", "/connections", raw_query=f"owner_id=owner-1&limit=2&cursor={first['next_cursor']}")
    assert status == 200 and second["next_cursor"] is None
    listed = {c["connection_id"] for c in first["connections"] + second["connections"]}
    assert listed == ids
    dump = json.dumps([first, second])
    for user in ("alice", "bob", "carol"):
        grant = current_grant(tiktok, user) if user != "alice" else None
        if grant:
            assert grant.access_token not in dump and grant.refresh_token not in dump
    view = first["connections"][0]
    assert view["status"] == "active" and view["last_refresh"]["outcome"] is None
    assert set(view) >= {"scopes_granted", "access_expires_at", "refresh_expires_at", "status_reason"}


@pytest.mark.parametrize(("query", "field"), [("", "owner_id"), ("owner_id=a%20b", "owner_id"),
                                              ("owner_id=o&cursor=garbage", "cursor"),
                                              ("owner_id=o&limit=0", "limit")])
def test_bad_list_parameters_are_400(stack, query, field):
    status, body = call("GET", "/connections", raw_query=query)
    assert status == 400 and body["error"]["field"] == field


def test_one_connection_shows_its_health(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(7200 - 200)
    call("POST", f"/connections/{connection_id}/refresh")
    status, view = call("GET", f"/connections/{connection_id}")
    assert status == 200
    assert view["last_refresh"]["outcome"] == "succeeded" and view["refresh_in_doubt"] is False
    assert view["display_name"] == tiktok.users["alice"].display_name
    assert call("GET", "/connections/nope")[0] == 404


def test_force_refresh_goes_through_the_single_flight(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, body = call("POST", f"/connections/{connection_id}/refresh")
    assert status == 200 and body["result"] == "refreshed"
    assert tiktok.stats["refresh_successes"] == 1
    assert body["connection"]["status"] == "active"


def test_unsigned_calls_to_every_iam_route_are_refused(stack):
    for route in apigw.routes():
        if route.auth != "AWS_IAM":
            continue
        path = route.path.replace("{connection_id}", "con_x").replace("{owner_id}", "o")
        assert apigw.invoke(route.method, path, caller_arn=None, body="{}")["statusCode"] == 403


# -- disconnecting -----------------------------------------------------------------------------------------
def run_jobs() -> dict:
    """One sweep and one refresh-worker pass, as the scheduled functions run them: the disconnect job's steps."""
    from local.memory import ListQueue
    from local.stack import sweep_into

    queue = ListQueue()
    sweep_into(queue)
    return root.container().refresh_worker.process(queue.drain())


def test_disconnect_answers_at_once_and_the_job_revokes_erases_and_publishes(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    grant = current_grant(tiktok)
    stack.received_events()
    status, operation = call("DELETE", f"/connections/{connection_id}")
    assert status == 202
    assert operation["kind"] == "disconnect" and operation["status"] == "running"
    assert operation["connection_id"] == connection_id and operation["remaining"] == 1
    assert operation["status_url"] == f"/operations/{operation['operation_id']}"
    # From the answer on, no token is served, though nothing has been revoked yet.
    status, refused = call("GET", f"/connections/{connection_id}/token")
    assert status == 409 and refused["error"]["code"] == "disconnecting"
    assert tiktok.stats["revocations"] == 0 and call("GET", f"/connections/{connection_id}")[1]["status"] == \
        "disconnecting"

    assert run_jobs() == {"batchItemFailures": []}
    assert tiktok.stats["revocations"] == 1 and not tiktok.grants_for(grant.open_id)
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and stored["status_reason"]["S"] == "app_disconnected"
    assert "tokens" not in stored and "next_refresh_at" not in stored
    (event,) = stack.received_events()
    assert event["detail-type"] == "Connection Disconnected" and event["detail"]["revoke_failed"] is False
    status, done = call("GET", operation["status_url"])
    assert status == 200 and done["status"] == "succeeded" and done["remaining"] == 0 and done["revoke_failed"] == 0

    status, again = call("DELETE", f"/connections/{connection_id}")  # again: nothing new happens
    assert status == 202 and again["status"] == "succeeded"
    run_jobs()
    assert tiktok.stats["revocations"] == 1 and stack.received_events() == []
    assert call("GET", f"/connections/{connection_id}/token")[0] == 409


def test_a_revoke_that_keeps_failing_is_retried_for_a_day_then_recorded_and_the_tokens_erased(stack, tiktok,
                                                                                               browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    tiktok.set_outage("5xx")
    _, operation = call("DELETE", f"/connections/{connection_id}")
    attempts = 0
    while item(connection_id)["status"]["S"] == "disconnecting":
        assert clock.now() - 1_800_000_000 < 2 * 86_400
        run_jobs()
        attempts = tiktok.stats["faults_injected"]
        stored = item(connection_id)
        if stored["status"]["S"] == "disconnecting":
            assert "tokens" in stored  # kept (sealed) until the revoke succeeds or is given up
            clock.advance(max(1, int(stored["next_refresh_at"]["N"]) - clock.now()))
    assert 10 <= attempts <= 100  # capped backoff (full jitter up to 1 h) over a day: not one attempt a sweep (288)
    stored = item(connection_id)
    assert stored["revoke_failed"]["BOOL"] is True and stored["revoke_log_id"]["S"]
    assert "tokens" not in stored
    view = call("GET", f"/connections/{connection_id}")[1]
    assert view["revoke"] == {"failed": True, "provider_log_id": stored["revoke_log_id"]["S"]}  # the app sees it
    assert call("GET", operation["status_url"])[1]["revoke_failed"] == 1


def test_erasing_an_owner_marks_every_connection_then_the_job_revokes_and_deletes_them(stack, tiktok, browser,
                                                                                        clock):
    mine = [connect(browser, tiktok, user=u)["connection_id"][0] for u in ("alice", "bob")]
    other = connect(browser, tiktok, user="carol", owner_id="owner-2")["connection_id"][0]
    stack.received_events()
    status, operation = call("DELETE", "/owners/owner-1/connections")
    assert status == 202 and operation["kind"] == "erase_owner" and operation["owner_id"] == "owner-1"
    assert operation["status"] == "running" and operation["remaining"] == 2
    assert all(call("GET", f"/connections/{c}/token")[0] == 409 for c in mine)  # no token from now on

    run_jobs()
    assert all(item(c) == {} for c in mine)
    assert item(other)["status"]["S"] == "active"
    kinds = [e["detail-type"] for e in stack.received_events()]
    assert kinds == ["Connection Disconnected", "Connection Disconnected"]
    assert tiktok.stats["revocations"] == 2
    _, nobody = call("DELETE", "/owners/nobody/connections")
    clock.advance(61)  # the erasure marks once more a minute later, for what the owner index did not show yet
    run_jobs()
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["remaining"] == 0 and done["revoke_failed"] == 0
    assert call("GET", nobody["status_url"])[1]["status"] == "succeeded"


def test_an_unknown_operation_is_a_404(stack):
    for operation_id in ("op_unknown", "not-an-op", "op_" + "x" * 100):
        status, body = call("GET", f"/operations/{operation_id}")
        assert status == 404 and body["error"]["code"] == "operation_not_found"


# -- scope upgrades ----------------------------------------------------------------------------------------
def test_a_scope_upgrade_updates_the_same_connection_and_reports_what_was_granted(stack, tiktok, browser):
    first = connect(browser, tiktok, scopes=["user.info.basic"])
    connection_id = first["connection_id"][0]
    upgraded = connect(browser, tiktok, connection_id=connection_id, scopes=["user.info.basic", "video.list"])
    assert upgraded["connection_id"] == [connection_id]
    assert upgraded["granted_scopes"] == ["user.info.basic,video.list"] and "missing_scopes" not in upgraded
    status, view = call("GET", f"/connections/{connection_id}")
    assert view["scopes_granted"] == ["user.info.basic", "video.list"]


def test_a_scope_upgrade_answered_by_another_account_changes_nothing(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    before = item(connection_id)
    result = connect(browser, tiktok, user="bob", connection_id=connection_id)
    assert result["status"] == ["error"] and result["error"] == ["account_mismatch"]
    assert item(connection_id)["token_version"] == before["token_version"]
    items = boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
    assert [i["connection_id"]["S"] for i in items if "owner_id" in i] == [connection_id]  # no connection for bob
    # bob's grant waits, sealed, for its background revoke (beside the guard item of alice's connection)
    (orphan,) = [i for i in items if "owner_id" not in i and not i["connection_id"]["S"].startswith("guard#")]
    assert orphan["connection_id"]["S"].startswith("orphan#") and orphan["why"]["S"] == "account_mismatch"


def test_a_scope_upgrade_must_name_a_connection_of_that_owner(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    assert create_session(owner_id="owner-2", connection_id=connection_id)["statusCode"] == 404
    assert create_session(connection_id="con_" + "b" * 32)["statusCode"] == 404
    assert create_session(connection_id="not-an-id")["statusCode"] == 400


# -- TikTok's webhook ---------------------------------------------------------------------------------------
def webhook(body: bytes, headers: dict) -> tuple[int, dict]:
    """One delivery to the webhook route, then what SQS does within seconds in AWS: the refresh worker's handler
    gets the removal the webhook queued (`local.stack.deliver_refresh_queue`). The webhook's own answer."""
    from local.stack import deliver_refresh_queue

    answer = call("POST", "/webhooks/tiktok", body=body.decode(), headers=headers, caller_arn=None)
    deliver_refresh_queue()
    return answer


def test_authorization_removed_disconnects_every_connection_of_that_account_once(stack, tiktok, browser, clock):
    mine = connect(browser, tiktok)["connection_id"][0]
    theirs = connect(browser, tiktok, owner_id="owner-2")["connection_id"][0]
    stack.received_events()
    clock.advance(3600)  # the user removes the app in TikTok an hour later
    body, headers = tiktok.signed_webhook(tiktok.users["alice"].open_id, reason=1)
    status, answer = webhook(body, headers)
    assert (status, answer) == (200, {"received": True, "handled": True, "queued": True})
    for connection_id in (mine, theirs):
        stored = item(connection_id)
        assert stored["status"]["S"] == "disconnected" and stored["status_reason"]["S"] == "user_revoked"
        assert call("GET", f"/connections/{connection_id}/token")[0] == 409
        assert "tokens" not in stored and "next_refresh_at" not in stored  # erased by the worker at once
    events = stack.received_events()
    assert [e["detail"]["reason"] for e in events] == ["user_revoked", "user_revoked"]
    assert events[0]["detail"]["provider_reason"] == 1
    assert webhook(body, headers) == (200, {"received": True, "handled": True, "duplicate": True})  # redelivery
    assert stack.received_events() == []


@pytest.mark.parametrize("tamper", ["body", "signature", "stale", "missing", "other_secret"])
def test_a_bad_or_stale_signature_is_401_and_changes_nothing(stack, tiktok, browser, clock, tamper):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = tiktok.users["alice"].open_id
    body, headers = tiktok.signed_webhook(open_id)
    if tamper == "body":
        body = body.replace(b"authorization.removed", b"authorization.removeD")
    elif tamper == "signature":
        headers["TikTok-Signature"] = headers["TikTok-Signature"][:-4] + "0000"
    elif tamper == "stale":
        body, headers = tiktok.signed_webhook(open_id, timestamp=int(clock.now()) - 301)
    elif tamper == "missing":
        headers.pop("TikTok-Signature")
    else:
        tiktok.rotate_client_secret("someone-else")
        body, headers = tiktok.signed_webhook(open_id)
    status, answer = webhook(body, headers)
    assert status == 401 and answer["error"]["code"] in ("invalid_signature", "stale_signature")
    assert item(connection_id)["status"]["S"] == "active"
