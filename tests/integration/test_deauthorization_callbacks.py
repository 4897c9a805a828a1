"""Meta-style signed deauthorize and data-deletion callbacks, end to end (issue 15, section 4).

A provider whose profile has a `deauthorization` section (here `meta_test`, tests/meta_profile.py) posts a form
`signed_request=<sig>.<payload>` signed with its own app secret. Through the template's public routes: a verified
deauthorization is queued and the refresh worker disconnects the account's older grants; a data-deletion request
is queued and the worker erases the account through the account-erasure job, while the status URL it answered
with says received, in progress, then completed, and nothing else.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import boto3
import pytest
from oauth_keeper import root

from local import apigw
from local.signed_request import callback_body, form, signed_request
from local.stack import deliver_refresh_queue
from tests.integration.conftest import BASE_URL, META_SECRET, install_from_env
from tests.integration.test_backend_api import call, connect, item, run_jobs
from tests.integration.test_connect_confirmation import claim, finish_connect
from tests.integration.test_durable_disconnect import disconnected_events, finish_marking

pytestmark = pytest.mark.integration


def post(path: str, body: bytes) -> tuple[int, dict]:
    response = apigw.invoke("POST", path, body=body.decode("ascii"), caller_arn=None,
                            headers={"content-type": "application/x-www-form-urlencoded"})
    return response["statusCode"], json.loads(response["body"])


def deauthorize(body: bytes) -> tuple[int, dict]:
    """Meta's POST to the deauthorize callback, then what SQS does within seconds: the worker's pass."""
    answer = post("/deauthorize/meta_test", body)
    deliver_refresh_queue()
    return answer


def status_of(url: str, *, accept: str = "application/json") -> tuple[int, dict | str]:
    """What the status URL answers a program (JSON) or, with a browser's `accept`, a person (a page)."""
    parts = urlsplit(url)
    response = apigw.invoke("GET", parts.path, raw_query=parts.query, caller_arn=None, headers={"accept": accept})
    body = response["body"]
    return response["statusCode"], json.loads(body) if response["headers"].get("Content-Type", response[
        "headers"].get("content-type", "")).startswith("application/json") else body


def queued() -> list[dict]:
    """A placeholder per message waiting in the removal queue or the refresh queue."""
    sqs, settings = boto3.client("sqs"), root.container().settings
    count = 0
    for url in (settings.removal_queue_url, settings.refresh_queue_url):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        count += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return [{}] * count


def user_id(meta_app, user: str = "alice") -> str:
    return meta_app.users[user].open_id


def test_a_verified_deauthorization_disconnects_every_connection_of_that_account(meta, browser, clock, stack):
    mine = connect(browser, meta, provider="meta_test")["connection_id"][0]
    theirs = connect(browser, meta, owner_id="owner-2", provider="meta_test")["connection_id"][0]
    stack.received_events()
    clock.advance(3600)  # the user removes the app in Facebook's settings an hour later
    status, answer = deauthorize(callback_body(META_SECRET, user_id(meta), int(clock.now())))
    assert (status, answer) == (200, {"received": True, "handled": True, "queued": True})
    for connection_id in (mine, theirs):
        view = call("GET", f"/connections/{connection_id}")[1]
        assert (view["status"], view["status_reason"]) == ("disconnected", "user_revoked")
        assert call("GET", f"/connections/{connection_id}/token")[0] == 409
    assert len(disconnected_events(stack)) == 2


def test_a_deauthorization_issued_before_a_reconnect_keeps_the_reconnect(meta, browser, clock):
    first = connect(browser, meta, provider="meta_test")["connection_id"][0]
    clock.advance(3600)
    issued_at = int(clock.now())  # the user removes the app...
    clock.advance(300)
    again = connect(browser, meta, provider="meta_test")["connection_id"][0]  # ...and connects again
    assert again == first
    clock.advance(180)  # Meta's request arrives late
    assert deauthorize(callback_body(META_SECRET, user_id(meta), issued_at))[0] == 200
    assert call("GET", f"/connections/{first}")[1]["status"] == "active"
    assert call("GET", f"/connections/{first}/token")[0] == 200


def test_the_same_deauthorization_again_is_a_duplicate_and_changes_nothing(meta, browser, clock, stack):
    connect(browser, meta, provider="meta_test")
    clock.advance(3600)
    body = callback_body(META_SECRET, user_id(meta), int(clock.now()))
    assert deauthorize(body)[1]["queued"] is True
    stack.received_events()
    clock.advance(600)
    connection_id = connect(browser, meta, provider="meta_test")["connection_id"][0]
    assert deauthorize(body) == (200, {"received": True, "handled": True, "duplicate": True})
    assert call("GET", f"/connections/{connection_id}")[1]["status"] == "active"
    assert disconnected_events(stack) == []


def _tampered() -> bytes:
    value = signed_request(META_SECRET, {"algorithm": "HMAC-SHA256", "issued_at": 1, "user_id": "x"})
    signature, _ = value.split(".")
    forged = signed_request(META_SECRET, {"algorithm": "HMAC-SHA256", "issued_at": 1, "user_id": "y"}).split(".")[1]
    return form(f"{signature}.{forged}")


BAD = {
    "forged payload": (_tampered, 401, "invalid_signature"),
    "another app's secret": (lambda: callback_body("sim-client-secret", "x", 1), 401, "invalid_signature"),
    "unsigned": (lambda: form("." + signed_request(META_SECRET, {"user_id": "x"}).split(".")[1]), 400,
                 "invalid_request"),
    "not a form": (lambda: b'{"signed_request": "a.b"}', 400, "invalid_request"),
    "no signed_request": (lambda: b"user_id=x", 400, "invalid_request"),
    "twice": (lambda: callback_body(META_SECRET, "x", 1) + b"&" + callback_body(META_SECRET, "x", 1), 400,
              "invalid_request"),
    "oversized": (lambda: callback_body(META_SECRET, "x", 1, padding="p" * 5000), 400, "too_large"),
    "unknown algorithm": (lambda: callback_body(META_SECRET, "x", 1, algorithm="HMAC-SHA1"), 400,
                          "unsupported_algorithm"),
    "no account": (lambda: callback_body(META_SECRET, "x", 1, drop=("user_id",)), 400, "invalid_request"),
    "payload not an object": (lambda: form(signed_request(META_SECRET, b"[1]")), 400, "invalid_request"),
}


@pytest.mark.parametrize("route", ["/deauthorize/meta_test", "/data-deletion/meta_test"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_signed_request_is_a_clear_4xx_and_nothing_is_queued_or_changed(meta, browser, clock, route, case):
    connection_id = connect(browser, meta, provider="meta_test")["connection_id"][0]
    make, status, code = BAD[case]
    answer, body = post(route, make())
    assert (answer, body["error"]["code"]) == (status, code), body
    assert "Traceback" not in json.dumps(body) and META_SECRET not in json.dumps(body)
    assert queued() == []
    assert call("GET", f"/connections/{connection_id}")[1]["status"] == "active"


def test_callbacks_of_a_provider_without_them_are_404(meta, clock):
    body = callback_body("sim-client-secret", "x", int(clock.now()))
    for route in ("/deauthorize/tiktok", "/data-deletion/tiktok", "/deauthorize/myspace"):
        answer, error = post(route, body)
        assert (answer, error["error"]["code"]) == (404, "unknown_provider"), route
    assert queued() == []


def test_data_deletion_erases_the_account_through_the_job_and_the_status_url_follows_it(meta, browser, clock,
                                                                                          stack):
    hers = [connect(browser, meta, owner_id=o, provider="meta_test")["connection_id"][0]
            for o in ("owner-1", "owner-2")]
    bobs = connect(browser, meta, user="bob", provider="meta_test")["connection_id"][0]
    clock.advance(3600)
    status, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, user_id(meta), int(clock.now())))
    assert status == 200 and set(answer) == {"url", "confirmation_code"}
    code = answer["confirmation_code"]
    assert answer["url"] == f"{BASE_URL}/data-deletion/meta_test?code={code}"
    assert code.isalnum() and len(code) >= 20
    assert status_of(answer["url"]) == (200, {"status": "received"})  # queued; the job has not begun
    assert all(item(c) for c in hers)  # the public function erased nothing itself

    deliver_refresh_queue()  # the worker begins the job, marks and revokes
    assert status_of(answer["url"]) == (200, {"status": "in_progress"})
    run_jobs()
    finish_marking(clock)
    assert all(item(c) == {} for c in hers) and meta.grants_for(user_id(meta)) == []
    assert item(bobs)["status"]["S"] == "active"
    assert status_of(answer["url"]) == (200, {"status": "completed"})


def test_the_status_page_is_a_page_a_person_reads_and_says_nothing_about_the_account(meta, browser, clock):
    connection_id = connect(browser, meta, provider="meta_test")["connection_id"][0]
    clock.advance(3600)
    _, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, user_id(meta), int(clock.now())))
    deliver_refresh_queue()
    run_jobs()
    finish_marking(clock)
    status, page = status_of(answer["url"], accept="text/html,application/xhtml+xml,*/*")
    assert status == 200 and "Deletion completed" in page
    status, upper = status_of(f"/data-deletion/meta_test?code={answer['confirmation_code'].upper()}")
    assert (status, upper) == (200, {"status": "completed"})  # typed in capitals: the same code
    for secret in (user_id(meta), connection_id, "owner-1"):
        assert secret not in page
    operations = [i for i in boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
                  if i["connection_id"]["S"].startswith("op#")]
    assert len(operations) == 1 and answer["confirmation_code"] not in json.dumps(operations)


@pytest.mark.parametrize(("path", "status"), [
    ("/data-deletion/meta_test?code=" + "a" * 26, 404),  # the shape of a code, none issued
    ("/data-deletion/meta_test?code=not-a-code", 400),
    ("/data-deletion/meta_test", 400),
    ("/data-deletion/meta_test?code=" + "a" * 26 + "&code=" + "b" * 26, 400),
    ("/data-deletion/tiktok?code=" + "a" * 26, 404),
    ("/data-deletion/myspace?code=" + "a" * 26, 404),
])
def test_a_status_of_no_request_is_a_clear_4xx(meta, path, status):
    answer, body = status_of(path)
    assert answer == status and set(body) == {"error"}, body
    answer, page = status_of(path, accept="text/html")
    assert answer == status and page.startswith("<!doctype html>")


def test_a_code_answers_only_for_its_provider(meta, clock):
    _, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, "acct-1", int(clock.now())))
    assert status_of(f"/data-deletion/tiktok?code={answer['confirmation_code']}")[0] == 404


def test_the_same_deletion_request_again_gets_the_same_answer_and_one_job(meta, browser, clock):
    connect(browser, meta, provider="meta_test")
    clock.advance(3600)
    body = callback_body(META_SECRET, user_id(meta), int(clock.now()))
    first = post("/data-deletion/meta_test", body)
    deliver_refresh_queue()
    clock.advance(120)
    assert post("/data-deletion/meta_test", body) == first
    assert queued() == []
    other = post("/data-deletion/meta_test", callback_body(META_SECRET, user_id(meta), int(clock.now())))[1]
    assert other["confirmation_code"] != first[1]["confirmation_code"]  # a new request, a new code


def test_data_deletion_spares_a_connection_granted_after_the_request(meta, browser, clock):
    clock.advance(3600)
    issued_at = int(clock.now())
    clock.advance(300)
    after = connect(browser, meta, provider="meta_test")["connection_id"][0]  # a new consent after the request
    clock.advance(600)  # Meta's request arrives later still: ordered by when it was issued, not received
    _, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, user_id(meta), issued_at))
    deliver_refresh_queue()
    run_jobs()
    finish_marking(clock)
    assert item(after)["status"]["S"] == "active"
    assert status_of(answer["url"]) == (200, {"status": "completed"})


@pytest.fixture
def meta_confirming(meta, clock, monkeypatch):
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")
    root.reset()
    install_from_env(clock=clock)
    return meta


def test_data_deletion_erases_a_grant_still_waiting_for_its_claim(meta_confirming, browser, clock):
    waiting = finish_connect(browser, meta_confirming, provider="meta_test")["claim"][0]
    clock.advance(60)
    _, answer = post("/data-deletion/meta_test",
                     callback_body(META_SECRET, user_id(meta_confirming), int(clock.now())))
    deliver_refresh_queue()
    status, body = claim(waiting, "owner-1")
    assert (status, body["error"]["code"]) == (404, "claim_not_found"), body  # discarded and deleted
    pending = [i for i in boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
               if i["connection_id"]["S"].startswith("pending#")]
    assert pending == []
    finish_marking(clock)
    assert status_of(answer["url"]) == (200, {"status": "completed"})


def test_a_data_deletion_message_delivered_twice_runs_one_job(meta, browser, clock):
    """SQS delivers at least once: the worker's second copy continues the job under the same operation id."""
    connection_id = connect(browser, meta, provider="meta_test")["connection_id"][0]
    clock.advance(3600)
    _, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, user_id(meta), int(clock.now())))
    sqs = boto3.client("sqs")
    url = root.container().settings.removal_queue_url
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    sqs.send_message(QueueUrl=url, MessageBody=message["Body"])  # the copy SQS may deliver again
    deliver_refresh_queue()
    run_jobs()
    finish_marking(clock)
    operations = [i for i in boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
                  if i["connection_id"]["S"].startswith("op#")]
    assert len(operations) == 1 and item(connection_id) == {}
    assert status_of(answer["url"]) == (200, {"status": "completed"})
