"""The callback never stores a connection that could not stay connected (issue 11, case 1), on in-memory adapters."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.test_callback import OWNER, STATE, World, tokens

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def test_a_first_connect_without_a_refresh_token_is_refused_as_retryable_and_nothing_is_stored(world):
    world.start()
    world.provider.exchanges.append(replace(tokens("acct-1"), refresh_token=None, refresh_expires_at=None))
    result = world.complete({"state": [STATE], "code": ["code-1"]})
    assert result.params == {"status": "error", "error": "incomplete_grant", "retryable": "true"}
    assert world.items.items() == [] and world.publisher.events == []


def test_a_reconnect_without_a_refresh_token_keeps_the_stored_one_while_it_is_usable(world):
    cid = world.seed("acct-1")
    world.start()
    world.provider.exchanges.append(replace(tokens("acct-1", suffix="2"), refresh_token=None,
                                            refresh_expires_at=None))
    result = world.complete({"state": [STATE], "code": ["code-2"]})
    assert result.params["status"] == "connected" and result.params["connection_id"] == cid
    assert world.store.open_tokens(world.store.get(cid))["refresh_token"] == "rt-seed"


@pytest.mark.parametrize("dead", ["needs_reauth", "refresh_expired"])
def test_a_reconnect_without_a_refresh_token_is_refused_when_the_stored_one_is_dead(world, dead):
    cid = world.seed("acct-1")
    changes = {"status": "needs_reauth", "status_reason": "invalid_grant"} if dead == "needs_reauth" \
        else {"refresh_expires_at": world.now - 1}
    world.items.update(cid, set=changes, expect={})
    world.start()
    world.provider.exchanges.append(replace(tokens("acct-1", suffix="2"), refresh_token=None,
                                            refresh_expires_at=None))
    result = world.complete({"state": [STATE], "code": ["code-2"]})
    assert result.params["error"] == "incomplete_grant"
    assert world.store.find(OWNER, "tiktok", "acct-1").token_version == 1  # untouched
