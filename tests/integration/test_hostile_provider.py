"""The failure reports of issue 11, through the real handlers on moto and the simulated TikTok over loopback.

Each test makes TikTok answer as real integrations saw it answer (no refresh token, absurd lifetimes, a 400
`invalid_request`, an answer lost after TikTok rotated the token) and checks what the app would notice.
"""

from __future__ import annotations

import json

import boto3
import pytest
from oauth_keeper import root

from local import apigw
from tests.integration.conftest import create_session, location_query
from tests.integration.test_refresh import connect, run_tick, stored_refresh_token

pytestmark = pytest.mark.integration
ABSURD = 10_000_000_000_000
DAY = 86_400


def start_connect(browser, tiktok, user: str = "alice") -> str:
    created = json.loads(create_session(owner_id="owner-1")["body"])
    authorize = browser.get(created["connect_url"])
    return tiktok.approve(authorize["headers"]["Location"], user=user)


def due_now(clock, connection_id: str) -> None:
    clock.advance(root.container().connections.get(connection_id).next_refresh_at - clock.now())


def every_read_route_answers(connection_id: str) -> None:
    for path in (f"/connections/{connection_id}", f"/connections/{connection_id}/token",
                 "/connections?owner_id=owner-1"):
        answer = apigw.invoke("GET", path.split("?")[0], raw_query=path.partition("?")[2])
        assert answer["statusCode"] == 200, (path, answer["body"])


def table_items() -> list[dict]:
    import os

    return boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]


# -- 1. a first connect without a refresh token ---------------------------------------------------------------
def test_a_first_connect_without_a_refresh_token_is_refused_retryably_and_nothing_is_stored(
        stack, tiktok, browser):
    tiktok.change_next_answers(drop=("refresh_token", "refresh_expires_in"))
    result = location_query(browser.get(start_connect(browser, tiktok)))
    assert result["status"] == ["error"] and result["error"] == ["incomplete_grant"]
    assert result["retryable"] == ["true"]
    assert [i for i in table_items() if "owner_id" in i] == []  # no connection; the grant waits, sealed, for
    assert stack.received_events() == []                        # its background revoke


def test_a_reconnect_without_a_refresh_token_keeps_the_stored_usable_one(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)
    before = stored_refresh_token(connection_id)
    tiktok.change_next_answers(drop=("refresh_token", "refresh_expires_in"))
    result = location_query(browser.get(start_connect(browser, tiktok)))
    assert result["status"] == ["connected"] and result["connection_id"] == [connection_id]
    assert stored_refresh_token(connection_id) == before


def test_a_reconnect_without_a_refresh_token_after_the_grant_died_is_refused(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    tiktok.revoke_user(tiktok.users["alice"].open_id)
    root.container().refresher.refresh(connection_id, force=True)
    assert root.container().connections.get(connection_id).status == "needs_reauth"
    tiktok.change_next_answers(drop=("refresh_token", "refresh_expires_in"))
    result = location_query(browser.get(start_connect(browser, tiktok)))
    assert result["error"] == ["incomplete_grant"]
    assert root.container().connections.get(connection_id).status == "needs_reauth"  # never a false "active"


# -- 2. absurd lifetimes -----------------------------------------------------------------------------------------
def test_an_absurd_lifetime_at_connect_is_replaced_by_the_shortest_documented_one(stack, tiktok, browser, clock):
    tiktok.change_next_answers(patch={"expires_in": ABSURD, "refresh_expires_in": ABSURD})
    result = location_query(browser.get(start_connect(browser, tiktok)))
    assert result["status"] == ["connected"]
    connection = root.container().connections.get(result["connection_id"][0])
    assert connection.access_expires_at == int(clock.now()) + 7200  # TikTok's 2 h, not year 316,000
    assert connection.refresh_expires_at == int(clock.now()) + 180 * DAY
    assert connection.next_refresh_at < clock.now() + 7200
    every_read_route_answers(connection.connection_id)


def test_an_absurd_lifetime_in_a_refresh_answer_never_breaks_a_read_route(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    due_now(clock, connection_id)
    tiktok.change_next_answers(patch={"expires_in": ABSURD, "refresh_expires_in": ABSURD})
    run_tick()
    connection = root.container().connections.get(connection_id)
    assert connection.last_refresh_outcome == "succeeded"
    assert connection.access_expires_at == int(clock.now()) + 7200
    assert connection.refresh_expires_at == int(clock.now()) + 180 * DAY
    every_read_route_answers(connection_id)


@pytest.mark.parametrize("expires_in", [7_200_000, "7200000", "7200s", None, [7200], True])
def test_a_milliseconds_style_missing_or_garbled_expires_in_is_not_trusted(stack, tiktok, browser, clock,
                                                                            expires_in):
    tiktok.change_next_answers(patch={"expires_in": expires_in})
    result = location_query(browser.get(start_connect(browser, tiktok)))
    connection = root.container().connections.get(result["connection_id"][0])
    assert connection.access_expires_at == int(clock.now()) + 7200  # the next refresh lands before the real end
    assert connection.next_refresh_at <= clock.now() + 7200 - 15 * 60


@pytest.mark.parametrize("expires_in", [-5, 0, 120])
def test_an_access_lifetime_below_the_minimum_is_never_made_longer(stack, tiktok, browser, clock, expires_in):
    """Below the plausible minimum, the token is taken to die when the provider said (or at once): the token
    route refreshes it before serving it, never hands it out as valid for the 2 h fallback."""
    tiktok.change_next_answers(patch={"expires_in": expires_in})
    result = location_query(browser.get(start_connect(browser, tiktok)))
    connection = root.container().connections.get(result["connection_id"][0])
    assert connection.access_expires_at == int(clock.now()) + max(0, expires_in)
    assert connection.next_refresh_at <= clock.now()


def test_a_stored_absurd_expiry_from_an_older_version_heals_and_never_breaks_a_read(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    store = root.container().connections
    # What the previous version stored from an answer of expires_in = refresh_expires_in = 10^13.
    store.items.update(connection_id, set={"access_expires_at": int(clock.now()) + ABSURD,
                                           "refresh_expires_at": int(clock.now()) + ABSURD,
                                           **store.schedule_attributes(connection_id, int(clock.now()) + ABSURD)},
                       expect={})
    every_read_route_answers(connection_id)  # the token route refreshed first: the stored expiry is not trusted
    healed = store.get(connection_id)
    assert healed.access_expires_at == int(clock.now()) + 7200
    assert healed.next_refresh_at < clock.now() + 7200
    assert healed.refresh_expires_at <= clock.now() + 366 * DAY


def test_the_hourly_sweep_finds_a_schedule_planned_absurdly_far_ahead(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)
    store = root.container().connections
    store.items.update(connection_id, set=store.schedule_attributes(connection_id, int(clock.now()) + ABSURD),
                       expect={})
    clock.advance(3600 - clock.now() % 3600)  # the first tick of an hour
    run_tick()
    healed = store.get(connection_id)
    assert healed.last_refresh_outcome == "succeeded" and healed.next_refresh_at < clock.now() + 7200


# -- 3. a request the provider refused as malformed --------------------------------------------------------------
@pytest.mark.parametrize("error", ["invalid_request", "some_new_error_code"])
def test_a_refresh_refused_as_malformed_says_so(stack, tiktok, browser, clock, error):
    connection_id = connect(browser, tiktok)
    due_now(clock, connection_id)
    tiktok.change_next_answers(status=400, raw=json.dumps({"error": error, "error_description": "x",
                                                           "log_id": "L-400"}).encode())
    run_tick()
    connection = root.container().connections.get(connection_id)
    assert connection.last_refresh_outcome == "transient_failure"
    assert connection.last_refresh_reason == "request_rejected"
    assert connection.status == "active" and connection.last_provider_log_id == "L-400"


# -- 4. TikTok rotated, we never saw the new token (timeouts after sending: tests/unit/test_provider_answers.py) ---
@pytest.mark.parametrize("lost", [
    {"fault": "5xx"},
    {"raw": b"<html>502 Bad Gateway</html>", "status": 200},
    {"patch": {"access_token": 12345}},
    {"patch": {"refresh_token": "x" * 10_000}},
], ids=["5xx from a proxy after processing", "2xx body not JSON",
        "2xx access token not a string", "2xx refresh token too long"])
def test_an_answer_lost_after_tiktok_rotated_leads_to_rotation_lost_not_a_user_revocation(
        stack, tiktok, browser, clock, lost):
    connection_id = connect(browser, tiktok)
    due_now(clock, connection_id)
    tiktok.change_next_answers(**lost)
    run_tick()
    connection = root.container().connections.get(connection_id)
    assert connection.refresh_in_doubt and connection.status == "active"
    clock.advance(connection.next_refresh_at - clock.now())
    run_tick()  # the stored refresh token was rotated away at TikTok: invalid_grant
    final = root.container().connections.get(connection_id)
    assert final.status == "needs_reauth" and final.status_reason == "rotation_lost"


def test_a_refused_connection_attempt_is_not_in_doubt(stack, tiktok, browser, clock):
    """The control: a 429 is refused before TikTok processes anything, so nothing is in doubt."""
    connection_id = connect(browser, tiktok)
    due_now(clock, connection_id)
    tiktok.fail_next(1, "429")
    run_tick()
    connection = root.container().connections.get(connection_id)
    assert connection.last_refresh_reason == "rate_limited" and not connection.refresh_in_doubt


# -- 7. a provider-wide outage, through the real sweeper and worker on moto -----------------------------------
def scheduled_tick(clock) -> dict:
    """What one EventBridge Scheduler tick sets off: the sweeper, then the workers on every queued message."""
    import os

    import refresh_worker_handler
    import sweeper_handler

    from local.apigw import LambdaContext

    report = sweeper_handler.handler({"scheduled_time": "", "execution_id": "tick"}, LambdaContext("SweeperFunction"))
    sqs = boto3.client("sqs")
    while True:
        messages = sqs.receive_message(QueueUrl=os.environ["REFRESH_QUEUE_URL"], MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
        if not messages:
            break
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        result = refresh_worker_handler.handler({"Records": records}, LambdaContext("RefreshWorkerFunction"))
        assert result == {"batchItemFailures": []}
        for message in messages:
            sqs.delete_message(QueueUrl=os.environ["REFRESH_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
    clock.advance(300)
    return report


def test_a_six_hour_outage_on_moto_pauses_the_provider_and_every_connection_heals(stack, tiktok, browser, clock):
    users = [f"user{i}" for i in range(20)]
    for user in users:
        tiktok.add_user(user)
        connect(browser, tiktok, user=user)
        clock.advance(300)  # connects spread over 100 minutes, so refreshes spread out too
    store = root.container().connections
    calls_before = tiktok.stats["token_requests"]
    tiktok.set_outage("5xx")
    for _ in range(6 * 12):
        scheduled_tick(clock)
    calls = tiktok.stats["token_requests"] - calls_before
    assert calls / (6 * 60) <= 2
    connections = [store.get(cid) for cid in store.owned_by("owner-1", limit=100)[0]]
    assert {c.status for c in connections} == {"at_risk"}
    assert {c.status_reason for c in connections} == {"provider_unavailable"}

    tiktok.set_outage(None)
    for _ in range(3):  # 15 minutes
        scheduled_tick(clock)
    healed = [store.get(c.connection_id) for c in connections]
    assert {c.status for c in healed} == {"active"}
    assert all(stored_refresh_token(c.connection_id) == tiktok.grants_for(c.account_id)[0].refresh_token
               for c in healed)


def test_the_grant_of_a_refused_connect_is_revoked_at_tiktok_by_the_next_sweep(stack, tiktok, browser, clock):
    tiktok.change_next_answers(drop=("refresh_token", "refresh_expires_in"))
    result = location_query(browser.get(start_connect(browser, tiktok)))
    assert result["error"] == ["incomplete_grant"]
    assert tiktok.stats["revocations"] == 0  # not inside the browser's request
    assert tiktok.grants_for(tiktok.users["alice"].open_id)  # TikTok still holds the grant...
    run_tick()
    assert tiktok.stats["revocations"] == 1
    assert not tiktok.grants_for(tiktok.users["alice"].open_id)  # ...until the background revoke
    # Nothing of it is kept: the one item left is the sweep's record of the shards in use.
    assert [i["connection_id"]["S"] for i in table_items()] == ["_due_shards"]
