"""TikTok's removal webhook delivered late, twice or re-signed, through the real handler on moto (issue 12, case 3)."""

from __future__ import annotations

import json
import math
import os

import boto3
import pytest

from tests.integration.test_backend_api import call, connect, current_grant, item, webhook

pytestmark = pytest.mark.integration

HOUR = 3600


def emitted_metrics(out: str) -> dict[str, dict]:
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return {m["Name"]: blob for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def flows_items() -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=os.environ["FLOWS_TABLE"])["Items"]


def test_a_removal_created_before_a_reconnect_arrives_late_and_leaves_the_reconnect_connected(
        stack, tiktok, browser, clock, capfd, log_output):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(HOUR)
    open_id = tiktok.users["alice"].open_id
    tiktok.revoke_user(open_id)  # T0: the user removes the app in TikTok
    body, _ = tiktok.signed_webhook(open_id)  # the event, created at T0; its first attempt is lost
    clock.advance(120)
    assert connect(browser, tiktok)["connection_id"][0] == connection_id  # T0+120 s: a new grant
    clock.advance(60)
    stack.received_events()
    capfd.readouterr()

    status, answer = webhook(body, tiktok.resign_webhook(body))  # T0+180 s: TikTok's retry, signed anew

    out = capfd.readouterr().out
    assert status == 200 and answer == {"received": True, "handled": True, "queued": True}
    stored = item(connection_id)
    assert stored["status"]["S"] == "active" and "tokens" in stored
    status, token = call("GET", f"/connections/{connection_id}/token")
    assert status == 200 and token["access_token"] == current_grant(tiktok).access_token  # the live grant
    assert [e for e in stack.received_events() if e["detail-type"] == "Connection Disconnected"] == []
    ignored = emitted_metrics(out)["WebhookStaleIgnored"]  # what CloudWatch receives (EMF), from the worker
    assert ignored["WebhookStaleIgnored"] == [1.0] and ignored["service"] == "oauth-keeper"
    assert ignored["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OAuthKeeper"
    assert ignored["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    logs = log_output.getvalue()
    (line,) = [json.loads(x) for x in logs.splitlines() if "older than the connection's latest grant" in x]
    assert line["connection_ids"] == [connection_id] and line["function_name"] == "RefreshWorkerFunction"
    (queued,) = [json.loads(x) for x in logs.splitlines() if "Authorization removed at the provider: queued" in x]
    assert queued["event_time_from"] == "event" and queued["function_name"] == "WebhookFunction"
    for secret in (current_grant(tiktok).access_token, current_grant(tiktok).refresh_token, tiktok.client_secret,
                   body.decode(), tiktok.resign_webhook(body)["TikTok-Signature"]):
        assert secret not in logs and secret not in out


def test_a_re_signed_retry_of_a_handled_removal_is_a_duplicate_even_after_a_reconnect(stack, tiktok, browser,
                                                                                      clock):
    """Without `create_time` the signature's time is all there is, and a retry signed after a reconnect would
    look newer than it: the delivery is recognised by its body, remembered in the Flows table."""
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(HOUR)
    open_id = tiktok.users["alice"].open_id
    tiktok.revoke_user(open_id)
    body, headers = tiktok.signed_webhook(open_id, drop=("create_time",))
    assert webhook(body, headers)[1]["queued"] is True
    assert item(connection_id)["status"]["S"] == "disconnected"
    clock.advance(600)
    connect(browser, tiktok)  # the user comes back
    clock.advance(71 * HOUR)  # TikTok retries the same body near the end of its 72 h window, signed anew
    stack.received_events()

    status, answer = webhook(body, tiktok.resign_webhook(body))

    assert (status, answer) == (200, {"received": True, "handled": True, "duplicate": True})
    assert item(connection_id)["status"]["S"] == "active"
    assert stack.received_events() == []
    (marker,) = flows_items()
    assert marker["flow_key"]["S"].startswith("delivery#") and marker["kind"]["S"] == "delivery"
    assert open_id not in json.dumps(marker)  # a hash of the body, nothing of the account
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=os.environ["FLOWS_TABLE"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "purge_at"  # the table's TTL removes it
    received = int(marker["received_at"]["N"])
    assert int(marker["purge_at"]["N"]) - received == 7 * 24 * HOUR  # longer than TikTok's 72 h of retries


@pytest.mark.parametrize("created", ["missing", "yesterday", 10**400, math.nan, (1_800_000_000 + 9 * HOUR) * 1000],
                         ids=["missing", "text", "huge", "nan", "milliseconds"])
def test_a_removal_with_an_unusable_creation_time_is_answered_200_and_ends_only_older_grants(
        stack, tiktok, browser, clock, created):
    older = connect(browser, tiktok)["connection_id"][0]
    clock.advance(HOUR)
    newer = connect(browser, tiktok, owner_id="owner-2")["connection_id"][0]  # 30 s before TikTok signs
    clock.advance(30)
    open_id = tiktok.users["alice"].open_id
    if created == "missing":
        body, headers = tiktok.signed_webhook(open_id, drop=("create_time",))
    else:
        body, headers = tiktok.signed_webhook(open_id, create_time=created)

    status, answer = webhook(body, headers)

    assert (status, answer) == (200, {"received": True, "handled": True, "queued": True})
    assert (item(older)["status"]["S"], item(newer)["status"]["S"]) == ("disconnected", "active")


def test_a_stale_signature_is_still_refused_and_remembers_nothing(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(HOUR)
    open_id = tiktok.users["alice"].open_id
    body, _ = tiktok.signed_webhook(open_id)
    status, answer = webhook(body, tiktok.resign_webhook(body, int(clock.now()) - 301))
    assert status == 401 and answer["error"]["code"] == "stale_signature"
    assert item(connection_id)["status"]["S"] == "active" and flows_items() == []


def test_a_removal_the_queue_cannot_take_is_a_json_5xx_and_not_remembered(stack, tiktok, browser, clock, log_output):
    """SQS unreachable: the webhook answers a 5xx (no stack trace, nothing of the body), remembers nothing, so
    TikTok's retry is queued rather than taken for a duplicate."""
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(HOUR)
    body, headers = tiktok.signed_webhook(tiktok.users["alice"].open_id)
    boto3.client("sqs").delete_queue(QueueUrl=stack.env["REMOVAL_QUEUE_URL"])

    status, answer = call("POST", "/webhooks/tiktok", body=body.decode(), headers=headers, caller_arn=None)

    assert status >= 500 and set(answer) == {"error"} and "Traceback" not in json.dumps(answer)
    assert flows_items() == []  # not remembered: the retry is queued
    assert item(connection_id)["status"]["S"] == "active"
    assert body.decode() not in log_output.getvalue()
