"""Contract tests reuse the integration world (moto with the template's resources, the simulated TikTok) and
seed it with real connections made through the real connect flow."""

from __future__ import annotations

import json

import pytest
from oauth_keeper import root

from local import apigw
from tests.contract.support import SEEDED
from tests.integration.conftest import (  # noqa: F401 - pytest fixtures
    aws,
    browser,
    clock,
    create_session,
    location_query,
    meta,
    meta_app,
    stack,
    tiktok,
)

OWNER = "owner-1"


def connect(browser, tiktok, user: str, owner_id: str) -> str:  # noqa: F811 - the fixtures' values
    created = create_session(owner_id=owner_id)
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    done = location_query(browser.get(tiktok.approve(authorize["headers"]["Location"], user=user)))
    return done["connection_id"][0]


def hold_grant(account_id: str) -> str:
    """A grant the callback holds for owner-1's claim (as `ConnectConfirmation=required` does); its code."""
    from oauth_keeper.domain.connection import Grant
    from oauth_keeper.domain.flows import OAuthFlow
    from oauth_keeper.domain.tokens import TokenSet

    parts = root.container()
    now = int(parts.clock.now())
    tokens = TokenSet(access_token=f"act.{account_id}", refresh_token=f"rft.{account_id}", token_type="Bearer",
                      access_expires_at=now + 7200, refresh_expires_at=now + 365 * 86400,
                      scopes=("user.info.basic",), account_id=account_id, issued_at=now)
    flow = OAuthFlow(provider="tiktok", owner_id=OWNER, return_to="https://app.example.com/", scopes=tokens.scopes,
                     redirect_uri="https://keeper.example.com/callback/tiktok", code_verifier=None, nonce_hash="-",
                     expires_at=now + 600, issued_at=now)
    grant = Grant(owner_id=OWNER, provider="tiktok", account_id=account_id, tokens=tokens,
                  scopes_requested=tokens.scopes, scopes_granted=tokens.scopes)
    return parts.pending.hold(flow, grant, missing_scopes=[], next_refresh_at=now + 5000)


@pytest.fixture
def seeded(stack, tiktok, browser, meta):  # noqa: F811
    """owner-1 has an active connection (alice), a disconnected one (bob) and one that needs reauth (carol).
    `meta_test` (signed deauthorize and data-deletion callbacks) is enabled beside TikTok."""
    active = connect(browser, tiktok, "alice", OWNER)
    disconnected = connect(browser, tiktok, "bob", OWNER)
    needs_reauth = connect(browser, tiktok, "carol", OWNER)
    assert apigw.invoke("DELETE", f"/connections/{disconnected}")["statusCode"] == 202
    from tests.integration.test_backend_api import run_jobs

    run_jobs()  # the disconnect job (revoke, erase the tokens): in AWS, the refresh worker
    tiktok.revoke_user(tiktok.users["carol"].open_id)  # the user removed the app inside TikTok
    root.container().refresher.refresh(needs_reauth, force=True)  # invalid_grant: the user must reconnect
    SEEDED.fill(owner_id=OWNER, by_status={"active": active, "disconnected": disconnected,
                                           "needs_reauth": needs_reauth})
    SEEDED.claims = {name: hold_grant(f"acct-{name}") for name in ("mine", "foreign")}
    yield SEEDED
    SEEDED.clear()
