import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from oauth_keeper.domain.errors import NotFound, ProviderError
from oauth_keeper.domain.protocol import authorize_url, code_challenge, parse_token_response
from oauth_keeper.domain.providers import profile_for as domain_profile_for
from oauth_keeper.settings import Settings

pytestmark = pytest.mark.unit
VERIFIER = "v" * 64
TIKTOK = domain_profile_for("tiktok", ("tiktok",), {})


def profile_for(name: str, configured: Settings):
    """The profile as a deployment with these settings builds it."""
    return domain_profile_for(name, configured.providers, configured.provider_overrides)


def settings(**env):
    return Settings.from_env({"CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k",
                              "EVENT_BUS_NAME": "b", "REFRESH_QUEUE_URL": "q", **env})


def test_tiktok_pkce_challenge_is_the_hex_digest_and_s256_is_base64url():
    digest = hashlib.sha256(VERIFIER.encode()).digest()
    assert code_challenge(VERIFIER, "s256-hex") == digest.hex()
    assert code_challenge(VERIFIER, "s256") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert code_challenge(VERIFIER, "none") is None


def test_tiktok_authorize_url_uses_client_key_comma_scopes_and_exact_redirect():
    url = authorize_url(TIKTOK, client_id="ck", redirect_uri="https://api.example.com/callback/tiktok",
                        state="st", scopes=("user.info.basic", "video.publish"), code_verifier=VERIFIER)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://www.tiktok.com/v2/auth/authorize/"
    assert query["client_key"] == ["ck"] and "client_id" not in query
    assert query["scope"] == ["user.info.basic,video.publish"]
    assert query["redirect_uri"] == ["https://api.example.com/callback/tiktok"]
    assert query["code_challenge"] == [hashlib.sha256(VERIFIER.encode()).hexdigest()]
    assert query["code_challenge_method"] == ["S256"]


def test_pkce_can_be_switched_off_by_configuration_alone():
    profile = profile_for("tiktok", settings(TIKTOK_PKCE_MODE="none"))
    url = authorize_url(profile, client_id="ck", redirect_uri="https://x/callback/tiktok", state="s",
                        scopes=("user.info.basic",), code_verifier=None)
    assert "code_challenge" not in url


def test_endpoint_urls_and_scopes_are_overridable():
    profile = profile_for("tiktok", settings(TIKTOK_TOKEN_URL="http://127.0.0.1:9/token",
                                             TIKTOK_SCOPES="user.info.basic,video.list"))
    assert profile.token_url == "http://127.0.0.1:9/token"
    assert profile.default_scopes == ("user.info.basic", "video.list")


def test_unknown_provider_is_not_found():
    with pytest.raises(NotFound):
        profile_for("myspace", settings())


def test_every_expiry_comes_from_the_response():
    body = {"access_token": "a", "expires_in": 7200, "refresh_token": "r", "refresh_expires_in": 15_552_000,
            "open_id": "u1", "scope": "user.info.basic,video.list", "token_type": "Bearer"}
    tokens = parse_token_response(TIKTOK, body, sent_at=1000)
    assert tokens.access_expires_at == 8200
    assert tokens.refresh_expires_at == 1000 + 15_552_000
    assert tokens.scopes == ("user.info.basic", "video.list")
    assert tokens.account_id == "u1"
    shorter = parse_token_response(TIKTOK, {**body, "expires_in": 3600, "refresh_expires_in": 2 * 86400},
                                   sent_at=1000)
    assert (shorter.access_expires_at, shorter.refresh_expires_at) == (4600, 1000 + 2 * 86400)


@pytest.mark.parametrize(("field", "value"), [("expires_in", 120), ("expires_in", 60),
                                              ("refresh_expires_in", 4320), ("refresh_expires_in", 60)])
def test_implausibly_short_tiktok_lifetimes_fall_back_to_the_shortest_documented(field, value):
    """Found in review: a 60 s floor trusted `expires_in: 120` (a refresh every sweep, rotating each time) and
    `refresh_expires_in: 4320` (minutes, or a typo: the connection would be ended three days later)."""
    body = {"access_token": "a", "expires_in": 7200, "refresh_token": "r", "refresh_expires_in": 15_552_000,
            "open_id": "u1", field: value}
    tokens = parse_token_response(TIKTOK, body, sent_at=1000)
    assert (tokens.access_expires_at, tokens.refresh_expires_at) == (1000 + 7200, 1000 + 15_552_000)
    assert tokens.anomalies == (f"{field}:out_of_bounds",)
    # The short refresh end is kept aside: a refresh can trust it where it is the end already known.
    assert tokens.short_refresh_expires_at == (1000 + value if field == "refresh_expires_in" else None)


def test_an_empty_refresh_token_in_a_response_is_treated_as_absent():
    tokens = parse_token_response(TIKTOK, {"access_token": "a", "expires_in": 1, "refresh_token": ""}, sent_at=0)
    assert tokens.refresh_token is None


def test_token_sets_and_credentials_never_print_secrets():
    tokens = parse_token_response(TIKTOK, {"access_token": "act.SECRET", "refresh_token": "rft.SECRET",
                                           "expires_in": 1}, sent_at=0)
    assert "SECRET" not in repr(tokens)


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("invalid_grant", 200, ProviderError.TERMINAL),
    ("invalid_client", 401, ProviderError.OPERATOR),
    ("unauthorized_client", 200, ProviderError.OPERATOR),
    ("rate_limit_exceeded", 429, ProviderError.TRANSIENT),
    ("invalid_grant", 503, ProviderError.TRANSIENT),  # a 5xx is provider trouble whatever the body says
    ("temporarily_unavailable", 200, ProviderError.TRANSIENT),
    ("something_new", 400, ProviderError.REJECTED),
])
def test_tiktok_errors_are_classified_by_whose_problem_they_are(code, status, kind):
    assert TIKTOK.classify(code, status) == kind
