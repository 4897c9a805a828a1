"""The simulated TikTok behaves like tiktok.md says TikTok does, over real loopback HTTP."""

import secrets
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import httpx
import pytest

from local.fake_tiktok import AuthorizeError, FakeTikTok, pkce_challenge

pytestmark = pytest.mark.integration

REDIRECT = "https://app.example/callback/tiktok"


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_tiktok(clock):
    started: list[FakeTikTok] = []

    def make(**options) -> FakeTikTok:
        options.setdefault("redirect_uris", (REDIRECT,))
        options.setdefault("clock", clock)
        sim = FakeTikTok(**options).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def tiktok(make_tiktok) -> FakeTikTok:
    return make_tiktok()


@pytest.fixture
def http():
    with httpx.Client(timeout=5, follow_redirects=False) as client:
        yield client


def authorize_url(
    sim: FakeTikTok, *, verifier: str | None = "v" * 50, method: str = "s256-hex", **overrides
) -> str:
    params = {
        "client_key": sim.client_key,
        "response_type": "code",
        "scope": "user.info.basic,video.publish,video.list",
        "redirect_uri": REDIRECT,
        "state": "state-123",
    }
    if verifier is not None:
        params |= {"code_challenge": pkce_challenge(verifier, method), "code_challenge_method": "S256"}
    params |= overrides
    return sim.authorize_url + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_request(http: httpx.Client, sim: FakeTikTok, **fields) -> httpx.Response:
    body = {"client_key": sim.client_key, "client_secret": sim.client_secret} | fields
    return http.post(sim.token_url, data={k: v for k, v in body.items() if v is not None})


def exchange(http, sim, code, *, verifier="v" * 50, redirect_uri=REDIRECT, **extra) -> httpx.Response:
    return token_request(
        http,
        sim,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        **extra,
    )


def refresh(http, sim, refresh_token) -> httpx.Response:
    return token_request(http, sim, grant_type="refresh_token", refresh_token=refresh_token)


def connect(http, sim, user="alice") -> dict:
    code = callback_params(sim.approve(authorize_url(sim), user=user))["code"]
    response = exchange(http, sim, code)
    assert "access_token" in response.json(), response.text
    return response.json()


def userinfo(http, sim, access_token, fields="open_id,union_id,avatar_url,display_name") -> httpx.Response:
    return http.get(
        sim.userinfo_url, params={"fields": fields}, headers={"Authorization": f"Bearer {access_token}"}
    )


def assert_oauth_error(response: httpx.Response, error: str, status: int = 200) -> dict:
    body = response.json()
    assert response.status_code == status, response.text
    assert body["error"] == error, body
    assert "access_token" not in body
    assert body["log_id"]
    return body


class ConsentForm(HTMLParser):
    """What a browser without JavaScript would submit from the consent page."""

    def __init__(self, page: str):
        super().__init__()
        self.action = ""
        self.fields: list[tuple[str, str]] = []
        self.users: list[str] = []
        self.selected_user = ""
        self.scope_boxes: dict[str, dict] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.fields.append((a["name"], a["value"]))
        elif tag == "input" and a.get("type") == "checkbox":
            self.scope_boxes[a["id"].removeprefix("scope-")] = a
        elif tag == "option":
            self.users.append(a["value"])
            if "selected" in a:
                self.selected_user = a["value"]

    def submit(self, http, sim, *, action, user, untick=()):
        granted = [
            (box["name"], box["value"])
            for scope, box in self.scope_boxes.items()
            if "checked" in box and "disabled" not in box and scope not in untick
        ]
        body = self.fields + granted + [("user", user), ("action", action)]
        return http.post(
            sim.base_url + self.action,
            content=urlencode(body),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


# ---- authorize ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"client_key": "someone-else"}, "invalid_client"),
        ({"redirect_uri": "https://evil.example/callback/tiktok"}, "invalid_request"),
        ({"redirect_uri": REDIRECT + "/"}, "invalid_request"),  # exact match, no trailing-slash leniency
        ({"state": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_configuration_mistakes_show_tiktoks_own_error_page_instead_of_redirecting(
    tiktok, http, override, error
):
    response = http.get(authorize_url(tiktok, **override))

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert f'<code id="error">{error}</code>' in response.text
    with pytest.raises(AuthorizeError) as raised:
        tiktok.approve(authorize_url(tiktok, **override))
    assert raised.value.error == error


def test_missing_pkce_challenge_is_refused_in_hex_mode_but_accepted_when_pkce_is_off(make_tiktok, http):
    strict = make_tiktok(pkce="s256-hex")
    relaxed = make_tiktok(pkce="none")

    refused = http.get(authorize_url(strict, verifier=None))
    accepted = http.get(authorize_url(relaxed, verifier=None))

    assert refused.status_code == 400 and "code_challenge is required" in refused.text
    assert accepted.status_code == 200 and "Authorize" in accepted.text


def test_unknown_scope_redirects_back_with_invalid_scope(tiktok, http):
    response = http.get(authorize_url(tiktok, scope="user.info.basic,video.delete_everything"))

    assert response.status_code == 302
    params = callback_params(response.headers["location"])
    assert params["error"] == "invalid_scope" and params["state"] == "state-123"
    assert "code" not in params


def test_consent_page_escapes_what_it_echoes_and_is_not_cached(make_tiktok, http):
    sim = make_tiktok(app_name="<b>Evil & Co</b>")
    response = http.get(authorize_url(sim, state='"><script>alert(1)</script>'))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text and "<b>Evil" not in response.text
    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in response.text
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<script" not in response.text.lower()  # works without JavaScript


def test_consent_form_carries_the_query_and_grants_only_the_ticked_scopes(tiktok, http):
    page = http.get(authorize_url(tiktok, user="bob"))
    form = ConsentForm(page.text)

    assert form.selected_user == "bob" and {"alice", "bob"} <= set(form.users)
    assert (
        "disabled" in form.scope_boxes["user.info.basic"] and "checked" in form.scope_boxes["video.publish"]
    )
    response = form.submit(http, tiktok, action="authorize", user="bob", untick={"video.publish"})

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = callback_params(location)
    assert params["scopes"] == "user.info.basic,video.list"
    assert params["state"] == "state-123"
    tokens = exchange(http, tiktok, params["code"]).json()
    assert tokens["open_id"] == tiktok.users["bob"].open_id
    assert tokens["scope"] == "user.info.basic,video.list"


def test_cancel_on_the_consent_page_redirects_with_access_denied(tiktok, http):
    form = ConsentForm(http.get(authorize_url(tiktok)).text)

    response = form.submit(http, tiktok, action="cancel", user="alice")

    params = callback_params(response.headers["location"])
    assert response.status_code == 302
    assert params["error"] == "access_denied" and params["state"] == "state-123" and "code" not in params
    assert callback_params(tiktok.deny(authorize_url(tiktok)))["error"] == "access_denied"


def test_a_forged_consent_post_cannot_skip_validation(tiktok, http):
    form = ConsentForm(http.get(authorize_url(tiktok)).text)
    form.fields = [(n, "https://evil.example/cb" if n == "redirect_uri" else v) for n, v in form.fields]

    response = form.submit(http, tiktok, action="authorize", user="alice")

    assert response.status_code == 400 and "location" not in response.headers


def test_user_info_basic_is_granted_even_when_the_user_unticks_everything(tiktok):
    location = tiktok.approve(authorize_url(tiktok, scope="video.publish"), scopes=[])

    assert callback_params(location)["scopes"] == "user.info.basic"


def test_redirect_uri_with_a_query_gets_the_callback_parameters_appended(make_tiktok):
    sim = make_tiktok(redirect_uris=("https://app.example/cb?tenant=7",))

    location = sim.approve(authorize_url(sim, redirect_uri="https://app.example/cb?tenant=7"))

    assert location.startswith("https://app.example/cb?tenant=7&code=")
    assert callback_params(location)["tenant"] == "7"


# ---- code exchange -----------------------------------------------------------------------------


def test_code_has_characters_that_must_be_decoded_exactly_once(tiktok, http):
    location = tiktok.approve(authorize_url(tiktok))
    raw_query = urlsplit(location).query
    code = callback_params(location)["code"]

    assert {"*", "!", "~", "%", "+"} <= set(code)
    assert "%25" in raw_query and "%2A" in raw_query and "%2B" in raw_query  # sent percent-encoded
    assert_oauth_error(exchange(http, tiktok, unquote(code)), "invalid_grant")  # decoded twice
    assert_oauth_error(exchange(http, tiktok, quote(code, safe="")), "invalid_grant")  # encoded twice
    concatenated = http.post(
        tiktok.token_url,
        content=(  # no form encoding at all: '+' turns into a space
            f"client_key={tiktok.client_key}&client_secret={tiktok.client_secret}&grant_type=authorization_code"
            f"&code={code}&redirect_uri={quote(REDIRECT, safe='')}&code_verifier={'v' * 50}"
        ),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(concatenated, "invalid_grant")
    response = exchange(http, tiktok, code)  # httpx form-encodes once: the right way

    assert response.status_code == 200 and response.json()["access_token"].startswith("act.")


def test_token_response_is_flat_with_tiktoks_fields(tiktok, http):
    tokens = connect(http, tiktok)

    assert set(tokens) == {
        "access_token",
        "expires_in",
        "open_id",
        "refresh_token",
        "refresh_expires_in",
        "scope",
        "token_type",
    }
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 7200 and tokens["refresh_expires_in"] == 180 * 86400
    assert tokens["refresh_token"].startswith("rft.")
    assert tokens["scope"] == "user.info.basic,video.publish,video.list"
    assert tokens["open_id"] == tiktok.users["alice"].open_id


def test_code_works_once_only(tiktok, http):
    code = callback_params(tiktok.approve(authorize_url(tiktok)))["code"]

    assert exchange(http, tiktok, code).status_code == 200
    body = assert_oauth_error(exchange(http, tiktok, code), "invalid_grant")
    assert "used" in body["error_description"]


def test_code_expires_after_code_ttl(make_tiktok, http, clock):
    sim = make_tiktok(code_ttl=600)
    fresh = callback_params(sim.approve(authorize_url(sim)))["code"]
    stale = callback_params(sim.approve(authorize_url(sim)))["code"]

    clock.advance(599)
    assert exchange(http, sim, fresh).status_code == 200
    clock.advance(1)
    body = assert_oauth_error(exchange(http, sim, stale), "invalid_grant")
    assert "expired" in body["error_description"]


def test_redirect_uri_must_equal_the_authorize_one(make_tiktok, http):
    sim = make_tiktok(redirect_uris=(REDIRECT, "https://app.example/other"))
    code = callback_params(sim.approve(authorize_url(sim)))["code"]

    assert_oauth_error(exchange(http, sim, code, redirect_uri="https://app.example/other"), "invalid_grant")
    assert_oauth_error(exchange(http, sim, code, redirect_uri=None), "invalid_request")
    assert exchange(http, sim, code).status_code == 200  # failures did not burn the code


@pytest.mark.parametrize(("mode", "wrong_mode"), [("s256-hex", "s256"), ("s256", "s256-hex")])
def test_pkce_verifier_is_checked_with_the_configured_digest(make_tiktok, http, mode, wrong_mode):
    sim = make_tiktok(pkce=mode)
    verifier = secrets.token_urlsafe(48)
    right = callback_params(sim.approve(authorize_url(sim, verifier=verifier, method=mode)))["code"]
    wrong = callback_params(sim.approve(authorize_url(sim, verifier=verifier, method=wrong_mode)))["code"]

    assert_oauth_error(exchange(http, sim, right, verifier=None), "invalid_request")
    assert_oauth_error(exchange(http, sim, right, verifier=verifier + "x"), "invalid_grant")
    assert exchange(http, sim, right, verifier=verifier).status_code == 200
    assert_oauth_error(exchange(http, sim, wrong, verifier=verifier), "invalid_grant")


def test_hex_challenge_is_lowercase_sha256_hex():
    # RFC 7636 appendix B's example verifier, digested TikTok's way and the RFC's way.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier, "s256") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_challenge(verifier, "s256-hex") == (
        "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
    )


# ---- token endpoint: request shape and client auth ---------------------------------------------


def test_json_body_is_refused(tiktok, http):
    code = callback_params(tiktok.approve(authorize_url(tiktok)))["code"]

    response = http.post(
        tiktok.token_url,
        json={
            "client_key": tiktok.client_key,
            "client_secret": tiktok.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "v" * 50,
        },
    )

    assert_oauth_error(response, "invalid_request")


def test_basic_auth_does_not_count_as_client_credentials(tiktok, http):
    code = callback_params(tiktok.approve(authorize_url(tiktok)))["code"]

    response = http.post(
        tiktok.token_url,
        auth=(tiktok.client_key, tiktok.client_secret),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "v" * 50,
        },
    )

    assert_oauth_error(response, "invalid_client")


def test_wrong_secret_is_invalid_client_and_a_rotated_secret_takes_over(tiktok, http):
    tokens = connect(http, tiktok)
    old_secret = tiktok.client_secret

    assert_oauth_error(
        token_request(
            http,
            tiktok,
            client_secret="nope",
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        ),
        "invalid_client",
    )
    tiktok.rotate_client_secret("new-secret")
    assert_oauth_error(
        token_request(
            http,
            tiktok,
            client_secret=old_secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        ),
        "invalid_client",
    )
    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 200  # helper sends the new secret


def test_unknown_grant_type_is_unsupported(tiktok, http):
    assert_oauth_error(token_request(http, tiktok, grant_type="client_credentials"), "unsupported_grant_type")


def test_errors_carry_a_fresh_log_id_and_the_configured_status(make_tiktok, http):
    lenient = make_tiktok()
    strict = make_tiktok(error_status=400)

    first = assert_oauth_error(refresh(http, lenient, "rft.nope"), "invalid_grant", status=200)
    second = assert_oauth_error(refresh(http, lenient, "rft.nope"), "invalid_grant", status=200)
    assert_oauth_error(refresh(http, strict, "rft.nope"), "invalid_grant", status=400)
    assert first["log_id"] != second["log_id"]
    assert set(first) == {"error", "error_description", "log_id"}


# ---- refresh rotation --------------------------------------------------------------------------


def test_refresh_rotates_and_the_old_token_dies_at_once(make_tiktok, http):
    sim = make_tiktok(revoke_grant_on_reuse=False)
    first = connect(http, sim)

    second = refresh(http, sim, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert_oauth_error(refresh(http, sim, first["refresh_token"]), "invalid_grant")
    third = refresh(
        http, sim, second["refresh_token"]
    )  # lenient server: the newest token survived the replay
    assert third.status_code == 200 and "access_token" in third.json()


def test_replaying_an_old_refresh_token_revokes_the_whole_grant(tiktok, http):
    first = connect(http, tiktok)
    second = refresh(http, tiktok, first["refresh_token"]).json()

    assert_oauth_error(refresh(http, tiktok, first["refresh_token"]), "invalid_grant")

    assert_oauth_error(refresh(http, tiktok, second["refresh_token"]), "invalid_grant")
    assert userinfo(http, tiktok, second["access_token"]).status_code == 401
    assert tiktok.grants_for(first["open_id"]) == []


def test_refresh_token_end_is_fixed_at_consent_by_default(tiktok, http, clock):
    tokens = connect(http, tiktok)

    clock.advance(86400)
    rotated = refresh(http, tiktok, tokens["refresh_token"]).json()
    assert rotated["refresh_expires_in"] == 179 * 86400
    clock.advance(179 * 86400)
    body = assert_oauth_error(refresh(http, tiktok, rotated["refresh_token"]), "invalid_grant")
    assert "expired" in body["error_description"]


def test_refresh_token_end_restarts_on_rotation_when_configured(make_tiktok, http, clock):
    sim = make_tiktok(extend_refresh_on_rotation=True)
    tokens = connect(http, sim)

    for _ in range(3):  # three rotations 100 days apart: well past a fixed 180-day end
        clock.advance(100 * 86400)
        tokens = refresh(http, sim, tokens["refresh_token"]).json()
        assert tokens["refresh_expires_in"] == 180 * 86400


def test_expire_refresh_token_makes_the_next_refresh_fail(tiktok, http):
    tokens = connect(http, tiktok)

    assert tiktok.expire_refresh_token(tokens["open_id"]) == 1

    assert_oauth_error(refresh(http, tiktok, tokens["refresh_token"]), "invalid_grant")


def test_a_new_consent_kills_the_older_grant_when_tiktok_keeps_one_grant_per_user(make_tiktok, http):
    sim = make_tiktok(single_grant_per_user=True)
    first = connect(http, sim)
    second = connect(http, sim)

    assert_oauth_error(refresh(http, sim, first["refresh_token"]), "invalid_grant")
    assert [g.refresh_token for g in sim.grants_for(first["open_id"])] == [second["refresh_token"]]


# ---- user info and revoke ----------------------------------------------------------------------


def test_user_info_returns_only_the_requested_fields(tiktok, http):
    tokens = connect(http, tiktok)

    response = userinfo(http, tiktok, tokens["access_token"], fields="open_id,display_name")

    body = response.json()
    assert response.status_code == 200
    assert body["data"]["user"] == {"open_id": tokens["open_id"], "display_name": "Alice Example"}
    assert body["error"]["code"] == "ok" and body["error"]["log_id"]


def test_user_info_refuses_unknown_and_expired_tokens_with_401(tiktok, http, clock):
    tokens = connect(http, tiktok)

    unknown = userinfo(http, tiktok, "act.nope")
    clock.advance(7200)
    expired = userinfo(http, tiktok, tokens["access_token"])

    for response in (unknown, expired):
        assert response.status_code == 401
        assert response.json()["data"] == {}
        assert response.json()["error"]["code"] == "access_token_invalid"
        assert response.json()["error"]["log_id"]


def test_revoke_kills_the_grant(tiktok, http):
    tokens = connect(http, tiktok)

    response = http.post(
        tiktok.revoke_url,
        data={
            "client_key": tiktok.client_key,
            "client_secret": tiktok.client_secret,
            "token": tokens["access_token"],
        },
    )

    assert response.status_code == 200 and response.json()["error"] == ""
    assert userinfo(http, tiktok, tokens["access_token"]).status_code == 401
    assert_oauth_error(refresh(http, tiktok, tokens["refresh_token"]), "invalid_grant")
    assert tiktok.grants_for(tokens["open_id"]) == []


def test_revoke_with_a_wrong_secret_is_invalid_client_and_revokes_nothing(tiktok, http):
    tokens = connect(http, tiktok)

    response = http.post(
        tiktok.revoke_url,
        data={"client_key": tiktok.client_key, "client_secret": "nope", "token": tokens["access_token"]},
    )

    assert_oauth_error(response, "invalid_client")
    assert userinfo(http, tiktok, tokens["access_token"]).status_code == 200


def test_revoke_user_kills_all_of_that_users_grants_only(tiktok, http):
    alice_1, alice_2, bob = connect(http, tiktok), connect(http, tiktok), connect(http, tiktok, user="bob")
    pending = callback_params(tiktok.approve(authorize_url(tiktok)))["code"]

    assert tiktok.revoke_user(alice_1["open_id"]) == 2

    for tokens in (alice_1, alice_2):
        assert_oauth_error(refresh(http, tiktok, tokens["refresh_token"]), "invalid_grant")
    assert_oauth_error(exchange(http, tiktok, pending), "invalid_grant")
    assert refresh(http, tiktok, bob["refresh_token"]).status_code == 200
    assert len(tiktok.grants_for(bob["open_id"])) == 1


# ---- fault injection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("5xx", 503, "server_error"),
        ("429", 429, "rate_limit_exceeded"),
        ("temporarily_unavailable", 200, "temporarily_unavailable"),
    ],
)
def test_outage_kinds_fail_the_token_endpoint_until_cleared(tiktok, http, kind, status, error):
    tokens = connect(http, tiktok)

    tiktok.set_outage(kind)
    assert_oauth_error(refresh(http, tiktok, tokens["refresh_token"]), error, status=status)
    assert userinfo(http, tiktok, tokens["access_token"]).json()["error"]["code"] != "ok"
    tiktok.set_outage(None)

    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 200  # the outage consumed nothing


def test_timeout_outage_holds_the_answer_past_the_clients_timeout(tiktok, http):
    tokens = connect(http, tiktok)
    tiktok.timeout_delay = 0.5
    tiktok.set_outage("timeout")

    with httpx.Client(timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        refresh(impatient, tiktok, tokens["refresh_token"])
    started = time.monotonic()
    patient = refresh(http, tiktok, tokens["refresh_token"])

    assert time.monotonic() - started >= 0.45
    assert_oauth_error(patient, "server_error", status=503)


def test_fail_next_fails_exactly_n_requests(tiktok, http):
    tokens = connect(http, tiktok)

    tiktok.fail_next(2, "5xx")

    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 503
    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 503
    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 200


def test_latency_delays_token_answers(tiktok, http):
    tiktok.latency = 0.3
    started = time.monotonic()

    refresh(http, tiktok, "rft.nope")

    assert time.monotonic() - started >= 0.28


def test_admin_endpoints_drive_faults_and_report_stats(tiktok, http):
    tokens = connect(http, tiktok)

    assert http.post(tiktok.base_url + "/_sim/outage", json={"kind": "429"}).status_code == 200
    assert refresh(http, tiktok, tokens["refresh_token"]).status_code == 429
    http.post(tiktok.base_url + "/_sim/outage", json={"kind": None})
    assert http.post(tiktok.base_url + "/_sim/outage", json={"kind": "meteor"}).status_code == 400
    assert http.post(
        tiktok.base_url + "/_sim/expire-refresh", json={"open_id": tokens["open_id"]}
    ).json() == {"expired": 1}
    assert http.post(tiktok.base_url + "/_sim/revoke", json={"open_id": tokens["open_id"]}).json() == {
        "revoked": 1
    }
    stats = http.get(tiktok.base_url + "/_sim/stats").json()

    assert stats["outage"] is None
    assert stats["stats"]["faults_injected"] == 1
    assert stats["stats"]["token_requests"] == 2


def test_stats_count_what_happened(tiktok, http):
    tokens = connect(http, tiktok)
    refresh(http, tiktok, tokens["refresh_token"])
    refresh(http, tiktok, tokens["refresh_token"])  # replay: counted, not a success
    userinfo(http, tiktok, tokens["access_token"])
    http.post(
        tiktok.revoke_url,
        data={
            "client_key": tiktok.client_key,
            "client_secret": tiktok.client_secret,
            "token": tokens["access_token"],
        },
    )

    assert tiktok.stats["token_requests"] == 3
    assert tiktok.stats["code_exchanges"] == 1
    assert tiktok.stats["refreshes"] == 2
    assert tiktok.stats["refresh_successes"] == 1
    assert tiktok.stats["refresh_reuses"] == 1
    assert tiktok.stats["userinfo_requests"] == 1
    assert tiktok.stats["revocations"] == 1


def test_webhook_signature_is_hmac_of_timestamp_and_raw_body(tiktok):
    import hashlib
    import hmac

    body, headers = tiktok.signed_webhook(tiktok.users["alice"].open_id, reason=1, timestamp=1_700_000_000)

    t, s = (part.split("=", 1)[1] for part in headers["TikTok-Signature"].split(","))
    expected = hmac.new(tiktok.client_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert t == "1700000000" and s == expected
    assert b'"event": "authorization.removed"' in body
