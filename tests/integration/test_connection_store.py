"""The Connections table seen directly: reconnects merge tokens without ever losing a refresh token."""

from __future__ import annotations

import pytest
from oauth_keeper import root
from oauth_keeper.domain.connection import Grant, derived_connection_id
from oauth_keeper.domain.tokens import TokenSet
from oauth_keeper.usecases.connect import save_grant

from tests.integration.conftest import START

pytestmark = pytest.mark.integration


def grant(refresh_token: str | None, *, refresh_expires_at: int | None, access: str = "act.1") -> Grant:
    tokens = TokenSet(access_token=access, refresh_token=refresh_token, token_type="Bearer",
                      access_expires_at=START + 7200, refresh_expires_at=refresh_expires_at,
                      scopes=("user.info.basic",), account_id="acct-1", issued_at=START)
    return Grant(owner_id="owner-1", provider="tiktok", account_id="acct-1", tokens=tokens,
                 scopes_requested=("user.info.basic",), scopes_granted=("user.info.basic",))


def save(store, granted: Grant, now: int):
    return save_grant(store, granted, next_refresh_at=None, missing_scopes=[], now=now)


def test_a_reconnect_without_a_refresh_token_keeps_the_stored_one(stack):
    store = root.container().connections
    save(store, grant("rft.first", refresh_expires_at=START + 1000), START)
    without_refresh = grant(None, refresh_expires_at=None, access="act.2")
    saved = save(store, without_refresh, START + 10)
    assert not saved.created
    tokens = store.open_tokens(store.get(saved.connection.connection_id))
    assert tokens == {"access_token": "act.2", "refresh_token": "rft.first", "token_type": "Bearer"}
    assert store.get(saved.connection.connection_id).refresh_expires_at == START + 1000


def test_the_ids_of_connections_written_before_guards_are_one_per_owner_provider_and_account():
    """ADR 0010's ids, which such connections keep: found again under them (see test_connection_ids.py)."""
    assert derived_connection_id("o1", "tiktok", "a") == derived_connection_id("o1", "tiktok", "a")
    assert derived_connection_id("o1", "tiktok", "a") != derived_connection_id("o2", "tiktok", "a")
    assert derived_connection_id("o1", "tiktok", "a") != derived_connection_id("o1", "other", "a")
    # the separator cannot be forged by an owner id that contains the other parts
    assert derived_connection_id("o1\x1ftiktok", "x", "a") != derived_connection_id("o1", "tiktok\x1fx", "a")


def test_an_unpublished_event_stays_in_the_outbox_until_sent(stack, monkeypatch):
    publisher = root.container().publisher
    monkeypatch.setattr(publisher, "publish", lambda pending: [])  # EventBridge down
    store = root.container().connections
    saved = save(store, grant("rft.1", refresh_expires_at=START + 1000), START)
    stored = store.get(saved.connection.connection_id)
    assert len(stored.outbox) == 1
    (pending,) = stored.outbox.values()
    assert pending["detail_type"] == "Connection Created"
    # a reconnect keeps the older pending event beside its own
    again = save(store, grant("rft.2", refresh_expires_at=START + 2000), START + 5)
    assert len(store.get(again.connection.connection_id).outbox) == 2
