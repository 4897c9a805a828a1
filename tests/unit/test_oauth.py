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
                              "OWNER_KEY_ARN": "h", "STACK_NAME": "s", "EVENT_BUS_NAME": "b",
                              "REFRESH_QUEUE_URL": "q", **env})


def test_tiktok_pkce_challenge_is_the_hex_digest_and_s256_is_base64url():
    digest = hashlib.sha256(VERIFIER.encode()).digest()
    assert code_challenge(VERIFIER, "s256-hex") == digest.hex()
    assert code_challenge(VERIFIER, "s256") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    with pytest.raises(ValueError, match="none"):
        code_challenge(VERIFIER, "none")


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


def test_the_pkce_method_is_switchable_by_configuration_alone():
    profile = profile_for("tiktok", settings(TIKTOK_PKCE_MODE="s256"))
    url = authorize_url(profile, client_id="ck", redirect_uri="https://x/callback/tiktok", state="s",
                        scopes=("user.info.basic",), code_verifier=VERIFIER)
    assert parse_qs(urlsplit(url).query)["code_challenge"] == [code_challenge(VERIFIER, "s256")]


def test_endpoint_urls_and_scopes_are_overridable():
    profile = profile_for("tiktok", settings(TIKTOK_TOKEN_URL="https://127.0.0.1:9/token",
                                             TIKTOK_SCOPES="user.info.basic,video.list"))
    assert profile.token_url == "https://127.0.0.1:9/token"
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


@pytest.mark.parametrize("value", [4320, 60])
def test_an_implausibly_short_tiktok_refresh_lifetime_falls_back_to_the_shortest_documented(value):
    """Found in review: a 60 s floor trusted `refresh_expires_in: 4320` (minutes, or a typo: the connection
    would be ended three days later). The short end is kept aside: a refresh trusts it only where it is the end
    already known."""
    body = {"access_token": "a", "expires_in": 7200, "refresh_token": "r", "refresh_expires_in": value,
            "open_id": "u1"}
    tokens = parse_token_response(TIKTOK, body, sent_at=1000)
    assert tokens.refresh_expires_at == 1000 + 15_552_000
    assert tokens.anomalies == ("refresh_expires_in:out_of_bounds",)
    assert tokens.short_refresh_expires_at == 1000 + value


@pytest.mark.parametrize(("value", "lifetime"), [(120, 120), (1799, 1799), (3600.0, 3600), (600.0, 600)])
def test_an_access_lifetime_below_the_minimum_is_kept_as_reported_never_made_longer(value, lifetime):
    """Found in the second review: falling back to 2 h for `expires_in: 1799` (or `3600.0`, a float) made the
    token route serve a token for up to 90 minutes after it died. Shorter than plausible is flagged and kept:
    an early refresh costs little, a dead token fails the post."""
    body = {"access_token": "a", "expires_in": value, "refresh_token": "r", "refresh_expires_in": 15_552_000,
            "open_id": "u1"}
    tokens = parse_token_response(TIKTOK, body, sent_at=1000)
    assert tokens.access_expires_at == 1000 + lifetime
    assert tokens.anomalies == (("expires_in:below_minimum",) if lifetime < 1800 else ())


@pytest.mark.parametrize(("status", "maybe"), [(200, True), (400, True), (500, True), (401, False)])
def test_a_server_error_may_have_rotated_whatever_status_it_came_with(status, maybe):
    """Found in the second review: `server_error` ("an unexpected condition", RFC 6749 section 5.2) came back
    with a 200 or 400 and was not marked in doubt; the same answer with a 500 was."""
    from oauth_keeper.domain.protocol import token_answer

    code = "server_error" if maybe else "invalid_client"
    with pytest.raises(Exception) as failed:
        token_answer(TIKTOK, {"error": code}, status, 0)
    assert failed.value.maybe_processed is maybe


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
