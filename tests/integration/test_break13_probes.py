"""Break-test findings for issue 13 (a connection belongs to the user who made it): each test reproduces an
attack or a failure a user would notice, against the local stack."""

from __future__ import annotations

import pytest

from tests.integration import test_connect_confirmation
from tests.integration.test_backend_api import call, item, run_jobs
from tests.integration.test_connect_confirmation import claim, connect_and_claim, finish_connect, kinds, listed

confirming = test_connect_confirmation.confirming  # the stack as ConnectConfirmation=required deploys it

pytestmark = pytest.mark.integration


def test_a_forwarded_link_does_not_break_the_victim_s_own_connection_when_tiktok_keeps_one_grant(
        confirming, tiktok, browser, clock):
    """alice holds her TikTok account under her own owner (owner-2). owner-1 forwards her a connect link; she
    consents and her app page claims as owner-2 (refused). TikTok keeps one grant per app and user (the issue's
    own premise, and what the simulator does with `single_grant_per_user`): her consent superseded her
    connection's grant. "Nothing of theirs breaks" must still hold: her connection is not blamed on her as
    `invalid_grant`, and it keeps a working token."""
    tiktok.single_grant_per_user = True
    hers = connect_and_claim(browser, tiktok, owner_id="owner-2", user="alice")
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="alice")
    assert claim(back["claim"][0], "owner-2")[0] == 409
    confirming.received_events()
    for _ in range(3):
        run_jobs()
    clock.advance(3 * 3600)  # past the access token's life: her connection refreshes as before
    for _ in range(3):
        run_jobs()
        clock.advance(60)
    stored = item(hers)
    assert (stored["status"]["S"], stored.get("status_reason", {}).get("S")) == ("active", None), stored.get(
        "status_reason")
    assert "Connection Needs Reauthorization" not in kinds(confirming)
    assert call("GET", f"/connections/{hers}/token")[0] == 200


def test_a_removal_webhook_ends_a_pending_grant_it_is_newer_than(confirming, tiktok, browser, clock):
    """The user connects (the grant waits for its claim), then removes the app inside TikTok two minutes later;
    TikTok's `authorization.removed` arrives. The removal ends every grant older than the event, so the claim
    that follows must not make an `active` connection whose tokens TikTok already revoked (served as if fine,
    announced as Connection Created)."""
    from tests.integration.test_backend_api import webhook

    back = finish_connect(browser, tiktok, user="bob")
    clock.advance(120)
    open_id = tiktok.users["bob"].open_id
    tiktok.revoke_user(open_id)
    body, headers = tiktok.signed_webhook(open_id)
    assert webhook(body, headers)[0] == 200
    status, answer = claim(back["claim"][0], "owner-1")
    served = [c for c in listed("owner-1") if c["status"] == "active"]
    assert status != 200 and served == [], answer


def test_a_claim_racing_the_expiry_sweep_never_answers_created_for_a_grant_it_revokes(confirming, tiktok, browser,
                                                                                     clock, monkeypatch):
    """The app claims one second before the code expires; while the claim makes the connection, the sweep finds
    the grant due at its expiry and discards it (Confirmation Failed, background revoke). The claim reads the
    item, then saves the connection, then marks the item claimed without looking at whether that last write
    held: the app is told `created` while the grant it holds is revoked at TikTok."""
    from oauth_keeper import root

    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    confirming.received_events()
    clock.advance(599)
    pending = root.container().pending
    original = pending._save

    def slow_save(*args, **kwargs):  # the sweep runs while the claim is between its read and its writes
        clock.advance(2)
        run_jobs()  # expired: discarded
        run_jobs()  # the background revoke
        return original(*args, **kwargs)

    monkeypatch.setattr(pending, "_save", slow_save)
    status, answer = claim(back["claim"][0], "owner-1")
    if status == 200:  # told created: the grant must be alive and nothing must say it failed
        assert tiktok.grants_for(open_id), "the claimed connection's grant was revoked by the expiry"
        assert "Connection Confirmation Failed" not in kinds(confirming)
    else:
        assert [c for c in listed("owner-1") if c["status"] == "active"] == []


def test_a_removal_made_before_the_claim_and_delivered_after_it_still_ends_the_connection(confirming, tiktok,
                                                                                          browser, clock):
    """The user consents at T, removes the app inside TikTok at T+120 s, the app claims at T+180 s, and TikTok's
    `authorization.removed` (created T+120 s) is delivered at T+200 s. The grant the connection holds is older
    than the removal, but the claim stored `connected_at` = the claim's time, so the removal is judged stale and
    ignored (`kept`): the connection stays `active` with revoked tokens."""
    from tests.integration.test_backend_api import webhook

    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    clock.advance(120)
    tiktok.revoke_user(open_id)
    body, _ = tiktok.signed_webhook(open_id)  # created now, T+120 s; its delivery is late
    clock.advance(60)
    status, answer = claim(back["claim"][0], "owner-1")
    connection_id = answer["connection"]["connection_id"] if status == 200 else None
    clock.advance(20)
    status, delivered = webhook(body, tiktok.resign_webhook(body))
    assert status == 200
    if connection_id is not None:
        assert item(connection_id)["status"]["S"] == "disconnected", delivered


def test_claiming_an_older_consent_after_a_newer_one_keeps_the_newer_grant(confirming, tiktok, browser, clock):
    """The user starts connecting in two tabs and consents in both (TikTok keeps one grant per app and user: the
    second consent ends the first grant). The app claims the second tab's code, then the first tab's. The first
    tab's grant, older and dead at TikTok, replaces the live one: the token route serves a dead token and the next
    refresh blames the user (`invalid_grant`)."""
    tiktok.single_grant_per_user = True
    first = finish_connect(browser, tiktok)
    clock.advance(10)
    second = finish_connect(browser, tiktok)
    status, body = claim(second["claim"][0], "owner-1")
    assert status == 200
    connection_id = body["connection"]["connection_id"]
    claim(first["claim"][0], "owner-1")
    (live,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    status, token = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")
    assert status == 200 and token["access_token"] == live.access_token


def test_an_account_erasure_also_ends_a_grant_consented_before_it_and_claimed_after(confirming, tiktok, browser,
                                                                                    clock, monkeypatch):
    """TikTok's data-deletion request for bob's account arrives while his consent waits for its claim, and the
    ByAccount index has not shown the pending item yet (it is eventually consistent: the erasure's later passes
    exist for this). The app claims a moment later. The erasure's recheck finds the connection but spares it as
    "made after the request": a claim stores `connected_at` = the claim's time, not the consent's."""
    from oauth_keeper import root

    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    clock.advance(5)
    items = root.container().items
    query = items.query

    def lagging(index, *args, **kwargs):  # the index does not show the new pending item yet
        keys, cursor = query(index, *args, **kwargs)
        return [k for k in keys if not k.startswith("pending#")], cursor

    monkeypatch.setattr(items, "query", lagging)
    assert call("DELETE", f"/providers/tiktok/accounts/{open_id}/connections")[0] == 202
    monkeypatch.setattr(items, "query", query)
    clock.advance(5)
    status, answer = claim(back["claim"][0], "owner-1")
    for _ in range(4):
        clock.advance(61)
        run_jobs()
    if status == 200:
        left = item(answer["connection"]["connection_id"])
        assert not left or left["status"]["S"] in ("disconnecting", "disconnected"), left.get("status")


def test_a_forwarded_scope_upgrade_link_does_not_revoke_a_grant_another_connection_holds(confirming, tiktok,
                                                                                          browser):
    """owner-1 makes a scope-upgrade link for their own connection (alice's account) and forwards it to bob, who
    already holds his TikTok account under his own owner (owner-2). bob consents: the callback answers
    `account_mismatch` and hands the new grant to the background revoke without asking whether another live
    connection holds bob's account. The issue's rule for a refused grant (revoke only if no other live or pending
    connection holds the account: TikTok may keep one grant per app and user, and a revoke can trigger
    `authorization.removed` for every owner of it) is skipped on this path."""
    mine = connect_and_claim(browser, tiktok, owner_id="owner-1", user="alice")
    connect_and_claim(browser, tiktok, owner_id="owner-2", user="bob")
    revocations = tiktok.stats["revocations"]
    back = finish_connect(browser, tiktok, owner_id="owner-1", user="bob", connection_id=mine,
                          scopes=["user.info.basic", "video.list", "video.upload"])
    assert back["error"] == ["account_mismatch"]
    for _ in range(3):
        run_jobs()
    assert tiktok.stats["revocations"] == revocations
