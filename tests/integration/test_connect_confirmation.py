"""Connect confirmation: a connection belongs to the owner whose app session claims it (issue 13, section 1).

The attack: a user of the app creates a connect link for themselves and forwards it. Whoever finishes it sees
TikTok's real consent screen; without confirmation their TikTok account is stored under the first user's owner
id. With `ConnectConfirmation=required` the callback only holds the grant; the app's backend claims it with
the owner of its logged-in session, and a claim by anyone else burns the code and discards the grant.
"""

from __future__ import annotations

import json

import pytest
from oauth_keeper import root

from local import apigw
from local.stack import install_from_env
from tests.integration.conftest import create_session, location_query
from tests.integration.test_backend_api import call, item, run_jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def confirming(stack, clock, monkeypatch):
    """The stack as `ConnectConfirmation=required` deploys it (the template's default)."""
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")
    root.reset()
    install_from_env(clock=clock)
    return stack


def finish_connect(browser, tiktok, *, owner_id="owner-1", user="alice", **extra) -> dict[str, list[str]]:
    """Create a link for `owner_id` and finish it in a browser as TikTok user `user`: the return address' query."""
    created = create_session(owner_id=owner_id, **extra)
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    return location_query(browser.get(tiktok.approve(authorize["headers"]["Location"], user=user)))


def claim(code: str, owner_id: str) -> tuple[int, dict]:
    return call("POST", "/connections/claims", body=json.dumps({"claim": code, "owner_id": owner_id}))


def connect_and_claim(browser, tiktok, *, owner_id="owner-1", user="alice") -> str:
    back = finish_connect(browser, tiktok, owner_id=owner_id, user=user)
    status, body = claim(back["claim"][0], owner_id)
    assert status == 200, body
    return body["connection"]["connection_id"]


def listed(owner_id: str) -> list[dict]:
    status, body = call("GET", "/connections", raw_query=f"owner_id={owner_id}")
    assert status == 200
    return body["connections"]


def kinds(stack) -> list[str]:
    return [e["detail-type"] for e in stack.received_events()]


def test_the_callback_holds_the_grant_and_the_owner_s_claim_makes_the_connection(confirming, tiktok, browser,
                                                                                 log_output):
    back = finish_connect(browser, tiktok)
    assert back["status"] == ["pending_confirmation"] and "connection_id" not in back
    code = back["claim"][0]
    assert len(code) >= 43  # 256 bits
    assert listed("owner-1") == [] and kinds(confirming) == []  # nothing usable, nothing announced yet

    status, body = claim(code, "owner-1")
    assert status == 200 and body["result"] == "created"
    connection = body["connection"]
    assert connection["status"] == "active" and connection["owner_id"] == "owner-1"
    assert "user.info.basic" in connection["scopes_granted"]
    assert kinds(confirming) == ["Connection Created"]
    token = call("GET", f"/connections/{connection['connection_id']}/token")[1]
    assert token["account_id"] == tiktok.users["alice"].open_id
    # The same claim again answers the same, and announces nothing twice.
    assert claim(code, "owner-1") == (200, {**body, "connection": call(
        "GET", f"/connections/{connection['connection_id']}")[1]})
    assert kinds(confirming) == []
    assert code not in log_output.getvalue()  # never logged, never stored (only its hash is a key)
    assert not any(code in json.dumps(i, default=str) for i in _all_items())


def test_a_forwarded_link_finished_by_a_stranger_is_refused_and_the_grant_revoked(confirming, tiktok, browser):
    """The victim (TikTok user bob, no connection anywhere) finishes owner-1's link; the app's page runs the
    claim with its own logged-in owner, owner-2."""
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="bob")
    code = back["claim"][0]
    status, body = claim(code, "owner-2")
    assert status == 409 and body["error"]["code"] == "owner_mismatch"
    events = confirming.received_events()
    assert [e["detail-type"] for e in events] == ["Connection Confirmation Failed"]
    assert events[0]["detail"]["reason"] == "owner_mismatch" and events[0]["detail"]["owner_id"] == "owner-1"
    assert "account_id" not in events[0]["detail"]  # a stranger's account: not told to the link's owner
    # The code is burned: owner-1 cannot take the stranger's account either.
    status, body = claim(code, "owner-1")
    assert status == 410 and body["error"]["code"] == "claim_used"
    assert listed("owner-1") == [] and listed("owner-2") == []
    run_jobs()  # the background revoke: nobody else holds bob's account
    assert tiktok.grants_for(tiktok.users["bob"].open_id) == []


def test_a_victim_who_already_holds_the_account_keeps_their_connection(confirming, tiktok, browser, clock):
    """alice connected her TikTok account under her own owner (owner-2); owner-1 forwards her a link and she
    finishes it. The refused grant is not revoked: a revoke could end her own connection."""
    hers = connect_and_claim(browser, tiktok, owner_id="owner-2", user="alice")
    revocations = tiktok.stats["revocations"]
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="alice")
    assert claim(back["claim"][0], "owner-2")[0] == 409
    for _ in range(2):
        run_jobs()
    assert tiktok.stats["revocations"] == revocations
    assert listed("owner-1") == []
    clock.advance(3 * 3600)  # past the access token's life: her connection refreshes as before
    run_jobs()
    assert call("GET", f"/connections/{hers}/token")[0] == 200
    assert item(hers)["status"]["S"] == "active"


def test_a_forwarded_link_consented_by_a_user_who_holds_the_account_reconnects_their_own_connection(
        confirming, tiktok, browser, clock):
    """alice holds her TikTok account under her own owner (owner-2). owner-1 forwards her a connect link; she
    consents and her app page claims as owner-2 (refused). TikTok keeps one grant per app and user: her consent
    superseded her connection's grant. The grant is the same TikTok user's, consented in owner-2's session: it
    reconnects her connection, so nothing of hers breaks, and owner-1 gets nothing (nor learns of her)."""
    tiktok.single_grant_per_user = True
    hers = connect_and_claim(browser, tiktok, owner_id="owner-2", user="alice")
    confirming.received_events()
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="alice")
    status, answer = claim(back["claim"][0], "owner-2")
    assert (status, answer["error"]["code"]) == (409, "owner_mismatch")
    assert "owner-1" not in str(answer)
    events = {e["detail-type"]: e["detail"] for e in confirming.received_events()}
    assert events.keys() == {"Connection Confirmation Failed", "Connection Reconnected"}
    assert events["Connection Confirmation Failed"]["owner_id"] == "owner-1"
    assert events["Connection Reconnected"]["connection_id"] == hers
    assert events["Connection Reconnected"]["owner_id"] == "owner-2"
    assert claim(back["claim"][0], "owner-1")[1]["error"]["code"] == "claim_used" and listed("owner-1") == []
    (live,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    assert call("GET", f"/connections/{hers}/token", raw_query="owner_id=owner-2")[1]["access_token"] == \
        live.access_token
    clock.advance(3 * 3600)  # past the access token's life: her connection refreshes as before
    for _ in range(3):
        run_jobs()
        clock.advance(60)
    stored = item(hers)
    assert (stored["status"]["S"], stored.get("status_reason", {}).get("S")) == ("active", None)
    assert "Connection Needs Reauthorization" not in kinds(confirming)
    assert call("GET", f"/connections/{hers}/token")[0] == 200


def test_while_another_owner_s_link_waits_for_its_claim_the_superseded_connection_is_held_not_blamed(
        confirming, tiktok, browser, clock):
    """alice (owner-2's connection) consents through owner-1's forwarded link; before any claim, her
    connection's refresh meets `invalid_grant` (the consent superseded its grant). That is held
    (`superseded_pending`) while the grant waits, whichever owner's link it came through."""
    tiktok.single_grant_per_user = True
    hers = connect_and_claim(browser, tiktok, owner_id="owner-2", user="alice")
    confirming.received_events()
    clock.advance(5700)  # near her grant's planned refresh
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="alice")
    clock.advance(300)
    run_jobs()
    stored = item(hers)
    assert stored["status"]["S"] == "active" and stored["superseded_pending"]["BOOL"] is True
    assert kinds(confirming) == []
    assert claim(back["claim"][0], "owner-2")[0] == 409  # her page claims: the grant reconnects her connection
    assert "superseded_pending" not in item(hers)
    assert call("GET", f"/connections/{hers}/token")[0] == 200


def test_claiming_an_older_consent_after_a_newer_one_keeps_the_newer_grant(confirming, tiktok, browser, clock):
    """The user starts connecting in two tabs and consents in both (TikTok keeps one grant per app and user: the
    second consent ends the first grant). The app claims the second tab's code, then the first tab's: the
    connection keeps the live grant (answered `reconnected`, the connection as it is), and the older grant is not
    revoked (the connection holds the account)."""
    tiktok.single_grant_per_user = True
    first = finish_connect(browser, tiktok)
    clock.advance(10)
    second = finish_connect(browser, tiktok)
    status, body = claim(second["claim"][0], "owner-1")
    assert status == 200
    connection_id = body["connection"]["connection_id"]
    confirming.received_events()
    revocations = tiktok.stats["revocations"]
    status, older = claim(first["claim"][0], "owner-1")
    assert status == 200 and older["result"] == "reconnected", older
    assert older["connection"]["connection_id"] == connection_id
    assert claim(first["claim"][0], "owner-1") == (200, older)  # the same answer again
    (live,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    status, token = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")
    assert status == 200 and token["access_token"] == live.access_token
    run_jobs()
    run_jobs()
    assert tiktok.stats["revocations"] == revocations and kinds(confirming) == []


def test_a_forwarded_scope_upgrade_link_does_not_revoke_a_grant_another_connection_holds(confirming, tiktok,
                                                                                          browser):
    """owner-1 makes a scope-upgrade link for their own connection (alice's account) and forwards it to bob, who
    already holds his TikTok account under his own owner (owner-2). bob consents: the callback answers
    `account_mismatch` and orphans the new grant; the orphan revoke sees owner-2's live connection of bob's
    account and leaves it (TikTok may keep one grant per app and user: a revoke could end bob's connection)."""
    mine = connect_and_claim(browser, tiktok, owner_id="owner-1", user="alice")
    his = connect_and_claim(browser, tiktok, owner_id="owner-2", user="bob")
    revocations = tiktok.stats["revocations"]
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="bob", connection_id=mine,
                          scopes=["user.info.basic", "video.list", "video.upload"])
    assert back["error"] == ["account_mismatch"]
    for _ in range(3):
        run_jobs()
    assert tiktok.stats["revocations"] == revocations
    assert not any(i["connection_id"]["S"].startswith("orphan#") for i in _all_items())  # dropped, not retried
    assert call("GET", f"/connections/{his}/token", raw_query="owner_id=owner-2")[0] == 200


def test_an_unclaimed_grant_is_discarded_at_expiry_and_revoked(confirming, tiktok, browser, clock):
    back = finish_connect(browser, tiktok, user="bob")
    confirming.received_events()
    clock.advance(601)
    run_jobs()  # the sweep finds it due at its expiry
    events = confirming.received_events()
    assert [(e["detail-type"], e["detail"]["reason"]) for e in events] == [
        ("Connection Confirmation Failed", "claim_expired")]
    run_jobs()
    assert tiktok.grants_for(tiktok.users["bob"].open_id) == []
    status, body = claim(back["claim"][0], "owner-1")
    assert status == 410 and body["error"]["code"] == "claim_expired"
    assert listed("owner-1") == []


def test_a_claim_after_expiry_before_the_sweep_is_refused_all_the_same(confirming, tiktok, browser, clock):
    back = finish_connect(browser, tiktok)
    clock.advance(601)
    status, body = claim(back["claim"][0], "owner-1")
    assert status == 410 and body["error"]["code"] == "claim_expired"
    assert listed("owner-1") == []


def test_a_pending_reconnect_leaves_the_existing_connection_working_and_is_held_not_blamed(confirming, tiktok,
                                                                                          browser, clock):
    """TikTok may keep one grant per app and user: the new consent kills the old grant at once. While the new
    grant waits for its claim, the old connection's refusal is `superseded_pending`, not the user's doing;
    the claim then gives the connection the new grant."""
    tiktok.single_grant_per_user = True
    mine = connect_and_claim(browser, tiktok)
    confirming.received_events()
    clock.advance(5700)  # near the old grant's planned refresh
    back = finish_connect(browser, tiktok)  # the user consents again (a reconnect), not yet claimed
    assert item(mine)["status"]["S"] == "active"  # the callback never touches the existing connection
    clock.advance(300)
    run_jobs()  # its refresh meets invalid_grant: the new consent superseded the old grant
    assert tiktok.stats["refreshes"] >= 1
    stored = item(mine)
    assert stored["status"]["S"] == "active" and stored["superseded_pending"]["BOOL"] is True
    assert kinds(confirming) == []  # no Needs Reauthorization: nobody is blamed yet
    status, body = claim(back["claim"][0], "owner-1")
    assert status == 200 and body["result"] == "reconnected"
    assert "superseded_pending" not in item(mine)
    assert kinds(confirming) == ["Connection Reconnected"]
    token = call("GET", f"/connections/{mine}/token")
    assert token[0] == 200


def test_a_superseded_grant_whose_reconnect_is_never_claimed_ends_as_invalid_grant(confirming, tiktok, browser,
                                                                                  clock):
    tiktok.single_grant_per_user = True
    mine = connect_and_claim(browser, tiktok)
    clock.advance(5700)
    finish_connect(browser, tiktok)
    clock.advance(300)
    run_jobs()
    assert item(mine)["superseded_pending"]["BOOL"] is True  # held while the claim may still come
    confirming.received_events()
    clock.advance(400)  # the claim code expires unclaimed; the refresh looks again just after
    for _ in range(3):
        run_jobs()
        clock.advance(60)
    stored = item(mine)
    assert stored["status"]["S"] == "needs_reauth" and stored["status_reason"]["S"] == "invalid_grant"
    assert "Connection Needs Reauthorization" in kinds(confirming)


def test_pending_grants_are_never_served_and_are_erased_with_their_owner(confirming, tiktok, browser, clock):
    back = finish_connect(browser, tiktok, user="bob")
    (pending,) = [i for i in _all_items() if i["connection_id"]["S"].startswith("pending#")]
    key = pending["connection_id"]["S"]
    assert call("GET", f"/connections/{key}/token")[0] == 404
    assert call("GET", f"/connections/{key}")[0] == 404
    status, _ = call("DELETE", "/owners/owner-1/connections")
    assert status == 202
    run_jobs()
    assert not any(i["connection_id"]["S"].startswith("pending#") for i in _all_items())
    status, body = claim(back["claim"][0], "owner-1")
    assert status == 404 and body["error"]["code"] == "claim_not_found"
    run_jobs()
    assert tiktok.grants_for(tiktok.users["bob"].open_id) == []  # revoked: nobody else holds the account


def test_a_claim_after_its_owner_s_erasure_is_refused(confirming, tiktok, browser, clock, monkeypatch):
    back = finish_connect(browser, tiktok)
    # The erasure lands; its marking has not reached the pending grant yet.
    monkeypatch.setattr(root.container().disconnection, "continue_erasure", lambda *a, **k: "later")
    assert call("DELETE", "/owners/owner-1/connections")[0] == 202
    clock.advance(1)
    status, body = claim(back["claim"][0], "owner-1")
    assert status == 409 and body["error"]["code"] == "owner_erased"
    assert listed("owner-1") == []


@pytest.mark.parametrize("body", [
    {},
    {"claim": "x"},
    {"owner_id": "owner-1"},
    {"claim": "a" * 129, "owner_id": "owner-1"},
    {"claim": "not a code!", "owner_id": "owner-1"},
    {"claim": 7, "owner_id": "owner-1"},
    {"claim": "abc", "owner_id": "bad owner"},
    {"claim": "abc", "owner_id": "owner-1", "connection_id": "con_x"},
])
def test_bad_claims_get_a_clear_400(confirming, body):
    status, answer = call("POST", "/connections/claims", body=json.dumps(body))
    assert status == 400 and answer["error"]["code"] == "invalid_request"


def test_an_unknown_claim_is_a_404_and_not_json_is_a_400(confirming):
    assert claim("A" * 43, "owner-1")[0] == 404
    assert apigw.invoke("POST", "/connections/claims", body="{")["statusCode"] == 400


def test_the_popup_says_almost_done_not_connected(confirming, tiktok, browser):
    created = create_session(mode="popup")
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    page = browser.get(tiktok.approve(authorize["headers"]["Location"]))
    assert page["statusCode"] == 200
    assert "<title>Almost done</title>" in page["body"] and "Connected" not in page["body"]
    assert '"status": "pending_confirmation"' in page["body"] and "connection_id" not in page["body"]


def test_tiktok_always_shows_its_consent_screen(confirming, browser):
    created = create_session()
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    assert "disable_auto_auth=1" in authorize["headers"]["Location"]


def _all_items() -> list[dict]:
    import os

    import boto3

    return boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]


def test_the_callback_writes_only_what_its_role_allows_under_confirmation(confirming, tiktok, browser,
                                                                          monkeypatch):
    """The template lets the callback role write only pending# and orphan# keys in the Connections table when
    confirmation is required (tests/template: the callback role). The code must fit: a reconnect and a refused
    grant alike touch no connection and no guard at the callback."""
    connect_and_claim(browser, tiktok)  # an existing connection to reconnect
    items = root.container().items
    written: list[str] = []
    for name in ("update", "delete"):
        original = getattr(items, name)

        def spy(key, *args, _original=original, **kwargs):
            written.append(key)
            return _original(key, *args, **kwargs)

        monkeypatch.setattr(items, name, spy)
    original_transact = items.transact
    monkeypatch.setattr(items, "transact", lambda writes: (written.extend(w.key for w in writes),
                                                           original_transact(writes))[1])
    finish_connect(browser, tiktok)  # a reconnect, held
    finish_connect(browser, tiktok, user="bob", scopes=["user.info.basic"])  # a new account, held
    assert written and all(k.startswith(("pending#", "orphan#")) for k in written), written
