"""Changing `DueShards` strands nothing (issue 12, case 5): after lowering it, every due connection is still
refreshed, every event left in the outbox still published and every orphaned grant still revoked.

In memory over simulated hours (`local/simulation.py`, the same sweep, worker and refresher code), and on moto
through the real sweeper handler.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.domain.protocol import authorize_url, new_code_verifier, new_secret

from local.simulation import REDIRECT_URI, World
from tests.integration.test_refresh import connect

pytestmark = pytest.mark.integration
HOUR = 3600


def orphaned_grant(world: World, handle: str) -> str:
    """A live grant at TikTok that no connection keeps (as a refused connect leaves one), recorded for its
    background revoke; returns the user's open_id."""
    user = world.tiktok.add_user(handle)
    svc = world.services
    profile = svc.profiles.profile("tiktok")
    verifier = new_code_verifier()
    url = authorize_url(profile, client_id=world.tiktok.client_key, redirect_uri=REDIRECT_URI, state=new_secret(),
                        scopes=("user.info.basic",), code_verifier=verifier)
    code = parse_qs(urlsplit(world.tiktok.approve(url, user=handle)).query)["code"][0]
    tokens = svc.provider.exchange_code(profile, svc.credentials.credentials(profile), code=code,
                                        redirect_uri=REDIRECT_URI, code_verifier=verifier)
    svc.orphans.record("tiktok", tokens, "incomplete_grant")
    return user.open_id


def populated(world: World, *, swept_before: bool) -> tuple[list[str], list[str], list[str]]:
    """200 connections, 40 more whose Created event EventBridge refused (left in the outbox) and 10 orphaned
    grants, all written under the current shard count. `swept_before`: the sweep of this version ran before the
    change (else the change comes with the upgrade to it)."""
    connections = [world.connect(f"user{i}").connection_id for i in range(200)]
    if swept_before:
        world.tick(60)
    world.publisher.down = True
    pending = [world.connect(f"late{i}").connection_id for i in range(40)]
    world.publisher.down = False
    orphans = [orphaned_grant(world, f"orphan{i}") for i in range(10)]
    return connections, pending, orphans


def shards_used(world: World, ids: list[str]) -> set[int]:
    return {world.store.items.get(cid)["due_shard"] for cid in ids}  # type: ignore[attr-defined]


@pytest.mark.parametrize("swept_before", [True, False], ids=["swept before the change", "changed with the upgrade"])
@pytest.mark.parametrize(("before", "after"), [(16, 8), (8, 32)], ids=["lowered 16 to 8", "raised 8 to 32"])
def test_changing_the_shard_count_misses_nothing_due_pending_or_orphaned(before, after, swept_before):
    world = World.create(direct_http=True)
    world.redeploy(due_shards=before)
    connections, pending, orphans = populated(world, swept_before=swept_before)
    if after < before:
        assert max(shards_used(world, connections + pending)) >= after  # items sit in shards the new count lacks

    world.redeploy(due_shards=after)
    world.tick(60)
    created = {e["detail"]["connection_id"] for e in world.publisher.of_type("Connection Created")}
    assert set(pending) <= created  # every event left in the outbox, published by the first tick
    assert [i for i in world.store.items.items() if i["connection_id"].startswith("orphan#")] == []
    assert all(world.tiktok.grants_for(open_id) == [] for open_id in orphans)  # revoked at TikTok

    for _ in range(6 * 12):  # six hours of sweeps: TikTok's access tokens last 2 h
        world.tick()
        expired = [c.connection_id for c in world.connections() if c.access_expires_at <= world.clock.now()]
        assert expired == []
    refreshed = [c for c in world.connections() if c.token_version >= 3]  # refreshed, then again
    assert len(refreshed) == len(connections) + len(pending)
    assert world.statuses() == {"active": len(connections) + len(pending)}
    # Every refresh wrote today's shard: the higher ones emptied, and the sweep reads no more than it must.
    assert world.store.shard_span().shards == after


# -- on moto, through the real sweeper handler ----------------------------------------------------------------
def sweeper_tick() -> tuple[dict, set[str]]:
    """One EventBridge Scheduler tick of the sweeper function: its report and the ids it queued."""
    import sweeper_handler

    from local.apigw import LambdaContext

    report = sweeper_handler.handler({"scheduled_time": "", "execution_id": "tick"}, LambdaContext("SweeperFunction"))
    sqs, queued = boto3.client("sqs"), set()
    while messages := sqs.receive_message(QueueUrl=os.environ["REFRESH_QUEUE_URL"], MaxNumberOfMessages=10,
                                          ).get("Messages", []):
        for message in messages:
            queued.add(json.loads(message["Body"])["connection_id"])
            sqs.delete_message(QueueUrl=os.environ["REFRESH_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
    return report, queued


@pytest.mark.parametrize("swept_before", [True, False], ids=["swept before the change", "changed with the upgrade"])
def test_lowering_the_shard_count_on_moto_leaves_nothing_unswept(stack, tiktok, browser, clock, monkeypatch,
                                                                  swept_before):
    from oauth_keeper.adapters.eventbridge import EventBridgePublisher

    from local.stack import install_from_env
    from tests.integration.test_hostile_provider import start_connect

    assert os.environ["DUE_SHARDS"] == "16"
    connections = []
    for i in range(24):
        tiktok.add_user(f"user{i}")
        connections.append(connect(browser, tiktok, user=f"user{i}"))
    if swept_before:
        sweeper_tick()
    with monkeypatch.context() as down:  # EventBridge refuses: the Created events wait in the outbox
        down.setattr(EventBridgePublisher, "publish", lambda self, pending: [])
        pending = []
        for i in range(8):
            tiktok.add_user(f"late{i}")
            pending.append(connect(browser, tiktok, user=f"late{i}"))
    for i in range(4):  # connects refused for want of a refresh token: their grants wait for a revoke
        tiktok.add_user(f"orphan{i}")
        tiktok.change_next_answers(drop=("refresh_token", "refresh_expires_in"))
        browser.get(start_connect(browser, tiktok, user=f"orphan{i}"))
    table = boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
    orphans = {i["connection_id"]["S"] for i in table if i["connection_id"]["S"].startswith("orphan#")}
    shards = {i["connection_id"]["S"]: int(i["due_shard"]["N"]) for i in table if "due_shard" in i}
    assert len(orphans) == 4 and max(shards.values()) >= 8

    monkeypatch.setenv("DUE_SHARDS", "8")  # the deploy: every function cold-starts with the new count
    install_from_env()
    store = root.container().connections
    clock.advance(max(store.get(cid).next_refresh_at for cid in connections + pending) - clock.now())
    report, queued = sweeper_tick()
    assert queued == set(connections) | set(pending) | orphans
    assert report["due"] == len(connections) + len(pending) + len(orphans)
    assert report["pending_events"] == len(pending)
