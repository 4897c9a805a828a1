"""Break-test findings for issue 13 (a connection belongs to the user who made it): each test reproduces an
attack or a failure a user would notice, against the local stack."""

from __future__ import annotations

import pytest

from tests.integration.test_backend_api import call, item, run_jobs
from tests.integration.test_connect_confirmation import (  # noqa: F401 - fixture
    claim,
    confirming,
    connect_and_claim,
    finish_connect,
    kinds,
    listed,
)

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
