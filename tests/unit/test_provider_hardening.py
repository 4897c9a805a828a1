"""PKCE is sent unless the provider cannot take it, and provider endpoints are https:// (issue 13, section 4).

A profile declares what its provider does with PKCE (`pkce_support`: required, supported, unsupported); no
setting switches it off. Every endpoint a profile calls or names, configured or discovered, must be https://
unless the deployment is in local mode (ALLOW_HTTP_ENDPOINTS=true, which template.yaml never sets).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from oauth_keeper.adapters.profiles import Profiles
from oauth_keeper.domain.errors import ConfigurationError
from oauth_keeper.domain.flows import SESSION_TTL, ConnectSession
from oauth_keeper.domain.providers import ProviderProfile, profile_for, profile_from_data
from oauth_keeper.settings import Settings
from oauth_keeper.usecases.connect import Authorization

from local.memory import ManualClock, MemoryFlowStore, StaticCredentials

pytestmark = pytest.mark.unit

T0 = 1_800_000_000
ENV = {"STACK_NAME": "s", "CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k", "OWNER_KEY_ARN": "h",
       "EVENT_BUS_NAME": "b", "REFRESH_QUEUE_URL": "q"}
ACME = {"PROVIDERS": "tiktok,acme", "ACME_PROFILE": "generic", "ACME_AUTHORIZE_URL": "https://id.acme.test/a",
        "ACME_TOKEN_URL": "https://id.acme.test/t"}


def settings(**env: str) -> Settings:
    return Settings.from_env({**ENV, **env})


class OneProfile:
    """The ProviderProfiles port answering with one given profile."""

    def __init__(self, profile: ProviderProfile) -> None:
        self._profile = profile

    def profile(self, provider: str) -> ProviderProfile:
        return self._profile


def authorize(profile: ProviderProfile) -> tuple[dict[str, list[str]], MemoryFlowStore]:
    """One authorize step for `profile`: the query of the consent-screen URL, and the flow store."""
    clock, flows = ManualClock(T0), MemoryFlowStore()
    flows.put_session("session-token", ConnectSession(
        owner_id="owner-1", provider=profile.name, return_to="https://app.example.com/back",
        scopes=("user.info.basic",), expires_at=T0 + SESSION_TTL, issued_at=T0))
    step = Authorization(flows=flows, profiles=OneProfile(profile), clock=clock,
                         credentials=StaticCredentials({"client_key": "ck", "client_id": "ck"}))
    redirect = step.start(profile.name, {"session": ["session-token"]}, "https://keeper.example.com")
    return parse_qs(urlsplit(redirect.location).query), flows


# -- PKCE ---------------------------------------------------------------------------------------------------------
def test_tiktok_declares_pkce_supported_and_every_authorization_carries_its_hex_challenge():
    tiktok = profile_for("tiktok", ("tiktok",), {})
    assert (tiktok.pkce_support, tiktok.pkce) == ("supported", "s256-hex")
    query, flows = authorize(tiktok)
    (flow,) = flows.records()
    assert query["code_challenge"] == [hashlib.sha256(flow.code_verifier.encode()).hexdigest()]
    assert query["code_challenge_method"] == ["S256"]


@pytest.mark.parametrize(("support", "sent"), [("required", True), ("supported", True), ("unsupported", False)])
def test_pkce_is_sent_unless_the_profile_says_the_provider_cannot_take_it(support, sent):
    profile = replace(profile_for("tiktok", ("tiktok",), {}), pkce_support=support)
    query, flows = authorize(profile)
    (flow,) = flows.records()
    assert ("code_challenge" in query) is sent
    assert (flow.code_verifier is not None) is sent


@pytest.mark.parametrize("name", ["TIKTOK_PKCE_MODE", "ACME_PKCE_MODE"])
def test_no_setting_turns_pkce_off(name):
    with pytest.raises(ConfigurationError, match=f"{name} must be one of s256, s256-hex") as refused:
        settings(**ACME, **{name: "none"})
    assert "can no longer be turned off" in refused.value.message


def test_both_challenge_methods_stay_switchable_by_configuration():
    for method in ("s256", "s256-hex"):
        configured = settings(TIKTOK_PKCE_MODE=method)
        assert profile_for("tiktok", configured.providers, configured.provider_overrides).pkce == method


def test_a_profile_file_must_declare_a_known_pkce_support_and_method():
    base = {"name": "acme", "display_name": "Acme", "authorize_url": "https://a.test/a",
            "token_url": "https://a.test/t", "revoke_url": None, "userinfo_url": None}
    assert profile_from_data(base).pkce_support == "supported"  # the default: send it
    with pytest.raises(ValueError, match="pkce_support must be one of"):
        profile_from_data({**base, "pkce_support": "optional"})
    with pytest.raises(ValueError, match="declares pkce_support 'unsupported'"):  # says what replaces `none`
        profile_from_data({**base, "pkce": "none"})


def test_a_pkce_method_for_a_provider_that_takes_no_pkce_is_refused(monkeypatch):
    """Setting a method there would suggest PKCE protects the flows; it does not."""
    import oauth_keeper.domain.providers as providers

    unsupported = {**providers._profile_file("generic"), "pkce_support": "unsupported"}  # noqa: SLF001
    monkeypatch.setattr(providers, "_profile_file", lambda name: unsupported)
    assert not providers.profile_for("acme", ("acme",), {"acme": {"profile": "generic"}}).sends_pkce
    with pytest.raises(ValueError, match="declares PKCE unsupported"):
        providers.profile_for("acme", ("acme",), {"acme": {"profile": "generic", "pkce": "s256"}})


# -- HTTPS ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["TIKTOK_AUTHORIZE_URL", "TIKTOK_TOKEN_URL", "TIKTOK_REVOKE_URL",
                                  "TIKTOK_USERINFO_URL"])
def test_a_plain_http_provider_endpoint_fails_the_cold_start_naming_the_setting(name):
    with pytest.raises(ConfigurationError, match=f"{name} must be https://"):
        settings(**{name: "http://open.tiktokapis.com/v2/x/"})


@pytest.mark.parametrize("url", ["http://id.acme.test", "HTTP://id.acme.test", "ftp://id.acme.test", "https://",
                                 "https:/id.acme.test", "id.acme.test", "https://[::1"])
def test_anything_but_an_absolute_https_url_is_refused(url):
    with pytest.raises(ConfigurationError, match="ACME_ISSUER must be https://"):
        settings(**ACME, ACME_ISSUER=url)


def test_local_mode_allows_http_endpoints_and_nothing_else_does():
    local = settings(TIKTOK_TOKEN_URL="http://127.0.0.1:9/token", ALLOW_HTTP_ENDPOINTS="true")
    assert local.allow_http_endpoints
    assert not settings().allow_http_endpoints
    for value in ("yes", "1", "on"):  # only an explicit `true` turns local mode on
        with pytest.raises(ConfigurationError, match="ALLOW_HTTP_ENDPOINTS must be true or false"):
            settings(ALLOW_HTTP_ENDPOINTS=value)
    with pytest.raises(ConfigurationError, match="TIKTOK_TOKEN_URL"):
        settings(TIKTOK_TOKEN_URL="http://127.0.0.1:9/token", ALLOW_HTTP_ENDPOINTS="false")


class DiscoveryServer:
    """What discovery fetches: a metadata document; every URL asked for is recorded."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata
        self.asked: list[str] = []

    def get(self, url: str, **_: Any) -> Any:
        self.asked.append(url)
        metadata = self.metadata

        class Answer:
            def json(self) -> dict[str, Any]:
                return metadata

        return Answer()


def test_an_endpoint_named_by_discovery_must_be_https_too():
    server = DiscoveryServer({"issuer": "https://id.acme.test", "authorization_endpoint": "https://id.acme.test/a",
                              "token_endpoint": "http://id.acme.test/token"})
    overrides = {"acme": {"profile": "generic", "issuer": "https://id.acme.test", "discovery": "true"}}
    with pytest.raises(ConfigurationError, match="token_url"):
        Profiles(("acme",), overrides, lambda: server).profile("acme")
    assert Profiles(("acme",), overrides, lambda: server, allow_http=True).profile("acme").token_url == \
        "http://id.acme.test/token"


def test_settings_built_in_code_get_the_same_check_before_anything_is_sent():
    """The composition root builds profiles through the Profiles adapter, whatever built the Settings."""
    server = DiscoveryServer({})
    overrides = {"acme": {"profile": "generic", "issuer": "http://id.acme.test", "discovery": "true"}}
    with pytest.raises(ConfigurationError, match="issuer"):
        Profiles(("acme",), overrides, lambda: server).profile("acme")
    assert server.asked == []  # the discovery document was not fetched over http://
