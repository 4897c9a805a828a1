"""Keeping a connection alive on moto with the simulated TikTok over loopback: sweep, queue, worker."""

from __future__ import annotations

import json
import os
import threading

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.adapters.sqs import SqsRefreshQueue
from oauth_keeper.usecases.worker import process_records

from local.memory import ListQueue
from local.stack import another_container, install_from_env, sweep_into
from tests.integration.conftest import create_session, location_query

pytestmark = pytest.mark.integration


def connect(browser, tiktok, user="alice", owner_id="owner-1") -> str:
    created = json.loads(create_session(owner_id=owner_id)["body"])
    authorize = browser.get(created["connect_url"])
    callback = browser.get(tiktok.approve(authorize["headers"]["Location"], user=user))
    return location_query(callback)["connection_id"][0]


def stored_refresh_token(connection_id: str) -> str:
    store = root.container().connections
    return store.open_tokens(store.get(connection_id))["refresh_token"]


def run_tick(queue=None) -> dict:
    svc = root.container()
    queue = queue or ListQueue()
    sweep_into(queue, svc)
    return svc.refresh_worker.process(queue.drain())  # as the worker function: connections and orphans


def test_a_due_connection_is_refreshed_and_the_rotated_token_is_what_gets_stored(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    store = root.container().connections
    before = store.get(connection_id)
    assert run_tick() == {"batchItemFailures": []}
    assert tiktok.stats["refreshes"] == 0  # not due yet: nothing to do
    clock.advance(before.next_refresh_at - clock.now())
    run_tick()
    after = store.get(connection_id)
    (grant,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    assert tiktok.stats["refresh_successes"] == 1
    assert stored_refresh_token(connection_id) == grant.refresh_token  # the new one, saved
    assert after.token_version == before.token_version + 1
    assert after.status == "active" and after.lease_owner is None
    assert after.access_expires_at == int(clock.now()) + 7200
    assert after.next_refresh_at > clock.now() + 3600  # back out of the due window
    assert after.last_refresh_outcome == "succeeded"


def test_duplicate_ticks_and_duplicate_deliveries_cause_one_provider_refresh(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    queue = ListQueue()
    svc = root.container()
    sweep_into(queue, svc)
    sweep_into(queue, svc)  # the scheduler delivered the tick twice
    records = queue.drain()
    records += records  # and SQS delivered every message twice
    assert len(records) == 4
    assert process_records(records, svc.refresher, 8) == {"batchItemFailures": []}
    process_records(records, another_container().refresher, 8)  # a second worker container gets them again later
    assert tiktok.stats["refreshes"] == 1
    assert root.container().connections.get(connection_id).status == "active"


def test_twenty_concurrent_refreshers_make_one_provider_refresh_per_round(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    svc = root.container()
    refreshers = [another_container().refresher for _ in range(20)]  # twenty worker containers
    for round_number in range(1, 101):
        clock.advance(svc.connections.get(connection_id).next_refresh_at - clock.now())
        barrier = threading.Barrier(20)

        def attempt(refresher, barrier=barrier):
            barrier.wait()
            refresher.refresh(connection_id)

        threads = [threading.Thread(target=attempt, args=(r,)) for r in refreshers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert tiktok.stats["refresh_successes"] == round_number
        assert tiktok.stats["refreshes"] == round_number  # never a second call with a dead token
    (grant,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    assert stored_refresh_token(connection_id) == grant.refresh_token
    assert svc.connections.get(connection_id).status == "active"


def test_a_grant_revoked_at_tiktok_needs_reauth_and_leaves_the_due_index(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    stack.received_events()
    tiktok.revoke_user(tiktok.users["alice"].open_id)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    run_tick()
    item = boto3.client("dynamodb").get_item(TableName=os.environ["CONNECTIONS_TABLE"],
                                             Key={"connection_id": {"S": connection_id}})["Item"]
    assert item["status"]["S"] == "needs_reauth" and item["status_reason"]["S"] == "invalid_grant"
    assert "next_refresh_at" not in item and "due_shard" not in item
    (event,) = stack.received_events()
    assert event["detail-type"] == "Connection Needs Reauthorization"
    assert event["detail"]["reason"] == "invalid_grant" and event["detail"]["retryable"] is False
    assert event["detail"]["provider_log_id"]  # TikTok's log_id, for their support
    clock.advance(86400)
    run_tick()
    assert tiktok.stats["refreshes"] == 1  # never tried again


def test_a_wrong_secret_fixed_in_ssm_is_picked_up_by_the_breaker_probe(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    tiktok.rotate_client_secret("rotated-in-the-portal")
    store = root.container().connections
    clock.advance(store.get(connection_id).next_refresh_at - clock.now())
    run_tick()
    paused = store.get(connection_id)
    assert paused.status == "active" and paused.last_refresh_reason == "provider_config"  # token still valid
    boto3.client("ssm").put_parameter(Name="/oauth-keeper/tiktok/client_secret", Value="rotated-in-the-portal",
                                      Type="SecureString", Overwrite=True)
    # The warm container still caches the old secret; the probe reads SSM afresh.
    clock.advance(paused.next_refresh_at - clock.now())
    run_tick()
    healed = store.get(connection_id)
    assert healed.status == "active" and healed.last_refresh_outcome == "succeeded"
    assert tiktok.stats["refresh_successes"] == 1


def test_sweeper_and_worker_handlers_run_on_their_sample_events(stack, tiktok, browser, clock, monkeypatch):
    from local.apigw import LambdaContext
    from tests.integration.test_sample_events import load

    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="refresh")["QueueUrl"]
    monkeypatch.setenv("REFRESH_QUEUE_URL", queue_url)
    pass

    install_from_env()
    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())

    import refresh_worker_handler
    import sweeper_handler

    report = sweeper_handler.handler(load("sweeper"), LambdaContext("SweeperFunction"))
    assert report == {"due": 1, "pending_events": 0, "sent": 1, "probes": 0, "resumed": 0}
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = load("refresh_worker")
    event["Records"][0]["body"] = messages[0]["Body"]
    result = refresh_worker_handler.handler(event, LambdaContext("RefreshWorkerFunction"))
    assert result == {"batchItemFailures": []}
    assert tiktok.stats["refresh_successes"] == 1


def test_sqs_queue_adapter_sends_every_id_in_batches_of_ten(stack):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="refresh-batches")["QueueUrl"]
    ids = [f"con_{i}" for i in range(25)]
    assert SqsRefreshQueue(sqs, url).send(ids) == 25
    received = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        received += [json.loads(m["Body"])["connection_id"] for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(received) == sorted(ids)


def test_events_left_in_the_outbox_are_published_by_the_next_sweep(stack, tiktok, browser, monkeypatch):
    from oauth_keeper.adapters.eventbridge import EventBridgePublisher as EventPublisher

    # Only this patch is undone (monkeypatch.undo() would also take back the fixtures' AWS environment, which a
    # client created on first use, as the EventBridge one now is, still needs).
    with monkeypatch.context() as patched:
        patched.setattr(EventPublisher, "publish", lambda self, pending: [])  # EventBridge down at commit
        connection_id = connect(browser, tiktok)
        assert stack.received_events() == []
        item = boto3.client("dynamodb").get_item(TableName=os.environ["CONNECTIONS_TABLE"],
                                                 Key={"connection_id": {"S": connection_id}})["Item"]
        assert "outbox_shard" in item  # findable through the sparse Outbox index

    queue = ListQueue()
    report = sweep_into(queue)
    assert report.pending_events == 1 and report.due == 0
    process_records(queue.drain(), root.container().refresher, 8)
    (event,) = stack.received_events()
    assert event["detail-type"] == "Connection Created"
    assert sweep_into(ListQueue()).pending_events == 0
    assert tiktok.stats["refreshes"] == 0  # publishing a pending event is not a reason to refresh


def test_the_worker_emits_refresh_metrics_the_alarms_read(stack, tiktok, browser, clock, capfd):
    from local.apigw import LambdaContext

    connection_id = connect(browser, tiktok)
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())
    import refresh_worker_handler

    capfd.readouterr()
    refresh_worker_handler.handler({"Records": [{"messageId": "m1", "body": json.dumps(
        {"connection_id": connection_id})}]}, LambdaContext("RefreshWorkerFunction"))
    out = capfd.readouterr().out
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    metrics = {m["Name"]: blob for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert "RefreshSucceeded" in metrics and "RefreshLatency" in metrics
    emf = metrics["RefreshSucceeded"]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OAuthKeeper"
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]  # what the alarms select on
    assert emf["service"] == "oauth-keeper"
