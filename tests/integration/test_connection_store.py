"""The Connections table seen directly: reconnects merge tokens without ever losing a refresh token."""

from __future__ import annotations

import pytest
from oauth_keeper import events, runtime
from oauth_keeper.connections import Grant, connection_id_for
from oauth_keeper.oauth import TokenSet

from tests.integration.conftest import START

pytestmark = pytest.mark.integration


def grant(refresh_token: str | None, *, refresh_expires_at: int | None, access: str = "act.1") -> Grant:
    tokens = TokenSet(access_token=access, refresh_token=refresh_token, token_type="Bearer",
                      access_expires_at=START + 7200, refresh_expires_at=refresh_expires_at,
                      scopes=("user.info.basic",), account_id="acct-1", issued_at=START)
    return Grant(owner_id="owner-1", provider="tiktok", account_id="acct-1", tokens=tokens,
                 scopes_requested=("user.info.basic",), scopes_granted=("user.info.basic",))


def no_schedule(provider, tokens, now):
    return None


def created_event(connection, created, previous):
    return events.connection_event(events.CREATED if created else events.RECONNECTED, connection,
                                   reason="connected" if created else "reconnected", occurred_at=START)


def test_a_reconnect_without_a_refresh_token_keeps_the_stored_one(stack):
    store = runtime.services().connections
    store.save_grant(grant("rft.first", refresh_expires_at=START + 1000), START, created_event, no_schedule)
    without_refresh = grant(None, refresh_expires_at=None, access="act.2")
    saved = store.save_grant(without_refresh, START + 10, created_event, no_schedule)
    assert not saved.created
    tokens = store.open_tokens(store.get(saved.connection.connection_id))
    assert tokens == {"access_token": "act.2", "refresh_token": "rft.first", "token_type": "Bearer"}
    assert store.get(saved.connection.connection_id).refresh_expires_at == START + 1000


def test_connection_ids_are_one_per_owner_provider_and_account():
    assert connection_id_for("o1", "tiktok", "a") == connection_id_for("o1", "tiktok", "a")
    assert connection_id_for("o1", "tiktok", "a") != connection_id_for("o2", "tiktok", "a")
    assert connection_id_for("o1", "tiktok", "a") != connection_id_for("o1", "other", "a")
    # the separator cannot be forged by an owner id that contains the other parts
    assert connection_id_for("o1\x1ftiktok", "x", "a") != connection_id_for("o1", "tiktok\x1fx", "a")


def test_an_unpublished_event_stays_in_the_outbox_until_sent(stack, monkeypatch):
    publisher = runtime.services().publisher
    monkeypatch.setattr(publisher, "publish", lambda pending: [])  # EventBridge down
    store = runtime.services().connections
    saved = store.save_grant(grant("rft.1", refresh_expires_at=START + 1000), START, created_event, no_schedule)
    stored = store.get(saved.connection.connection_id)
    assert len(stored.outbox) == 1
    (pending,) = stored.outbox.values()
    assert pending["detail_type"] == "Connection Created"
    # a reconnect keeps the older pending event beside its own
    again = store.save_grant(grant("rft.2", refresh_expires_at=START + 2000), START + 5, created_event, no_schedule)
    assert len(store.get(again.connection.connection_id).outbox) == 2
