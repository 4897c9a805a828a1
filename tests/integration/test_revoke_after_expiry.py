"""The background revoke really ends the grant, even when the access token it holds has expired (issue 12, case 1).

TikTok's revoke takes an access token, which lives hours; the refresh token lives months. A connection may sit
`disconnecting` (or an orphaned grant wait for its revoke) long after its access token died, and the simulated
TikTok refuses a revoke with an expired access token. The job then refreshes first (one call, the rotated tokens
stored before anything else), and revokes with the fresh access token. Runs on moto with the simulated TikTok.
"""

from __future__ import annotations

import os

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.usecases.disconnect import Disconnection

from tests.integration.test_backend_api import call, connect, current_grant, item, run_jobs
from tests.integration.test_durable_disconnect import crash_once, disconnected_events, finish_marking

pytestmark = pytest.mark.integration

HOURS = 3600


def past_the_access_token(clock, tiktok) -> None:
    """Time passes with no refresh (the sweep is not run): the access token the connection holds expires."""
    clock.advance(tiktok.access_ttl + HOURS)


def test_the_simulated_tiktok_refuses_a_revoke_with_an_expired_access_token(stack, tiktok, browser, clock):
    connect(browser, tiktok)
    grant = current_grant(tiktok)
    past_the_access_token(clock, tiktok)
    profile = root.container().profiles.profile("tiktok")
    creds = root.container().credentials.credentials(profile)
    with pytest.raises(Exception) as refused:
        root.container().provider.revoke(profile, creds, grant.access_token)
    assert getattr(refused.value, "code", None) == "invalid_grant"
    assert tiktok.grants_for(grant.open_id)  # the grant lives on, with its refresh token


def test_a_disconnect_with_an_expired_access_token_refreshes_then_revokes_the_grant(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    stack.received_events()
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    assert run_jobs() == {"batchItemFailures": []}
    assert not tiktok.grants_for(open_id)  # ended at TikTok
    assert tiktok.stats["refresh_successes"] == 1 and tiktok.stats["revoke_refusals"] == 0
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and "tokens" not in stored and "revoke_failed" not in stored
    (event,) = disconnected_events(stack)
    assert event["detail"]["revoke_failed"] is False
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["revoke_failed"] == 0


def test_a_crash_between_storing_the_rotated_tokens_and_the_revoke_loses_nothing(stack, tiktok, browser, clock,
                                                                                   monkeypatch):
    """TikTok's old refresh token died with the refresh: the new one must be on the item before the revoke."""
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    stack.received_events()
    before = int(item(connection_id)["token_version"]["N"])
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    crash_once(monkeypatch, Disconnection, "_revoke")  # the function dies as it is about to revoke
    assert run_jobs()["batchItemFailures"]  # ...so its message goes back
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnecting" and int(stored["token_version"]["N"]) == before + 1
    (grant,) = tiktok.grants_for(open_id)
    kept = root.container().connections.open_tokens(root.container().connections.get(connection_id))
    assert kept["refresh_token"] == grant.refresh_token  # the only live refresh token is stored

    clock.advance(60)
    run_jobs()  # the sweep finds it again: its own rotation is not a reconnect
    assert not tiktok.grants_for(open_id)
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and "tokens" not in stored and "revoke_failed" not in stored
    assert len(disconnected_events(stack)) == 1
    assert tiktok.stats["refresh_successes"] == 1  # the stored tokens were used, not refreshed again
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["revoke_failed"] == 0


def test_a_refresh_answered_invalid_grant_means_the_grant_already_ended(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    past_the_access_token(clock, tiktok)
    tiktok.expire_refresh_token(open_id)  # the grant ended at TikTok, unknown to us
    _, operation = call("DELETE", f"/connections/{connection_id}")
    run_jobs()
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and "tokens" not in stored and "revoke_failed" not in stored
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["revoke_failed"] == 0  # nothing was left to revoke


def test_a_transient_refresh_failure_is_retried_with_backoff_then_the_grant_revoked(stack, tiktok, browser, clock):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    tiktok.fail_next(1, "5xx")  # the token endpoint fails once
    run_jobs()
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnecting" and "tokens" in stored  # kept, sealed, for the next attempt
    assert int(stored["revoke_attempts"]["N"]) == 1 and int(stored["next_refresh_at"]["N"]) > clock.now()
    assert "lease_owner" not in stored
    clock.advance(int(stored["next_refresh_at"]["N"]) - int(clock.now()))
    run_jobs()
    assert not tiktok.grants_for(open_id)
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and "revoke_failed" not in stored
    assert call("GET", operation["status_url"])[1]["revoke_failed"] == 0


def test_a_revoke_refused_while_the_clock_says_valid_is_refreshed_and_revoked(stack, tiktok, browser, clock):
    """The provider ended the access token sooner than it told us: the refusal, not the clock, says so."""
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    boto3.client("dynamodb").update_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection_id": {"S": connection_id}},
        UpdateExpression="SET access_expires_at = :later",
        ExpressionAttributeValues={":later": {"N": str(int(clock.now()) + 30 * 86_400)}})
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    run_jobs()
    assert tiktok.stats["revoke_refusals"] == 1 and tiktok.stats["refresh_successes"] == 1
    assert not tiktok.grants_for(open_id)
    assert call("GET", operation["status_url"])[1]["revoke_failed"] == 0


def test_an_erasure_of_connections_with_expired_access_tokens_ends_every_grant(stack, tiktok, browser, clock):
    mine = [connect(browser, tiktok, user=u)["connection_id"][0] for u in ("alice", "bob")]
    open_ids = [tiktok.users[u].open_id for u in ("alice", "bob")]
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", "/owners/owner-1/connections")
    run_jobs()
    assert all(item(c) == {} for c in mine)
    assert not any(tiktok.grants_for(o) for o in open_ids)
    finish_marking(clock)
    done = call("GET", operation["status_url"])[1]
    assert done["status"] == "succeeded" and done["revoke_failed"] == 0


def test_an_orphaned_grant_revoked_after_its_access_token_expired_is_ended(stack, tiktok, browser, clock):
    """A scope upgrade answered for another account leaves that account's grant orphaned; its revoke waits
    (here past the access token's life, as a day of retries can) and must still end it."""
    connection_id = connect(browser, tiktok)["connection_id"][0]
    result = connect(browser, tiktok, user="bob", connection_id=connection_id)
    assert result["error"] == ["account_mismatch"]
    bob = tiktok.users["bob"].open_id
    assert tiktok.grants_for(bob)
    past_the_access_token(clock, tiktok)
    run_jobs()
    assert not tiktok.grants_for(bob)
    items = boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
    assert not [i for i in items if i["connection_id"]["S"].startswith("orphan#")]


def test_an_invalid_grant_after_a_refresh_whose_answer_was_lost_is_recorded_as_revoke_failed(stack, tiktok, browser,
                                                                                             clock):
    """A refresh died after TikTok rotated the token (its lease expired uncommitted): the grant may live on with a
    refresh token nobody saw, so a refused refresh proves nothing and the operation must not claim success."""
    tiktok.revoke_grant_on_reuse = False  # TikTok keeps a grant whose rotated-away token is replayed
    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    store = root.container().connections
    connection = store.get(connection_id)
    profile = root.container().profiles.profile("tiktok")
    root.container().provider.refresh(profile, root.container().credentials.credentials(profile),
                                      store.open_tokens(connection)["refresh_token"])  # ...and the answer is lost
    store.apply(connection, {"lease_owner": "a-refresher-that-died", "lease_expires_at": int(clock.now()) + 22})
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    run_jobs()
    assert tiktok.grants_for(open_id)  # live at TikTok, out of our reach
    stored = item(connection_id)
    assert stored["status"]["S"] == "disconnected" and "tokens" not in stored
    assert stored["revoke_failed"]["BOOL"] is True
    assert call("GET", operation["status_url"])[1]["revoke_failed"] == 1


def test_a_reconnect_during_the_jobs_refresh_keeps_its_grant_and_the_old_one_is_revoked(stack, tiktok, browser,
                                                                                        clock, monkeypatch):
    from oauth_keeper.adapters.provider_http import HttpProviderClient

    connection_id = connect(browser, tiktok)["connection_id"][0]
    open_id = current_grant(tiktok).open_id
    past_the_access_token(clock, tiktok)
    _, operation = call("DELETE", f"/connections/{connection_id}")
    refresh = HttpProviderClient.refresh

    def refresh_while_the_user_reconnects(self, *args, **kwargs):
        answer = refresh(self, *args, **kwargs)
        monkeypatch.setattr(HttpProviderClient, "refresh", refresh)
        assert connect(browser, tiktok)["connection_id"][0] == connection_id
        return answer

    monkeypatch.setattr(HttpProviderClient, "refresh", refresh_while_the_user_reconnects)
    run_jobs()
    stored = item(connection_id)
    assert stored["status"]["S"] == "active" and "tokens" in stored
    (kept,) = tiktok.grants_for(open_id)  # the reconnect's grant; the old one was revoked with its fresh token
    assert root.container().connections.open_tokens(root.container().connections.get(connection_id))[
        "refresh_token"] == kept.refresh_token
    assert call("GET", operation["status_url"])[1]["status"] == "superseded"
