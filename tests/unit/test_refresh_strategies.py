"""The refresh strategies at work, each on a made-up provider described only by profile data (no provider name in
the code): extension, re-exchange, standard non-rotating, hard caps, disuse, the connect chain, the account id
from user info, and error rules mapped to the lifecycle."""

import pytest
from oauth_keeper.domain import events

from local.provider_world import ProviderWorld
from local.sim_provider import DAY, Quirks

pytestmark = pytest.mark.unit
BASE = {"display_name": "Made-up", "authorize_url": "https://auth.test/authorize",
        "token_url": "https://auth.test/token", "revoke_url": None, "userinfo_url": None,
        "pkce_support": "unsupported", "scope_separator": ",", "default_scopes": ["basic"]}
GRAPH_ERRORS = [{"class": "reconnect", "path": "error.code", "equals": [190]},
                {"class": "rate_limited", "path": "error.code", "equals": [4, 17, 341]}]
EXPIRED = (400, {"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}})
TOO_YOUNG = (400, {"error": {"message": "token too young", "type": "OAuthException", "code": 100}})
# An extension provider: code, then a GET exchange for a 60-day token, renewed with the token itself by GET.
EXTEND = {**BASE, "name": "extendo", "refresh_strategy": "extend", "token_fields": {"account_id": "user_id"},
          "chain": [{"url": "https://graph.test/access_token", "method": "GET", "encoding": "query",
                     "client_auth": "client_secret_only", "params": {"grant_type": "x_exchange_token"}}],
          "requests": {"refresh": {"url": "https://graph.test/refresh_access_token", "method": "GET",
                                   "encoding": "query", "client_auth": "none",
                                   "params": {"grant_type": "x_refresh_token"}}},
          "timing": {"min_token_age": DAY}, "error_rules": GRAPH_ERRORS,
          "access_lifetime": {"minimum": 600, "maximum": 61 * DAY, "fallback": 3600}}
REEXCHANGE = {**BASE, "name": "swapper", "refresh_strategy": "re_exchange", "token_fields": {"account_id": "uid"},
              "chain": [{"url": "https://graph.test/oauth/access_token", "method": "GET", "encoding": "query",
                         "params": {"grant_type": "swap_token"}, "credential_param": "swap_token"}],
              "requests": {"refresh": {"method": "GET", "encoding": "query", "params": {"grant_type": "swap_token"},
                                       "credential_param": "swap_token"}},
              "error_rules": GRAPH_ERRORS,
              "access_lifetime": {"minimum": 600, "maximum": 61 * DAY, "fallback": 3600}}
STANDARD = {**BASE, "name": "keeper", "refresh_strategy": "standard", "client_auth": "client_secret_post",
            "token_fields": {"account_id": "id_token.sub"}, "refresh_policy": "on_demand",
            "authorize_params": {"access_type": "offline", "prompt": "consent"},
            "timing": {"disuse_expiry": 180 * DAY, "app_status_caps": {"testing": 7 * DAY}},
            "access_lifetime": {"minimum": 60, "maximum": DAY, "fallback": 3600}}
CAPPED = {**BASE, "name": "capped", "refresh_strategy": "standard", "userinfo_url": "https://api.test/me",
          "account_id_source": "userinfo", "userinfo": {"account_id": "sub", "display_name": "name"},
          "token_fields": {"refresh_expires_in": "refresh_token_expires_in"}, "timing": {"hard_cap": 365 * DAY},
          "headers": {"Api-Version": "202501"},
          "access_lifetime": {"minimum": 600, "maximum": 61 * DAY, "fallback": 60 * DAY},
          "refresh_lifetime": {"minimum": DAY, "maximum": 366 * DAY, "fallback": 365 * DAY}}


WARNING = 14 * DAY  # the worlds' expiry_warning unless a test sets its own


def occurred(event: dict) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(event["detail"]["occurred_at"].replace("Z", "+00:00")).timestamp())


def connected(world: ProviderWorld, user: str = "alice") -> str:
    result = world.connect(user)
    assert result["status"] == "connected", result
    return result["connection_id"]


# -- extension -----------------------------------------------------------------------------------------------------
def test_an_extension_connect_stores_the_long_lived_token_from_the_chain():
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY, too_young=TOO_YOUNG,
                                                       dead_grant=EXPIRED))
    cid = connected(world)
    connection, now = world.get(cid), world.clock.now()
    assert connection.account_id == "alice"  # from the code's answer, carried through the chain
    assert connection.access_expires_at == now + 60 * DAY  # the chain's token, not the 1-hour one
    assert connection.refresh_expires_at == connection.access_expires_at  # the grant ends with it
    assert len(world.provider.sent("chain")) == 1 and world.tokens(cid)["refresh_token"] is None
    assert DAY <= connection.next_refresh_at - now < 60 * DAY  # after the minimum age, before the end


def test_a_failed_chain_link_fails_the_connect_and_stores_nothing():
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY))
    world.provider.fail_next("chain", 400, {"error": {"message": "bad", "type": "OAuthException", "code": 1}})
    result = world.connect("alice")
    assert result["status"] == "error" and result["error"] == "exchange_failed"
    assert world.connections() == []  # no short-lived token stored as if it were long-lived


def test_an_extension_before_the_minimum_age_is_never_sent_even_when_forced():
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY, too_young=TOO_YOUNG))
    cid = connected(world)
    world.clock.advance(DAY - 60)
    outcome = world.services.refresher.refresh(cid, force=True)
    assert outcome.result == "not_due" and outcome.reason == "token_too_young"
    assert world.provider.sent("refresh") == []
    assert world.get(cid).next_refresh_at >= world.get(cid).connected_at + DAY
    world.clock.advance(120)
    assert world.services.refresher.refresh(cid, force=True).result == "refreshed"
    assert [c.status for c in world.provider.sent("refresh")] == [200]


def test_an_extension_keeps_a_grant_alive_for_400_days_and_renews_its_end():
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY, too_young=TOO_YOUNG,
                                                       dead_grant=EXPIRED))
    cids = [connected(world, user) for user in ("a", "b", "c")]
    world.run_until(world.clock.now() + 400 * DAY)
    assert {world.get(cid).status for cid in cids} == {"active"}
    assert world.get(cids[0]).access_expires_at > world.clock.now()
    refreshes = world.provider.sent("refresh")
    assert refreshes and all(c.status == 200 for c in refreshes)  # never too young, never expired
    assert len(refreshes) <= 3 * 10  # about every 48 days, not every sweep


def test_an_expired_extension_token_needs_the_user_without_a_call():
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY))
    cid = connected(world)
    world.clock.advance(61 * DAY)
    outcome = world.services.refresher.refresh(cid, force=True)
    assert outcome.result == "needs_reauth" and outcome.reason == "access_token_expired"
    assert world.provider.sent("refresh") == []


def test_a_claimed_extension_grant_keeps_its_token_age_and_its_plan():
    """Connect confirmation on (the default): the grant waits for its claim, then is planned like any other."""
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY), connect_confirmation="required")
    result = world.connect("alice", owner_id="owner")
    assert result["status"] == "pending_confirmation"
    claimed = world.services.pending.claim({"claim": result["claim"], "owner_id": "owner"})
    cid = claimed["connection"]["connection_id"]
    assert world.tokens(cid)["issued_at"] >= world.get(cid).connected_at
    assert world.get(cid).next_refresh_at >= world.tokens(cid)["issued_at"] + DAY


# -- re-exchange -----------------------------------------------------------------------------------------------------
def test_a_re_exchange_swaps_the_valid_token_with_the_clients_credentials():
    world = ProviderWorld.create(REEXCHANGE, quirks=Quirks(access_ttl=60 * DAY, dead_grant=EXPIRED))
    cid = connected(world)
    first = world.tokens(cid)["access_token"]
    world.clock.advance(50 * DAY)
    assert world.services.refresher.refresh(cid, force=True).result == "refreshed"
    assert world.tokens(cid)["access_token"] != first
    assert world.get(cid).refresh_expires_at == world.clock.now() + 60 * DAY


# -- standard, disuse and app status -------------------------------------------------------------------------------
def test_standard_refresh_keeps_the_stored_refresh_token_when_the_answer_has_none():
    world = ProviderWorld.create(STANDARD, quirks=Quirks(issues_refresh_on_refresh=False))
    cid = connected(world)
    stored = world.tokens(cid)["refresh_token"]
    world.clock.advance(2 * 3600)
    assert world.services.refresher.refresh(cid, force=True).result == "refreshed"
    assert world.tokens(cid)["refresh_token"] == stored  # never overwritten with nothing
    world.clock.advance(2 * 3600)
    assert world.services.refresher.refresh(cid, force=True).result == "refreshed"  # and it still works


def test_disuse_expiry_is_moved_by_each_refresh_and_the_keep_alive_beats_it():
    world = ProviderWorld.create(STANDARD, quirks=Quirks(issues_refresh_on_refresh=False))
    cid = connected(world)
    assert world.get(cid).refresh_expires_at == world.clock.now() + 180 * DAY
    world.run_until(world.clock.now() + 400 * DAY)
    assert world.get(cid).status == "active"
    assert world.get(cid).refresh_expires_at > world.clock.now() + 179 * DAY


def test_an_app_status_cap_warns_ahead_then_needs_the_user():
    """Google's Testing mode: 7 days, whatever refreshing does."""
    world = ProviderWorld.create(STANDARD, quirks=Quirks(issues_refresh_on_refresh=False),
                                 overrides={"app_status": "testing"}, expiry_warning=2 * DAY)
    cid = connected(world)
    ends = world.get(cid).connected_at + 7 * DAY
    assert world.get(cid).refresh_expires_at == ends
    world.run_until(ends - 1)
    expiring = world.events(events.EXPIRING)
    assert world.get(cid).status == "active" and len(expiring) == 1
    assert occurred(expiring[0]) <= ends - 2 * DAY + 3600
    world.run_until(ends + 600)
    assert world.get(cid).status == "needs_reauth" and world.get(cid).status_reason == "refresh_token_expired"


# -- hard cap, user info, headers ------------------------------------------------------------------------------------
def test_a_hard_cap_is_never_extended_by_refreshing_and_is_announced_ahead():
    world = ProviderWorld.create(CAPPED, quirks=Quirks(access_ttl=60 * DAY))
    cid = connected(world)
    connection = world.get(cid)
    assert connection.account_id == "alice" and connection.display_name == "User alice"  # from user info
    ends = connection.connected_at + 365 * DAY
    world.run_until(ends - 1)
    assert world.get(cid).refresh_expires_at == ends and world.get(cid).status == "active"
    expiring = world.events(events.EXPIRING)
    assert len(expiring) == 1 and occurred(expiring[0]) <= ends - WARNING + 3600  # a whole warning ahead
    world.run_until(ends + 600)
    assert world.get(cid).status == "needs_reauth"


def test_a_required_header_missing_would_be_refused_so_every_call_carries_it():
    world = ProviderWorld.create(CAPPED, quirks=Quirks(access_ttl=60 * DAY))
    connected(world)
    assert all(c.status == 200 for c in world.provider.calls)


# -- error rules -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "body", "result", "reason"), [
    (400, EXPIRED[1], "needs_reauth", "invalid_grant"),
    (400, {"error": {"code": 4, "message": "Application request limit reached"}}, "retrying", "rate_limited"),
    (400, {"error": {"code": 2, "message": "Service temporarily unavailable"}}, "retrying", "request_rejected"),
    (503, EXPIRED[1], "retrying", "provider_unavailable"),  # a 5xx is transient whatever its body says
])
def test_error_rules_decide_the_lifecycle(status, body, result, reason):
    world = ProviderWorld.create(EXTEND, quirks=Quirks(access_ttl=60 * DAY))
    cid = connected(world)
    world.clock.advance(2 * DAY)
    world.provider.fail_next("refresh", status, body)
    outcome = world.services.refresher.refresh(cid, force=True)
    assert (outcome.result, outcome.reason) == (result, reason)
