"""Attacks a reviewer played against the refresher and the callback's store (issue 11), kept as regressions:
a reconnect never forgets a possible lost rotation, another account's tokens are never kept, a strict-rotation
answer without a refresh token leaves the old one in doubt, unreadable stored tokens never break a reconnect."""

from __future__ import annotations

import pytest
from oauth_keeper.domain.connection import Grant
from oauth_keeper.domain.tokens import TokenSet
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.refresh import REFRESHED, RETRYING

from local.memory import no_sleep
from tests.unit.test_refresh_decisions import OWNER, SCOPES, World, invalid_grant, transient

pytestmark = pytest.mark.unit


@pytest.fixture
def world() -> World:
    return World()


def reconnect_without_refresh_token(world, account="acct-1"):
    tokens = TokenSet(access_token="at-re", refresh_token=None, token_type="Bearer",
                      access_expires_at=world.now + 7200, refresh_expires_at=None, scopes=SCOPES,
                      account_id=account, issued_at=world.now)
    grant = Grant(owner_id=OWNER, provider="tiktok", account_id=account, tokens=tokens,
                  scopes_requested=SCOPES, scopes_granted=SCOPES)
    return save_grant(world.store, grant, next_refresh_at=world.now + 3600, missing_scopes=[], now=world.now,
                      sleep=no_sleep).connection


def test_A_reconnect_without_refresh_token_forgets_a_possible_lost_rotation(world):
    cid = world.connect()
    # a refresh that timed out after sending: TikTok may have rotated rt-acct-1 away
    world.provider.script(transient("timeout", None, maybe_processed=True))
    assert world.refresher.refresh(cid, force=True).result == RETRYING
    assert world.at(cid).refresh_in_doubt
    # the user reconnects; TikTok's exchange answer carries no refresh token: the stored one is kept
    c = reconnect_without_refresh_token(world)
    _ = ("after reconnect: status", c.status, "in_doubt", world.at(cid).refresh_in_doubt,
          "rt", world.tokens(cid)["refresh_token"])
    # the kept (rotated-away) refresh token is refused
    world.provider.script(invalid_grant())
    out = world.refresher.refresh(cid, force=True)
    _ = ("outcome", out.result, out.reason)
    assert out.reason == "rotation_lost", out.reason


def test_B_refresh_answer_for_another_account_is_committed(world):
    cid = world.connect("acct-1")
    world.provider.script(world.answer("2", account="acct-OTHER"))
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, world.at(cid).account_id, world.tokens(cid))
    assert out.result != REFRESHED, "tokens of acct-OTHER stored under acct-1's connection"


def test_C_refresh_answer_without_refresh_token_under_strict_rotation(world):
    cid = world.connect()
    a = world.answer("2")
    from dataclasses import replace
    world.provider.script(replace(a, refresh_token=None, refresh_expires_at=None))
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, world.tokens(cid)["refresh_token"], world.at(cid).refresh_in_doubt)
    world.provider.script(invalid_grant())
    out = world.refresher.refresh(cid, force=True)
    _ = (out.result, out.reason)
    assert out.reason == "rotation_lost", out.reason


def test_E_reconnect_without_refresh_token_over_unreadable_tokens(world):
    cid = world.connect()
    blob = bytearray(world.items.get(cid)["tokens"])
    blob[-1] ^= 1
    world.items.update(cid, set={"tokens": bytes(blob), "status": "needs_reauth",
                                 "status_reason": "token_unreadable"}, expect={})
    from oauth_keeper.domain.lifecycle import NoUsableRefreshToken
    try:
        reconnect_without_refresh_token(world)
    except NoUsableRefreshToken:
        return  # the callback answers incomplete_grant (retryable)
    except Exception as exc:  # the callback's generic handler: a 500 page after the code was spent
        pytest.fail(f"save_grant raised {type(exc).__name__}: {exc}")


