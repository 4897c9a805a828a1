"""A claim racing what else ends its grant: the expiry sweep, the provider's removal webhook, an account erasure.

A claimed grant was consented at the callback, minutes before the claim stores it. Whatever ends grants in those
minutes (the code's expiry, TikTok's `authorization.removed`, a data-deletion request for the account) must end
it too: the claim never answers for a grant that is revoked, and never makes a connection of a grant the user
removed. The claim's connection and the pending item's `claimed` state are one transaction; the connection's
`connected_at` is the consent's time.
"""

from __future__ import annotations

import pytest
from oauth_keeper import root

from tests.integration import test_connect_confirmation
from tests.integration.test_backend_api import call, item, run_jobs, webhook
from tests.integration.test_connect_confirmation import claim, finish_connect, kinds, listed

confirming = test_connect_confirmation.confirming  # the stack as ConnectConfirmation=required deploys it

pytestmark = pytest.mark.integration


def between_the_claim_s_read_and_its_write(monkeypatch, what) -> None:
    """Run `what()` once, when the claim (having read its pending item) writes the connection."""
    connections = root.container().connections
    original = connections.write_grant

    def write_grant(*args, **kwargs):
        if not getattr(write_grant, "ran", False):
            write_grant.ran = True
            what()
        return original(*args, **kwargs)

    monkeypatch.setattr(connections, "write_grant", write_grant)


def lagging_index(monkeypatch, hidden) -> None:
    """The ByAccount index does not show the keys `hidden(key)` picks yet (a GSI is eventually consistent)."""
    items = root.container().items
    query = items.query

    def lagging(index, *args, **kwargs):
        keys, cursor = query(index, *args, **kwargs)
        return [k for k in keys if not (index == "ByAccount" and hidden(k))], cursor

    monkeypatch.setattr(items, "query", lagging)


def active(owner_id: str = "owner-1") -> list[dict]:
    return [c for c in listed(owner_id) if c["status"] == "active"]


def test_a_claim_racing_the_expiry_sweep_never_answers_created_for_a_grant_it_revokes(confirming, tiktok, browser,
                                                                                     clock, monkeypatch):
    """The app claims one second before the code expires; while the claim makes the connection, the sweep finds
    the grant due at its expiry and discards it (Confirmation Failed, background revoke). The claim then loses
    its transaction and says so: nothing is connected."""
    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    confirming.received_events()
    clock.advance(599)

    def the_sweep():
        clock.advance(2)
        run_jobs()  # expired: discarded
        run_jobs()  # the background revoke

    between_the_claim_s_read_and_its_write(monkeypatch, the_sweep)
    status, answer = claim(back["claim"][0], "owner-1")
    assert (status, answer["error"]["code"]) == (410, "claim_expired"), answer
    assert active() == [] and tiktok.grants_for(open_id) == []
    assert kinds(confirming) == ["Connection Confirmation Failed"]


def test_a_removal_webhook_ends_a_pending_grant_it_is_newer_than_and_only_that(confirming, tiktok, browser, clock):
    """The user connects (the grant waits for its claim), then removes the app inside TikTok two minutes later;
    TikTok's `authorization.removed` arrives, late, after the user consented once more. The claim of the first
    consent makes nothing (410 `user_revoked`); the later consent, which the removal knows nothing of, is claimed
    as usual."""
    before = finish_connect(browser, tiktok, user="bob")
    confirming.received_events()
    clock.advance(120)
    open_id = tiktok.users["bob"].open_id
    tiktok.revoke_user(open_id)
    body, _ = tiktok.signed_webhook(open_id)  # created now
    clock.advance(120)
    after = finish_connect(browser, tiktok, user="bob")
    assert webhook(body, tiktok.resign_webhook(body))[0] == 200
    status, answer = claim(before["claim"][0], "owner-1")
    assert (status, answer["error"]["code"]) == (410, "user_revoked"), answer
    assert active() == []
    events = confirming.received_events()
    assert [(e["detail-type"], e["detail"]["reason"], e["detail"]["retryable"]) for e in events] == [
        ("Connection Confirmation Failed", "user_revoked", False)]
    assert claim(before["claim"][0], "owner-1")[1]["error"]["code"] == "user_revoked"  # the same answer again
    status, answer = claim(after["claim"][0], "owner-1")
    assert status == 200 and answer["connection"]["status"] == "active", answer


def test_a_pending_grant_the_user_removed_is_discarded_by_the_worker_without_waiting_for_its_expiry(
        confirming, tiktok, browser, clock):
    """Nobody claims: the removal makes the grant due at once, and the next sweep discards it (`user_revoked`),
    with no revoke call (TikTok has ended it already)."""
    finish_connect(browser, tiktok, user="bob")
    confirming.received_events()
    clock.advance(120)
    open_id = tiktok.users["bob"].open_id
    tiktok.revoke_user(open_id)
    revocations = tiktok.stats["revocations"]
    assert webhook(*tiktok.signed_webhook(open_id))[0] == 200
    run_jobs()
    run_jobs()
    assert [(e["detail-type"], e["detail"]["reason"]) for e in confirming.received_events()] == [
        ("Connection Confirmation Failed", "user_revoked")]
    assert tiktok.stats["revocations"] == revocations


def test_a_removal_landing_while_the_claim_writes_wins_over_the_claim(confirming, tiktok, browser, clock,
                                                                      monkeypatch):
    """The claim has read its pending grant; the removal webhook marks it before the claim's transaction, which
    expects no removal: the claim loses and says why."""
    back = finish_connect(browser, tiktok, user="bob")
    clock.advance(120)
    open_id = tiktok.users["bob"].open_id

    def the_removal():
        tiktok.revoke_user(open_id)
        assert webhook(*tiktok.signed_webhook(open_id))[0] == 200

    between_the_claim_s_read_and_its_write(monkeypatch, the_removal)
    status, answer = claim(back["claim"][0], "owner-1")
    assert (status, answer["error"]["code"]) == (410, "user_revoked"), answer
    assert active() == []


def test_a_removal_made_before_the_claim_and_delivered_after_it_still_ends_the_connection(confirming, tiktok,
                                                                                          browser, clock):
    """The user consents at T, removes the app inside TikTok at T+120 s, the app claims at T+180 s, and TikTok's
    `authorization.removed` (created T+120 s) is delivered at T+200 s. The connection holds a grant consented
    at T, older than the removal: it is disconnected, not kept as a later grant."""
    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    clock.advance(120)
    tiktok.revoke_user(open_id)
    body, _ = tiktok.signed_webhook(open_id)  # created now, T+120 s; its delivery is late
    clock.advance(60)
    status, answer = claim(back["claim"][0], "owner-1")
    assert status == 200, answer
    connection_id = answer["connection"]["connection_id"]
    assert answer["connection"]["connected_at"] < answer["connection"]["created_at"]  # consented, then claimed
    clock.advance(20)
    status, delivered = webhook(body, tiktok.resign_webhook(body))
    assert status == 200 and delivered["queued"] is True, delivered
    assert item(connection_id)["status"]["S"] == "disconnected"


def test_a_removal_reaches_a_claimed_connection_the_account_index_does_not_show_yet(confirming, tiktok, browser,
                                                                                   clock, monkeypatch):
    """The claim lands a moment before the removal's delivery; the ByAccount index shows the pending item but not
    the connection the claim just made. The webhook follows the claimed item to its connection."""
    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    clock.advance(120)
    tiktok.revoke_user(open_id)
    body, headers = tiktok.signed_webhook(open_id)
    status, answer = claim(back["claim"][0], "owner-1")
    connection_id = answer["connection"]["connection_id"]
    lagging_index(monkeypatch, lambda key: key == connection_id)
    status, delivered = webhook(body, headers)
    assert status == 200 and delivered["queued"] is True, delivered
    assert item(connection_id)["status"]["S"] == "disconnected"
    assert call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")[0] == 409


def test_an_account_erasure_also_ends_a_grant_consented_before_it_and_claimed_after(confirming, tiktok, browser,
                                                                                    clock, monkeypatch):
    """TikTok's data-deletion request for bob's account arrives while his consent waits for its claim, and the
    ByAccount index has not shown the pending item yet (the erasure's later passes exist for this). The app
    claims a moment later: the erasure's recheck finds the connection, consented before the request, and ends
    it."""
    back = finish_connect(browser, tiktok, user="bob")
    open_id = tiktok.users["bob"].open_id
    clock.advance(5)
    items = root.container().items
    query = items.query
    lagging_index(monkeypatch, lambda key: key.startswith("pending#"))
    assert call("DELETE", f"/providers/tiktok/accounts/{open_id}/connections")[0] == 202
    monkeypatch.setattr(items, "query", query)
    clock.advance(5)
    status, answer = claim(back["claim"][0], "owner-1")
    assert status == 200, answer
    for _ in range(4):
        clock.advance(61)
        run_jobs()
    assert not item(answer["connection"]["connection_id"])  # deleted, as the erasure deletes its connections
    assert tiktok.grants_for(open_id) == []
