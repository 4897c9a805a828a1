"""`make dev` connects every enabled network: for each of the seven profile-simulated networks a whole connect over
the dev stack's real HTTP (dashboard proxy, gateway, the network's consent page, callback, claim), then 70 simulated
days of keep-alive through the dashboard's clock and sweep, after which the token the keeper serves still works at
the network. One stack for the module (starting one costs seconds); the clock only moves forward.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from oauth_keeper.domain.protocol import code_challenge, dig

from local import sigv4
from local.sim_networks import NETWORKS

pytestmark = pytest.mark.integration
DAY = 86_400
STEP_DAYS = 5  # what a user does with the dashboard's clock and sweep buttons; shorter than any renewal margin
KEEP_ALIVE_DAYS = 70


@pytest.fixture(scope="module")
def dev() -> Iterator[Any]:
    from local.dev import start_dev_stack

    with start_dev_stack(port=0, tiktok_port=0) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(dev) -> Iterator[httpx.Client]:
    """The dashboard's own calls to its proxy (JSON, same origin)."""
    with httpx.Client(base_url=dev.base_url, headers={"Origin": dev.base_url}, timeout=60) as client:
        yield client


def start_connect(api: httpx.Client, name: str) -> tuple[httpx.Client, str, str]:
    """A connect session for `name`; a browser opens its link. Returns the browser, the flow cookie (a __Host-
    cookie: httpx keeps Secure cookies for https only, a browser keeps them on loopback) and the authorize URL."""
    session = api.post("/dev/api/connect", json={"mode": "redirect", "provider": name})
    assert session.status_code == 201, session.text
    browser = httpx.Client(timeout=60)
    to_network = browser.get(session.json()["connect_url"])
    assert to_network.status_code == 302, to_network.text
    return browser, to_network.headers["set-cookie"].split(";")[0], to_network.headers["location"]


def consent(browser: httpx.Client, authorize_url: str, action: str, user: str = "alice") -> httpx.Response:
    """Open the network's consent page and submit its form as a browser would (hidden fields, ticked scopes)."""
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text
    hidden = {html.unescape(k): html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)}
    ticked = [html.unescape(v) for v in re.findall(r'name="granted" value="([^"]*)" checked', page.text)]
    return browser.post(authorize_url.split("?")[0], data={**hidden, "user": user, "action": action,
                                                           "granted": ticked})


def back_at_the_dashboard(browser: httpx.Client, cookie: str, to_callback: httpx.Response) -> dict[str, str]:
    assert to_callback.status_code == 302, to_callback.text
    back = browser.get(to_callback.headers["location"], headers={"Cookie": cookie})
    assert back.status_code == 302, back.text
    return {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}


def connect(dev, api: httpx.Client, name: str) -> dict[str, Any]:
    browser, cookie, authorize_url = start_connect(api, name)
    try:
        assert authorize_url.startswith(dev.networks.url(name) + "/authorize?")  # over loopback, to the network
        result = back_at_the_dashboard(browser, cookie, consent(browser, authorize_url, "authorize"))
    finally:
        browser.close()
    assert result["status"] == "pending_confirmation", result
    claimed = api.post("/dev/api/claim", json={"claim": result["claim"]})
    assert claimed.status_code in (200, 201), claimed.text
    return claimed.json()["connection"]


@pytest.fixture(scope="module")
def connected(dev, api) -> dict[str, dict[str, Any]]:
    return {name: connect(dev, api, name) for name in NETWORKS}


@pytest.fixture(scope="module")
def seventy_days_later(dev, api, connected) -> dict[str, dict[str, Any]]:
    """The dashboard's clock moved STEP_DAYS at a time, a sweep after each, for KEEP_ALIVE_DAYS."""
    for _ in range(KEEP_ALIVE_DAYS // STEP_DAYS):
        assert api.post("/dev/api/clock", json={"seconds": STEP_DAYS * DAY}).status_code == 200
        sweep = api.post("/dev/api/sweep", json={})
        assert sweep.status_code == 200 and sweep.json()["failures"] == 0, sweep.text
    state = api.get("/dev/api/state").json()
    return {c["provider"]: c for c in state["connections"]}


def served_token(dev, connection_id: str) -> str:
    """The token route, signed as an app's backend calls it."""
    url = f"{dev.base_url}/connections/{connection_id}/token?" + urlencode({"owner_id": dev.owner_id})
    answer = httpx.get(url, headers=sigv4.sign("GET", url), timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def ask_the_network_who(dev, name: str, token: str) -> httpx.Response:
    """The network's user-info call with `token`, made the way its profile says (bearer or a parameter)."""
    shape = dev.networks.profile(name).request("userinfo")
    if shape.bearer:
        return httpx.request(shape.method, shape.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return httpx.request(shape.method, shape.url, params={shape.credential_param: token}, timeout=30)


# -- what the dashboard offers ---------------------------------------------------------------------------------------
def test_the_dashboard_offers_every_enabled_network(api):
    providers = api.get("/dev/api/state").json()["providers"]

    assert [p["name"] for p in providers] == ["tiktok", *NETWORKS]
    assert {p["name"]: p["display_name"] for p in providers}["x_twitter"] == "X"
    assert all(p["simulated_at"].startswith("http://127.0.0.1:") for p in providers)


def test_a_connect_for_a_provider_not_enabled_is_refused_and_nothing_starts(api):
    answer = api.post("/dev/api/connect", json={"mode": "popup", "provider": "myspace"})

    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_provider"
    assert httpx.get(f"{api.base_url}/dev/connect?provider=myspace", timeout=30).status_code == 400


# -- each network: connect, then 70 days -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETWORKS)
def test_each_network_connects_through_the_dev_stack(dev, connected, name):
    connection = connected[name]

    assert connection["provider"] == name and connection["status"] == "active"
    assert (connection["account_id"], connection["display_name"]) == ("alice", "User alice")
    assert connection["next_refresh_at"]  # the keeper has planned its first renewal
    answered = dev.networks.summary(name)
    assert answered["code_exchange"] >= 1 and answered["errors"] == 0
    if dev.networks.profile(name).chain:  # the short-lived token was made long-lived over the wire too
        assert answered["chain"] >= 1


@pytest.mark.parametrize("name", NETWORKS)
def test_each_network_stays_connected_through_70_simulated_days(dev, seventy_days_later, name):
    connection = seventy_days_later[name]
    now = dev.clock.now()

    assert connection["status"] == "active", connection
    assert connection["last_refresh"]["outcome"] == "succeeded"
    assert dev.networks.summary(name)["refresh"] >= 1 and dev.networks.summary(name)["errors"] == 0
    # What the app notices: the token it is served now is one the network still accepts, for the same account.
    who = ask_the_network_who(dev, name, served_token(dev, connection["connection_id"]))
    assert who.status_code == 200, who.text
    assert dig(who.json(), dev.networks.profile(name).userinfo.account_id) == "alice"
    assert now >= connected_at(connection) + KEEP_ALIVE_DAYS * DAY


def connected_at(connection: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(connection["connected_at"].replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("name", NETWORKS)
def test_deny_on_a_networks_consent_page_comes_back_as_access_denied(dev, api, name):
    browser, cookie, authorize_url = start_connect(api, name)
    try:
        result = back_at_the_dashboard(browser, cookie, consent(browser, authorize_url, "cancel"))
    finally:
        browser.close()

    assert result["status"] == "error" and result["error"] == "access_denied", result


# -- the networks check what their profiles say -----------------------------------------------------------------------
def authorize_query(dev, name: str, **changes: str | None) -> str:
    """An authorization request as the stack sends it to `name`, with some parameters changed (None: left out)."""
    profile = dev.networks.profile(name)
    params = {profile.client_id_param: dev.networks.providers[name].client_id, "response_type": "code",
              "redirect_uri": dev.networks.redirect_uri(name), "state": "s" * 32, **profile.authorize_params}
    if profile.sends_pkce:
        params |= {"code_challenge": code_challenge("v" * 64, profile.pkce), "code_challenge_method": "S256"}
    for key, value in changes.items():
        params.pop(key, None) if value is None else params.__setitem__(key, value)
    return f"{profile.authorize_url}?{urlencode(params)}"


def test_an_unregistered_redirect_uri_gets_the_networks_own_error_page_never_a_redirect(dev):
    answer = httpx.get(authorize_query(dev, "pinterest", redirect_uri="https://evil.example/cb"), timeout=30)

    assert answer.status_code == 400 and "text/html" in answer.headers["content-type"]
    assert "location" not in answer.headers and "redirect_uri_mismatch" in answer.text


@pytest.mark.parametrize(("name", "change", "error"), [
    ("x_twitter", {"code_challenge": None, "code_challenge_method": None}, "invalid_request"),  # PKCE required
    ("instagram", {"code_challenge": "c" * 43, "code_challenge_method": "S256"}, "invalid_request"),  # unsupported
    ("youtube", {"access_type": None}, "invalid_request"),  # the profile's fixed authorize parameter
    ("linkedin", {"response_type": "token"}, "unsupported_response_type"),
])
def test_an_authorization_request_the_profile_refuses_goes_back_to_the_app_with_its_error(dev, name, change, error):
    answer = httpx.get(authorize_query(dev, name, **change), timeout=30)

    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(dev.networks.redirect_uri(name) + "?")
    assert back["error"] == [error] and back["state"] == ["s" * 32]


def test_a_code_is_exchanged_only_with_its_pkce_verifier_and_redirect_uri(dev):
    sim = dev.networks.providers["youtube"]
    profile = sim.profile
    verifier = "v" * 64
    redirect_uri = dev.networks.redirect_uri("youtube")

    def exchange(code: str, **changes: str) -> httpx.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": sim.client_id, "client_secret": sim.client_secret, "code_verifier": verifier, **changes}
        return httpx.post(profile.token_url, data=form, timeout=30)

    def approved() -> str:
        return sim.approve("bob", redirect_uri=redirect_uri, code_challenge=code_challenge(verifier, profile.pkce))

    assert exchange(approved(), code_verifier="w" * 64).json() == {
        "error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    assert exchange(approved(), redirect_uri="https://evil.example/cb").status_code == 400
    assert exchange(approved()).status_code == 200


def test_scopes_unticked_on_the_consent_page_are_not_granted(dev, api):
    browser, cookie, authorize_url = start_connect(api, "youtube")
    try:
        page = browser.get(authorize_url)
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text))
        to_callback = browser.post(authorize_url.split("?")[0], data={
            **{k: html.unescape(v) for k, v in hidden.items()}, "user": "bob", "action": "authorize"})
        result = back_at_the_dashboard(browser, cookie, to_callback)
    finally:
        browser.close()
    claimed = api.post("/dev/api/claim", json={"claim": result["claim"]}).json()["connection"]

    always = set(dev.networks.profile("youtube").always_granted_scopes)  # shown ticked and disabled
    assert claimed["account_id"] == "bob"
    assert set(claimed["scopes_granted"]) == always
    assert claimed["missing_scopes"] == [s for s in claimed["scopes_requested"] if s not in always] != []


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/youtube/authorize?state=a&state=b", b"", 400),  # a repeated parameter: the network's own page
    ("POST", "/youtube/authorize", b"\xff\xfe=\x00", 400),  # not a form a browser sends
    ("GET", "/myspace/authorize", b"", 404),
    ("POST", "/pinterest/token", b"grant_type=authorization_code&code=nope", 401),  # no client credentials
    ("DELETE", "/linkedin/authorize", b"", 405),
])
def test_bad_requests_to_a_network_get_a_clear_4xx(dev, method, path, body, status):
    answer = httpx.request(method, dev.networks.base_url + path, content=body, timeout=30,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == status, answer.text
