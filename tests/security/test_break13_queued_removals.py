"""Break-test of issue 13, finding 5 (the webhook queues removals, the refresh worker applies them): the probes
that found something, each kept as the test of its fix or, while open, as a strict xfail."""

from __future__ import annotations

import json

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.domain.provider_events import AccountRemovalRequest
from oauth_keeper.usecases.worker import refresh_request_of

from local.cfn import resources_of_type
from tests.integration.test_backend_api import call, connect, item


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value] if value else []


@pytest.mark.unit
def test_the_webhook_is_updated_only_after_the_worker_that_reads_its_removals():
    """The worker of the previous version reads every message as a refresh (`refresh_request_of`, unchanged):
    a removal names no connection, so it is "malformed" and deleted, not failed; and the new webhook has already
    remembered the delivery, so TikTok's retries are answered `duplicate`. The user's removal would be lost for
    good (no `Connection Disconnected`, a pending grant still claimable). CloudFormation updates resources
    without a dependency in parallel, in any order: the webhook must wait for the worker."""
    body = AccountRemovalRequest("tiktok", "acct-alice", 1_800_000_000, "user_revoked", 1).message()
    assert refresh_request_of(body) == (None, False)  # what the previous worker makes of it: dropped
    functions = resources_of_type("AWS::Serverless::Function")
    assert "RefreshWorkerFunction" in _as_list(functions["WebhookFunction"].get("DependsOn"))


def _senders_to(queue: str) -> set[str]:
    functions = resources_of_type("AWS::Serverless::Function")
    return {name for name, res in functions.items()
            for policy in res["Properties"].get("Policies", []) if isinstance(policy, dict)
            for statement in policy.get("Statement", [])
            if "sqs:SendMessage" in _as_list(statement.get("Action"))
            and statement.get("Resource") == {"Fn::GetAtt": [queue, "Arn"]}}


@pytest.mark.integration
def test_a_removal_not_sent_by_the_webhook_ends_no_connection(stack, tiktok, browser, clock):
    """The refresh queue carries connection ids, harmless whoever asks, and more roles may send there (the
    sweeper, the backend API). A removal is a command: the worker obeys one only from the removal queue (the
    record's `eventSourceARN`), which only the webhook's role may send to. One found on the refresh queue is
    refused, so SQS parks it in the alarmed DLQ, and nothing of the connection changes."""
    from local.stack import deliver_refresh_queue

    assert _senders_to("RemovalQueue") == {"WebhookFunction"}
    assert "WebhookFunction" not in _senders_to("RefreshQueue")
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(3600)
    forged = AccountRemovalRequest("tiktok", tiktok.users["alice"].open_id,
                                   int(clock.now()) + 10 * 365 * 86_400, "user_revoked").message()
    boto3.client("sqs").send_message(QueueUrl=root.container().settings.refresh_queue_url, MessageBody=forged)
    handed = deliver_refresh_queue()
    assert [r["body"] for r in handed] == [forged]  # it reached the worker, which refused it (still queued)
    assert item(connection_id)["status"]["S"] == "active"
    assert call("GET", f"/connections/{connection_id}/token")[0] == 200


@pytest.mark.integration
@pytest.mark.xfail(strict=True, reason="open (Medium, stacks upgraded from before random ids): a connection made "
                   "before random ids (or during the ConnectionIds=derived step) keeps its computable id forever, "
                   "and owner_id is the caller's to send: the token route serves it to whoever computes the id")
def test_a_caller_who_computes_a_connection_from_before_random_ids_is_not_served_its_token(
        stack, tiktok, browser, monkeypatch):
    """Issue 13, section 3's attack on a connection an upgraded stack already held: the caller allowed the token
    route knows the owner id and the TikTok open_id, so it computes the id (SHA-256, no secret). Sending
    `owner_id` is its own choice, and it knows the right one anyway."""
    from oauth_keeper.domain.connection import derived_connection_id

    from tests.integration.test_connection_ids import connect_as_before_guards

    legacy = connect_as_before_guards(monkeypatch, browser, tiktok, user="alice", owner_id="owner-1")
    computed = derived_connection_id("owner-1", "tiktok", tiktok.users["alice"].open_id)
    assert computed == legacy
    assert call("GET", f"/connections/{computed}/token")[0] == 404


@pytest.mark.unit
@pytest.mark.xfail(strict=True, reason="open (Low, needs lambda:InvokeFunction on the worker): the worker trusts the "
                   "record's eventSourceARN, which is whatever the invoker writes in the event; a removal never "
                   "received from RemovalQueue is obeyed. A fix: before applying, prove the record came from the "
                   "queue (sqs:ChangeMessageVisibility on RemovalQueue with its receiptHandle succeeds only for a "
                   "message in flight there)")
def test_a_removal_in_an_event_written_by_hand_is_not_obeyed():
    """`eventSourceARN` is not authenticated: Lambda's SQS event source writes it, but so does anyone allowed to
    invoke the refresh worker directly (an operator role with lambda:InvokeFunction on `*`, a console test
    event, `sam remote invoke` with events/refresh_worker.json edited). Such a caller, who may not write the
    Connections table nor send to RemovalQueue, ends every connection of any account it can name."""
    from oauth_keeper.domain.connection import ACTIVE
    from oauth_keeper.usecases.worker import process_records

    from local.memory import REMOVALS_ARN
    from tests.unit.test_webhook_ordering import HOUR, World

    world = World()
    connection_id = world.connect()
    world.clock.advance(HOUR)
    forged = AccountRemovalRequest("tiktok", "acct-alice", world.now + 10 * 365 * 86_400, "user_revoked").message()
    # Sent to no queue: an event written by hand, naming the removal queue as its source (no receipt of it).
    record = {"messageId": "hand-1", "receiptHandle": "made-up", "body": forged, "eventSource": "aws:sqs",
              "eventSourceARN": REMOVALS_ARN}
    process_records([record], None, 4,  # type: ignore[arg-type] - removals only
                    disconnection=world.disconnection, removal_source=REMOVALS_ARN)
    assert world.status(connection_id) == ACTIVE


@pytest.mark.unit
@pytest.mark.xfail(strict=True, reason="open (Low): RemovalQueue has no queue policy, so 'only the webhook's role may "
                   "send to it' holds among this stack's roles only: any principal of the account allowed "
                   "sqs:SendMessage on every queue (an administrator, a deploy or operator role) can queue a "
                   "removal the worker obeys. A Deny for every aws:PrincipalArn but the webhook's role would close "
                   "it, at the price of DLQ redrives back to the queue (they send as the operator)")
def test_no_principal_but_the_webhook_role_may_send_to_the_removal_queue():
    policies = [res["Properties"] for res in resources_of_type("AWS::SQS::QueuePolicy").values()
                if {"Ref": "RemovalQueue"} in res["Properties"].get("Queues", [])]
    denies = [s for p in policies for s in p["PolicyDocument"]["Statement"]
              if s.get("Effect") == "Deny" and "sqs:SendMessage" in _as_list(s.get("Action"))]
    assert any("WebhookFunctionRole" in json.dumps(s.get("Condition")) for s in denies)
