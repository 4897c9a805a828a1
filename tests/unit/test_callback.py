"""The callback's decisions (RFC 6749 section 4.1.2, RFC 9207), on in-memory adapters: no moto, no HTTP.

The flow is put straight into a MemoryFlowStore as the authorize step would; the provider is scripted. Each
test checks what the browser is sent back with (or the page it is refused with), what is stored and which
events leave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.adapters.kms import DataKeys, EnvelopeCipher
from oauth_keeper.domain.connection import ACTIVE, Grant
from oauth_keeper.domain.errors import FailureKind, FlowRejected, ProviderError
from oauth_keeper.domain.events import CREATED
from oauth_keeper.domain.flows import SESSION_TTL, OAuthFlow, secret_hash
from oauth_keeper.domain.providers import ProviderProfile, profile_for
from oauth_keeper.domain.tokens import ClientCredentials, TokenSet, UserProfile
from oauth_keeper.usecases.connect import Callback, CallbackResult, flow_cookie_name, save_grant
from oauth_keeper.usecases.outbox import OutboxRelay

from local.memory import (
    FakeKms,
    ManualClock,
    MemoryFlowStore,
    MemoryItemStore,
    MemoryPublisher,
    StaticCredentials,
    no_sleep,
)

pytestmark = pytest.mark.unit

T0 = 1_800_000_000
DAY = 86_400
OWNER = "owner-1"
SCOPES = ("user.info.basic", "video.list")
STATE = "state-" + "s" * 40
NONCE = "nonce-" + "n" * 40
VERIFIER = "v" * 64
RETURN_TO = "https://app.example.com/connected"
REDIRECT_URI = "https://api.example.com/callback/tiktok"
TIKTOK_ISSUER = "https://www.tiktok.com"


class Profiles:
    """The ProviderProfiles port: TikTok's real profile with this test's overrides (e.g. issuer)."""

    def __init__(self, **overrides: str) -> None:
        self.overrides = dict(overrides)

    def profile(self, provider: str) -> ProviderProfile:
        return profile_for(provider, ("tiktok",), {"tiktok": self.overrides})


class ScriptedProvider:
    """The ProviderClient port: each code exchange takes the next scripted answer (a TokenSet or an exception
    to raise); every call is recorded. User info answers with a display name."""

    def __init__(self) -> None:
        self.exchanges: list[TokenSet | BaseException] = []
        self.calls: list[tuple[Any, ...]] = []

    def exchange_code(self, profile: ProviderProfile, creds: ClientCredentials, *, code: str, redirect_uri: str,
                      code_verifier: str | None, deadline: float | None = None) -> TokenSet:
        self.calls.append(("exchange_code", code, redirect_uri, code_verifier, creds.client_id))
        assert self.exchanges, "the code was exchanged but nothing was scripted"
        answer = self.exchanges.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def fetch_user(self, profile: ProviderProfile, access_token: str, *,
                   deadline: float | None = None) -> UserProfile:
        self.calls.append(("fetch_user", access_token))
        return UserProfile(account_id=None, display_name="Creator One", avatar_url="https://cdn.example/a.jpg")

    def refresh(self, *args: Any, **kwargs: Any) -> TokenSet:
        raise AssertionError("the callback never refreshes")

    def revoke(self, *args: Any, **kwargs: Any) -> str | None:
        raise AssertionError("the callback never revokes")

    def exchanged(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "exchange_code"]


def tokens(account: str | None = "acct-1", *, now: int = T0, suffix: str = "1",
           scopes: tuple[str, ...] = SCOPES) -> TokenSet:
    return TokenSet(access_token=f"at-{suffix}", refresh_token=f"rt-{suffix}", token_type="Bearer",
                    access_expires_at=now + DAY, refresh_expires_at=now + 365 * DAY, scopes=scopes,
                    account_id=account, issued_at=now)


def provider_error(kind: FailureKind, code: str, http_status: int | None) -> ProviderError:
    return ProviderError("the token endpoint refused", code=code, kind=kind, http_status=http_status,
                         log_id="log-exchange")


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.items = MemoryItemStore()
        self.kms = FakeKms()
        self.store = ConnectionStore(self.items, EnvelopeCipher(DataKeys(lambda: self.kms, "arn:memory",
                                                                          self.clock.now)), due_shards=4)
        self.flows = MemoryFlowStore()
        self.publisher = MemoryPublisher()
        self.outbox = OutboxRelay(self.store, self.publisher)
        self.profiles = Profiles()
        self.provider = ScriptedProvider()
        self.callback = Callback(flows=self.flows, profiles=self.profiles,
                                 credentials=StaticCredentials({"client_key": "ck", "client_secret": "cs"}),
                                 provider=self.provider, connections=self.store, outbox=self.outbox,
                                 clock=self.clock, sleep=no_sleep)

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def start(self, *, state: str = STATE, nonce: str = NONCE, connection_id: str | None = None) -> None:
        """The flow the authorize step stores (state and browser nonce known only by their hashes)."""
        self.flows.put_flow(state, OAuthFlow(
            provider="tiktok", owner_id=OWNER, return_to=RETURN_TO, scopes=SCOPES, redirect_uri=REDIRECT_URI,
            code_verifier=VERIFIER, nonce_hash=secret_hash("nonce", nonce), expires_at=self.now + SESSION_TTL,
            connection_id=connection_id,
        ))

    def complete(self, query: dict[str, list[str]], cookies: dict[str, str] | None = None) -> CallbackResult:
        if cookies is None:
            cookies = {flow_cookie_name(STATE): NONCE}
        return self.callback.complete("tiktok", query, cookies)

    def seed(self, account: str) -> str:
        """An existing connection (its Created event published and forgotten)."""
        grant = Grant(owner_id=OWNER, provider="tiktok", account_id=account,
                      tokens=tokens(account, suffix="seed"), scopes_requested=SCOPES, scopes_granted=SCOPES)
        saved = save_grant(self.store, grant, next_refresh_at=self.now + 3600, missing_scopes=[], now=self.now,
                           sleep=no_sleep)
        self.outbox.publish(saved.connection)
        self.publisher.events.clear()
        return saved.connection.connection_id


@pytest.fixture
def world() -> World:
    return World()


def _assert_flow_used_up(world: World) -> None:
    with pytest.raises(FlowRejected) as replay:
        world.complete({"state": [STATE], "code": ["code-again"]})
    assert (replay.value.code, replay.value.status) == ("unknown", 400)


# -- success -----------------------------------------------------------------------------------------------------
def test_a_completed_authorization_stores_an_active_connection_and_announces_it(world):
    world.start()
    world.provider.exchanges.append(tokens("acct-1"))

    result = world.complete({"state": [STATE], "code": ["code-1"], "scopes": ["user.info.basic,video.list"]})

    cid = world.store.find(OWNER, "tiktok", "acct-1").connection_id
    assert result.params == {"status": "connected", "connection_id": cid,
                             "granted_scopes": "user.info.basic,video.list"}
    assert result.return_to == RETURN_TO and result.cookie_name == flow_cookie_name(STATE)
    assert world.provider.exchanged() == [("exchange_code", "code-1", REDIRECT_URI, VERIFIER, "ck")]
    stored = world.store.get(cid)
    assert stored is not None
    assert (stored.status, stored.owner_id, stored.account_id, stored.token_version) == (ACTIVE, OWNER, "acct-1", 1)
    assert stored.scopes_granted == SCOPES
    assert world.store.open_tokens(stored) == {"access_token": "at-1", "refresh_token": "rt-1",
                                               "token_type": "Bearer"}
    assert stored.access_expires_at == T0 + DAY
    assert stored.next_refresh_at is not None and T0 < stored.next_refresh_at < stored.access_expires_at
    assert stored.display_name == "Creator One"  # enriched after the save
    assert stored.outbox == {}  # the event left
    created = world.publisher.of_type(CREATED)
    assert len(created) == 1 and len(world.publisher.events) == 1
    detail = created[0]["detail"]
    assert (detail["connection_id"], detail["owner_id"], detail["status"], detail["reason"]) == (
        cid, OWNER, "active", "connected")
    _assert_flow_used_up(world)


def test_a_response_from_the_expected_issuer_is_accepted(world):
    world.profiles.overrides["issuer"] = TIKTOK_ISSUER
    world.start()
    world.provider.exchanges.append(tokens("acct-1"))

    result = world.complete({"state": [STATE], "code": ["code-1"], "iss": [TIKTOK_ISSUER]})

    assert result.params["status"] == "connected"
    assert len(world.provider.exchanged()) == 1


# -- errors sent back to the app ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "answer", "error", "retryable"), [
    ({"error": ["access_denied"], "error_description": ["User cancelled"]}, None, "access_denied", "false"),
    ({"error": ["something_tiktok_invented"]}, None, "provider_error", "true"),
    ({}, None, "invalid_request", "false"),
    ({"code": ["code-1"]}, provider_error(FailureKind.TRANSIENT, "server_error", 503), "exchange_failed", "true"),
    ({"code": ["code-1"]}, provider_error(FailureKind.REJECTED, "invalid_request", 400), "exchange_failed", "true"),
    ({"code": ["code-1"]}, provider_error(FailureKind.OPERATOR, "invalid_client", 401), "provider_config", "false"),
    ({"code": ["code-1"]}, tokens(account=None), "account_unavailable", "true"),
], ids=["access_denied", "unknown_provider_error", "missing_code", "exchange_transient", "exchange_rejected",
        "exchange_operator", "no_account_id"])
def test_a_failed_authorization_returns_to_the_app_with_a_closed_error_code(world, query, answer, error,
                                                                             retryable):
    world.start()
    if answer is not None:
        world.provider.exchanges.append(answer)

    result = world.complete({"state": [STATE], **query})

    assert result.params == {"status": "error", "error": error, "retryable": retryable}
    assert result.return_to == RETURN_TO
    assert result.location == f"{RETURN_TO}?status=error&error={error}&retryable={retryable}"
    assert len(world.provider.exchanged()) == (0 if answer is None else 1)
    assert world.items.items() == []  # nothing stored
    assert world.publisher.events == []
    _assert_flow_used_up(world)


def test_a_response_naming_another_issuer_is_refused_without_sending_its_code_anywhere(world):
    world.profiles.overrides["issuer"] = TIKTOK_ISSUER
    world.start()

    result = world.complete({"state": [STATE], "code": ["code-1"], "iss": ["https://attacker.example"]})

    assert result.params == {"status": "error", "error": "issuer_mismatch", "retryable": "false"}
    assert world.provider.calls == []
    assert world.items.items() == [] and world.publisher.events == []


def test_a_scope_upgrade_that_comes_back_for_another_account_is_refused_and_changes_nothing(world):
    existing = world.seed("acct-1")
    before = world.items.get(existing)
    world.start(connection_id=existing)
    world.provider.exchanges.append(tokens("acct-2", suffix="2"))

    result = world.complete({"state": [STATE], "code": ["code-1"]})

    assert result.params == {"status": "error", "error": "account_mismatch", "retryable": "true"}
    assert world.store.find(OWNER, "tiktok", "acct-2") is None
    assert world.items.get(existing) == before
    assert world.publisher.events == []


# -- refusals: no trustworthy flow to return to ----------------------------------------------------------------------
def _missing_state(world: World) -> tuple[dict[str, list[str]], dict[str, str]]:
    return {"code": ["code-1"]}, {flow_cookie_name(STATE): NONCE}


def _missing_cookie(world: World) -> tuple[dict[str, list[str]], dict[str, str]]:
    return {"state": [STATE], "code": ["code-1"]}, {}


def _unknown_state(world: World) -> tuple[dict[str, list[str]], dict[str, str]]:
    other = "state-never-issued"
    return {"state": [other], "code": ["code-1"]}, {flow_cookie_name(other): NONCE}


def _expired(world: World) -> tuple[dict[str, list[str]], dict[str, str]]:
    world.clock.advance(SESSION_TTL)
    return {"state": [STATE], "code": ["code-1"]}, {flow_cookie_name(STATE): NONCE}


def _foreign_browser(world: World) -> tuple[dict[str, list[str]], dict[str, str]]:
    return {"state": [STATE], "code": ["code-1"]}, {flow_cookie_name(STATE): "nonce-of-another-browser"}


Prepare = Callable[[World], tuple[dict[str, list[str]], dict[str, str]]]


@pytest.mark.parametrize(("prepare", "code", "status"), [
    (_missing_state, "missing_state", 400),
    (_missing_cookie, "missing_cookie", 403),
    (_unknown_state, "unknown", 400),
    (_expired, "expired", 410),
    (_foreign_browser, "foreign_browser", 403),
], ids=["missing_state", "missing_cookie", "unknown_state", "expired", "foreign_browser"])
def test_a_callback_without_a_trustworthy_flow_is_refused_and_neither_calls_the_provider_nor_stores(
        world, prepare: Prepare, code, status):
    world.start()
    world.provider.exchanges.append(tokens("acct-1"))
    query, cookies = prepare(world)

    with pytest.raises(FlowRejected) as refused:
        world.complete(query, cookies)

    assert (refused.value.code, refused.value.status) == (code, status)
    assert world.provider.calls == []
    assert world.items.items() == []
    assert world.publisher.events == []


def test_a_replayed_callback_is_refused_as_unknown_and_the_code_is_not_exchanged_again(world):
    world.start()
    world.provider.exchanges.append(tokens("acct-1"))
    assert world.complete({"state": [STATE], "code": ["code-1"]}).params["status"] == "connected"
    stored = world.items.get(cid := world.store.find(OWNER, "tiktok", "acct-1").connection_id)

    world.provider.exchanges.append(tokens("acct-1", suffix="2"))
    with pytest.raises(FlowRejected) as replay:
        world.complete({"state": [STATE], "code": ["code-1"]})

    assert (replay.value.code, replay.value.status) == ("unknown", 400)
    assert len(world.provider.exchanged()) == 1
    assert world.items.get(cid) == stored
    assert len(world.publisher.of_type(CREATED)) == 1


def test_another_browsers_cookie_does_not_use_up_the_users_flow(world):
    world.start()
    with pytest.raises(FlowRejected):
        world.complete({"state": [STATE], "code": ["code-1"]}, {flow_cookie_name(STATE): "someone-else"})
    world.provider.exchanges.append(tokens("acct-1"))

    result = world.complete({"state": [STATE], "code": ["code-1"]})

    assert result.params["status"] == "connected"


def test_a_duplicated_code_is_refused_without_consuming_the_flow(world):
    world.start()

    with pytest.raises(FlowRejected) as refused:
        world.complete({"state": [STATE], "code": ["code-1", "code-2"]})

    assert refused.value.code == "duplicate_parameter"
    assert world.provider.calls == [] and world.items.items() == []

    world.provider.exchanges.append(tokens("acct-1"))
    result = world.complete({"state": [STATE], "code": ["code-1"]})
    assert result.params["status"] == "connected"
    assert world.provider.exchanged()[0][1] == "code-1"
