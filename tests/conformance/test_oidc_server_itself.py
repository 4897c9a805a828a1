"""The local OAuth server (oidc-provider, local/oidc) behaves as the conformance suite needs.

Plain httpx against the server, no oauth-keeper code: if one of these fails, the conformance tests
built on it prove nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conformance.oidc_server import ConsentError, OidcServer, consent

pytestmark = pytest.mark.integration

SCOPE = "openid offline_access profile"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(server: OidcServer, *, state: str, challenge: str | None, scope: str = SCOPE, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": server.client_id,
        "redirect_uri": server.redirect_uris[0],
        "scope": scope,
        "state": state,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{server.issuer}/auth?{urlencode(params | extra)}"


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class Flow:
    """One user's trip through the server, as a client would make it."""

    def __init__(self, server: OidcServer, http: httpx.Client, login: str = "alice") -> None:
        self.server, self.http, self.login = server, http, login
        self.state = secrets.token_urlsafe(32)
        self.verifier, self.challenge = pkce_pair()
        self.callback = consent(authorize_url(server, state=self.state, challenge=self.challenge), login)
        self.params = query(self.callback)

    def exchange(self, *, verifier: str | None = "own", **auth: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": self.params["code"],
            "redirect_uri": self.server.redirect_uris[0],
        }
        if verifier is not None:
            form["code_verifier"] = self.verifier if verifier == "own" else verifier
        return token(self.server, self.http, form, **auth)


def token(server: OidcServer, http: httpx.Client, form: dict[str, str], *, secret: str | None = None,
          method: str | None = None) -> httpx.Response:
    """POST to the token endpoint authenticating as the server's client (its registered method by default)."""
    secret = server.client_secret if secret is None else secret
    method = method or server.client_auth
    if method == "client_secret_basic":
        return http.post(f"{server.issuer}/token", data=form, auth=(server.client_id, secret))
    return http.post(f"{server.issuer}/token", data=form | {"client_id": server.client_id, "client_secret": secret})


def refresh(server: OidcServer, http: httpx.Client, refresh_token: str) -> httpx.Response:
    return token(server, http, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("cache-control") == "no-store"
    assert response.json()["error"] == error, response.text


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcServer]:
    """One server for this module (each test makes its own grants); conftest's `oidc` is per test."""
    with OidcServer.start() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def test_discovery_document(oidc, http):
    response = http.get(oidc.discovery_url)
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == oidc.issuer
    assert oidc.issuer.startswith("http://127.0.0.1:") and not oidc.issuer.endswith("/")
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "revocation_endpoint",
                     "introspection_endpoint", "jwks_uri"):
        assert doc[endpoint].startswith(oidc.issuer + "/"), endpoint
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token"} <= set(doc["grant_types_supported"])
    assert {"client_secret_post", "client_secret_basic"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert {"openid", "offline_access", "profile"} <= set(doc["scopes_supported"])


def test_authorize_and_consent_give_a_code_with_state_and_iss(oidc, http):
    flow = Flow(oidc, http)
    assert flow.callback.startswith(oidc.redirect_uris[0] + "?")
    assert set(flow.params) == {"code", "state", "iss"}
    assert flow.params["state"] == flow.state
    assert flow.params["iss"] == oidc.issuer  # RFC 9207: exactly the issuer, no trailing slash


def test_code_exchange_requires_the_pkce_verifier(oidc, http):
    flow = Flow(oidc, http)
    assert_oauth_error(flow.exchange(verifier=None), 400, "invalid_grant")
    assert_oauth_error(flow.exchange(verifier=pkce_pair()[0]), 400, "invalid_grant")
    # oidc-provider checks PKCE before it consumes the code: a failed check leaves the code usable.
    good = flow.exchange()
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 120
    assert body["access_token"] and body["refresh_token"] and body["id_token"]
    # offline_access is never echoed in `scope`, yet a refresh token is issued.
    assert body["scope"] == "openid profile"
    assert good.headers.get("cache-control") == "no-store"


def test_authorize_without_pkce_is_refused_at_the_redirect_uri(oidc):
    state = secrets.token_urlsafe(16)
    callback = query(consent(authorize_url(oidc, state=state, challenge=None)))
    assert callback["error"] == "invalid_request"
    assert callback["state"] == state and callback["iss"] == oidc.issuer


def test_authorize_with_an_unregistered_redirect_uri_shows_an_error_page(oidc):
    url = authorize_url(oidc, state="s", challenge=pkce_pair()[1], redirect_uri="https://evil.example/callback/oidc")
    with pytest.raises(ConsentError, match="invalid_redirect_uri"):
        consent(url)


def test_user_refusal_comes_back_as_access_denied(oidc):
    state = secrets.token_urlsafe(16)
    callback = query(consent(authorize_url(oidc, state=state, challenge=pkce_pair()[1]), approve=False))
    assert callback["error"] == "access_denied"
    assert callback["state"] == state and callback["iss"] == oidc.issuer


def test_refresh_rotates_and_reuse_revokes_the_whole_grant(oidc, http):
    first = Flow(oidc, http).exchange().json()

    rotated = refresh(oidc, http, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 120

    third = refresh(oidc, http, second["refresh_token"]).json()
    assert third["refresh_token"] not in {first["refresh_token"], second["refresh_token"]}

    # Presenting an already-used refresh token: invalid_grant ...
    assert_oauth_error(refresh(oidc, http, second["refresh_token"]), 400, "invalid_grant")
    # ... and the whole grant is gone: the newest refresh token and the live access token are dead too.
    assert_oauth_error(refresh(oidc, http, third["refresh_token"]), 400, "invalid_grant")
    userinfo = http.get(f"{oidc.issuer}/me", headers={"Authorization": f"Bearer {third['access_token']}"})
    assert userinfo.status_code == 401
    assert 'error="invalid_token"' in userinfo.headers["www-authenticate"]


def test_a_reuse_revokes_only_its_own_grant(oidc, http):
    alice = Flow(oidc, http, "alice").exchange().json()
    alice_again = Flow(oidc, http, "alice").exchange().json()  # a second consent: a separate grant
    bob = Flow(oidc, http, "bob").exchange().json()
    refresh(oidc, http, alice["refresh_token"])
    assert_oauth_error(refresh(oidc, http, alice["refresh_token"]), 400, "invalid_grant")
    assert refresh(oidc, http, alice_again["refresh_token"]).status_code == 200
    assert refresh(oidc, http, bob["refresh_token"]).status_code == 200


def test_wrong_client_secret_is_invalid_client(oidc, http):
    flow = Flow(oidc, http)
    response = flow.exchange(secret="not-the-secret")
    assert_oauth_error(response, 401, "invalid_client")
    # The code was not consumed by the failed client authentication.
    assert flow.exchange().status_code == 200


def test_code_replay_is_invalid_grant_and_revokes_its_tokens(oidc, http):
    flow = Flow(oidc, http)
    issued = flow.exchange().json()
    assert_oauth_error(flow.exchange(), 400, "invalid_grant")
    assert_oauth_error(refresh(oidc, http, issued["refresh_token"]), 400, "invalid_grant")


def test_userinfo_with_the_access_token(oidc, http):
    issued = Flow(oidc, http, "carol").exchange().json()
    response = http.get(f"{oidc.issuer}/me", headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": "carol",
        "preferred_username": "carol",
        "name": "Carol Example",
        "picture": "https://avatars.example.com/carol.png",
    }
    # After a refresh the new access token works as well.
    renewed = refresh(oidc, http, issued["refresh_token"]).json()
    again = http.get(f"{oidc.issuer}/me", headers={"Authorization": f"Bearer {renewed['access_token']}"})
    assert again.status_code == 200 and again.json()["sub"] == "carol"


def test_the_registered_client_auth_method_is_enforced(oidc, http):
    flow = Flow(oidc, http)
    assert oidc.client_auth == "client_secret_post"
    assert_oauth_error(flow.exchange(method="client_secret_basic"), 401, "invalid_client")
    assert flow.exchange().status_code == 200


def test_client_secret_basic_client():
    with OidcServer.start(client_auth="client_secret_basic") as server, httpx.Client(timeout=10.0) as http:
        flow = Flow(server, http)
        assert_oauth_error(flow.exchange(method="client_secret_post"), 401, "invalid_client")
        issued = flow.exchange()
        assert issued.status_code == 200, issued.text
        assert refresh(server, http, issued.json()["refresh_token"]).status_code == 200


def test_revoke_account_hook_kills_the_users_grants(oidc, http):
    issued = Flow(oidc, http, "dave").exchange().json()
    assert oidc.revoke_account("dave") == 1
    assert_oauth_error(refresh(oidc, http, issued["refresh_token"]), 400, "invalid_grant")


def test_short_access_tokens_expire(http):
    with OidcServer.start(access_token_ttl=1) as server, httpx.Client(timeout=10.0) as client:
        issued = Flow(server, client).exchange().json()
        assert issued["expires_in"] == 1
        time.sleep(2.1)
        expired = client.get(f"{server.issuer}/me", headers={"Authorization": f"Bearer {issued['access_token']}"})
        assert expired.status_code == 401
        assert refresh(server, client, issued["refresh_token"]).status_code == 200


def test_stop_ends_the_process():
    server = OidcServer.start()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    assert server._process.returncode == 0  # SIGTERM is a clean exit
    with pytest.raises(httpx.TransportError):
        httpx.get(server.discovery_url, timeout=2)


def introspect(server: OidcServer, http: httpx.Client, token_value: str) -> dict:
    form = {"token": token_value, "client_id": server.client_id, "client_secret": server.client_secret}
    response = http.post(f"{server.issuer}/token/introspection", data=form)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("sliding", [True, False])
def test_refresh_token_lifetime_sliding_or_fixed(sliding):
    ttl = 3600
    with OidcServer.start(refresh_token_ttl=ttl, refresh_token_sliding=sliding) as server, \
            httpx.Client(timeout=10.0) as http:
        first = Flow(server, http).exchange().json()
        before = introspect(server, http, first["refresh_token"])
        assert before["active"] is True and before["exp"] - before["iat"] == ttl
        time.sleep(1.1)
        second = refresh(server, http, first["refresh_token"]).json()
        after = introspect(server, http, second["refresh_token"])
        assert after["active"] is True
        if sliding:
            assert after["exp"] - after["iat"] == ttl and after["exp"] > before["exp"]
        else:
            assert abs(after["exp"] - before["exp"]) <= 1
        assert introspect(server, http, first["refresh_token"]) == {"active": False}


def test_plain_http_loopback_redirect_uris_are_accepted():
    uris = ("http://127.0.0.1:8765/callback/oidc", "http://localhost:8765/callback/oidc")
    with OidcServer.start(redirect_uris=uris) as server, httpx.Client(timeout=10.0) as http:
        for uri in uris:
            verifier, challenge = pkce_pair()
            callback = consent(authorize_url(server, state="s", challenge=challenge, redirect_uri=uri))
            assert callback.startswith(uri + "?")
            form = {"grant_type": "authorization_code", "code": query(callback)["code"], "redirect_uri": uri,
                    "code_verifier": verifier}
            assert token(server, http, form).status_code == 200


def test_revocation_endpoint_kills_the_grant(oidc, http):
    issued = Flow(oidc, http).exchange().json()
    form = {"token": issued["refresh_token"], "token_type_hint": "refresh_token"}
    response = http.post(f"{oidc.issuer}/token/revocation",
                         data=form | {"client_id": oidc.client_id, "client_secret": oidc.client_secret})
    assert response.status_code == 200 and response.text == ""
    assert_oauth_error(refresh(oidc, http, issued["refresh_token"]), 400, "invalid_grant")
    dead = http.get(f"{oidc.issuer}/me", headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert dead.status_code == 401
