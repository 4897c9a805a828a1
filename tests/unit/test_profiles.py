"""Provider profiles are data: TikTok is a JSON file; a generic RFC 6749 provider is configuration."""

import base64
import json

import httpx
import pytest
from oauth_keeper.adapters.discovery import discovered
from oauth_keeper.adapters.provider_http import HttpProviderClient as TokenEndpoint
from oauth_keeper.domain.errors import ConfigurationError, NotFound
from oauth_keeper.domain.providers import profile_for as domain_profile_for
from oauth_keeper.domain.providers import profile_from_data
from oauth_keeper.domain.tokens import ClientCredentials
from oauth_keeper.settings import Settings

pytestmark = pytest.mark.unit
BASE_ENV = {"CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k", "OWNER_KEY_ARN": "h", "STACK_NAME": "s",
            "EVENT_BUS_NAME": "b",
            "REFRESH_QUEUE_URL": "q"}
ACME = {
    "PROVIDERS": "tiktok,acme", "ACME_PROFILE": "generic", "ACME_ISSUER": "https://id.acme.test",
    "ACME_AUTHORIZE_URL": "https://id.acme.test/authorize", "ACME_TOKEN_URL": "https://id.acme.test/token",
    "ACME_SCOPES": "openid offline_access posts.write",
}


def profile_for(name: str, configured: Settings):
    """The profile as a deployment with these settings builds it."""
    return domain_profile_for(name, configured.providers, configured.provider_overrides)


def settings(**env):
    return Settings.from_env({**BASE_ENV, **env})


def test_tiktok_is_entirely_data_from_its_profile_file():
    tiktok = profile_for("tiktok", settings())
    assert (tiktok.client_id_param, tiktok.scope_separator, tiktok.pkce) == ("client_key", ",", "s256-hex")
    assert tiktok.client_auth == "client_secret_post" and tiktok.rotates_refresh_tokens
    assert tiktok.token_fields.account_id == "open_id"
    assert tiktok.classify("access_token_invalid", 401) == "terminal"
    assert tiktok.webhook.signature_header == "TikTok-Signature"


def test_a_generic_provider_is_added_by_configuration_alone():
    acme = profile_for("acme", settings(**ACME))
    assert acme.name == "acme" and acme.client_id_param == "client_id" and acme.scope_separator == " "
    assert acme.default_scopes == ("openid", "offline_access", "posts.write")
    assert acme.pkce == "s256" and acme.client_auth == "client_secret_basic"
    assert acme.token_url == "https://id.acme.test/token" and acme.issuer == "https://id.acme.test"
    assert acme.webhook is None


def test_providers_not_enabled_are_unknown():
    with pytest.raises(NotFound):
        profile_for("acme", settings())  # not in PROVIDERS
    with pytest.raises(NotFound):  # no profile file and no PROFILE=generic...
        domain_profile_for("other", ("tiktok", "other"), {})
    with pytest.raises(ConfigurationError, match="OTHER_PROFILE=generic"):  # ...and a deployment says so at once
        settings(PROVIDERS="tiktok,other")


def test_a_typo_in_a_profile_is_an_error_not_a_silent_default():
    with pytest.raises(ValueError, match="unknown profile keys"):
        profile_from_data({"name": "x", "display_name": "X", "authorize_url": "", "token_url": "",
                           "revoke_url": None, "userinfo_url": None, "scope_seperator": ","})
    with pytest.raises(ValueError):
        domain_profile_for("acme", ("acme",), {"acme": {"profile": "generic", "client_auth": "private_key_jwt"}})
    with pytest.raises(ConfigurationError, match="ACME_CLIENT_AUTH"):  # and a deployment says so at cold start
        settings(**ACME, ACME_CLIENT_AUTH="private_key_jwt")


def capture_token_request(profile, body: dict):
    seen = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen["headers"] = dict(request.headers)
        seen["form"] = dict(httpx.QueryParams(request.content.decode()))
        return httpx.Response(200, json=body)

    endpoint = TokenEndpoint(httpx.Client(transport=httpx.MockTransport(answer)), lambda: 1000)
    tokens = endpoint.refresh(profile, ClientCredentials("my client", "s3cr:et"), "rt-1")
    return seen, tokens


def id_token(claims: dict) -> str:
    def part(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_client_secret_basic_sends_credentials_in_the_header_only():
    acme = profile_for("acme", settings(**ACME))
    seen, tokens = capture_token_request(acme, {"access_token": "a", "refresh_token": "r2", "expires_in": 60,
                                                "id_token": id_token({"sub": "user-77"})})
    user, _, secret = base64.b64decode(seen["headers"]["authorization"].split()[1]).decode().partition(":")
    assert (user, secret) == ("my%20client", "s3cr%3Aet")  # percent-encoded first (RFC 6749 2.3.1)
    assert "client_secret" not in seen["form"] and seen["form"]["refresh_token"] == "rt-1"
    assert tokens.account_id == "user-77"  # from the id_token's subject


def test_client_secret_post_keeps_everything_in_the_body():
    tiktok = profile_for("tiktok", settings())
    seen, tokens = capture_token_request(tiktok, {"access_token": "a", "open_id": "o1", "expires_in": 60})
    assert "authorization" not in seen["headers"]
    assert seen["form"]["client_key"] == "my client" and seen["form"]["client_secret"] == "s3cr:et"
    assert tokens.account_id == "o1"


def discovery_client(document: dict) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=document)))


def test_discovery_fills_endpoints_and_learns_that_iss_is_promised():
    acme = profile_for("acme", settings(**{**ACME, "ACME_DISCOVERY": "true", "ACME_TOKEN_URL": ""}))
    document = {"issuer": "https://id.acme.test", "authorization_endpoint": "https://id.acme.test/auth",
                "token_endpoint": "https://id.acme.test/oauth/token", "userinfo_endpoint": "https://id.acme.test/me",
                "authorization_response_iss_parameter_supported": True}
    found = discovered(acme, discovery_client(document))
    assert found.token_url == "https://id.acme.test/oauth/token" and found.userinfo_url == "https://id.acme.test/me"
    assert found.authorize_url == "https://id.acme.test/authorize"  # configured values win
    assert found.require_iss is True


def test_discovery_metadata_naming_another_issuer_is_refused():
    acme = profile_for("acme", settings(**ACME, ACME_DISCOVERY="true"))
    with pytest.raises(ConfigurationError):
        discovered(acme, discovery_client({"issuer": "https://evil.test", "token_endpoint": "https://evil.test/t"}))
