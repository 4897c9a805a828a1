"""Every page and redirect of the browser routes: no secret echoed, cookies only cleared, strict headers.

test_no_leaks.py follows the secrets of one happy connect (plus a replay and a failed exchange) through logs,
metrics and events. This file walks every refusal path and redirect the browser routes have and checks the
answers themselves: bodies, Location, every header and Set-Cookie.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from oauth_keeper import root
from oauth_keeper.domain.flows import SESSION_TTL, OAuthFlow, secret_hash
from oauth_keeper.domain.validation import normalize_origin
from oauth_keeper.usecases.connect import flow_cookie_name

from local import apigw
from tests.integration.conftest import APP_ORIGIN, BASE_URL, RETURN_TO, create_session
from tests.security.support import (
    browser_answer_problems,
    browser_routes,
    callback,
    cookie_only_clears,
    csp_directives,
    csp_problems,
    echoed,
    header,
    query_of,
    set_cookies,
    start_flow,
)

pytestmark = pytest.mark.integration


@dataclass
class Answer:
    route_key: str
    name: str
    response: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # must not appear anywhere in the answer...
    set_by_design: frozenset[str] = frozenset()  # ...except these, in the Set-Cookie that hands them out


def _new_connect_url() -> tuple[str, str]:
    url = json.loads(create_session()["body"])["connect_url"]
    return url, query_of(url)["session"][0]


def every_browser_answer(tiktok, clock, monkeypatch) -> list[Answer]:
    """One answer for each way the browser routes can answer, with the secrets each must keep to itself."""
    connect, callback_route = "GET /connect/{provider}", "GET /callback/{provider}"
    answers: list[Answer] = []

    def get(url: str, cookies: list[str] | None = None) -> dict[str, Any]:
        parts = urlsplit(url)
        return apigw.invoke("GET", parts.path, raw_query=parts.query, cookies=cookies)

    # -- GET /connect/{provider} --------------------------------------------------------------------------
    url, token = _new_connect_url()
    answers.append(Answer(connect, "missing session", get(f"{BASE_URL}/connect/tiktok")))
    answers.append(Answer(connect, "unknown provider", get(url.replace("/tiktok?", "/myspace?")), {"session": token}))
    answers.append(Answer(connect, "duplicate session", get(f"{url}&session={token}"), {"session": token}))
    answers.append(Answer(connect, "oversized session", get(f"{url}{'s' * 2100}"), {"session": token}))
    browser = apigw.Browser()
    started = browser.get(url)
    nonce = next(iter(browser.cookies.values()))
    # The redirect to TikTok carries the state (TikTok must send it back); never the session or the nonce.
    answers.append(Answer(connect, "redirect to the provider", started, {"session": token, "nonce": nonce},
                          set_by_design=frozenset({"nonce"})))
    answers.append(Answer(connect, "used session", get(url), {"session": token}))
    answers.append(Answer(connect, "unknown session", get(f"{BASE_URL}/connect/tiktok?session=" + "u" * 43),
                          {"session": "u" * 43}))
    late_url, late_token = _new_connect_url()
    clock.advance(SESSION_TTL + 1)
    answers.append(Answer(connect, "expired session", get(late_url), {"session": late_token}))

    # -- GET /callback/{provider}: refusals (no trustworthy flow) -------------------------------------------------
    def flow_with_code(user: str = "alice"):
        flow = start_flow(apigw.Browser())
        location = tiktok.approve(flow.authorize_location, user=user)
        code = query_of(location)["code"][0]
        return flow, urlsplit(location).query, {"code": code, "state": flow.state, "nonce": flow.nonce}

    flow, query, secrets = flow_with_code()
    answers.append(Answer(callback_route, "missing state", callback(f"code={secrets['code']}", [flow.cookie]),
                          secrets))
    answers.append(Answer(callback_route, "missing cookie", callback(query), secrets))
    foreign = "f" * 43
    answers.append(Answer(callback_route, "foreign cookie", callback(query, [f"{flow.cookie_name}={foreign}"]),
                          {**secrets, "foreign cookie": foreign}))
    answers.append(Answer(callback_route, "unknown state", callback(f"code={secrets['code']}&state={'z' * 43}",
                                                                    [flow.cookie]), {**secrets, "state": "z" * 43}))
    answers.append(Answer(callback_route, "duplicate code", callback(f"{query}&code={secrets['code']}",
                                                                     [flow.cookie]), secrets))
    answers.append(Answer(callback_route, "oversized code", callback(f"{query}&code={'c' * 2100}", [flow.cookie]),
                          secrets))
    answers.append(Answer(callback_route, "unknown provider", callback(query, [flow.cookie], provider="myspace"),
                          secrets))
    other_state, other_nonce = "o" * 43, "n" * 43
    root.container().flows.put_flow(other_state, OAuthFlow(
        provider="other", owner_id="owner-1", return_to=RETURN_TO, scopes=("x",), redirect_uri=f"{BASE_URL}/x",
        code_verifier="v" * 64, nonce_hash=secret_hash("nonce", other_nonce),
        expires_at=int(clock.now()) + SESSION_TTL))
    answers.append(Answer(callback_route, "wrong provider", callback(
        urlencode({"code": secrets["code"], "state": other_state}),
        [f"{flow_cookie_name(other_state)}={other_nonce}"]), {**secrets, "state": other_state,
                                                                  "nonce": other_nonce}))

    # -- redirects back to the app (a trustworthy flow) ---------------------------------------------------------
    answers.append(Answer(callback_route, "connected", callback(query, [flow.cookie]), secrets))
    answers.append(Answer(callback_route, "replay", callback(query, [flow.cookie]), secrets))
    denied = start_flow(apigw.Browser())
    denied_query = urlsplit(tiktok.deny(denied.authorize_location)).query + "&error_description=" + "d" * 30
    answers.append(Answer(callback_route, "provider error", callback(denied_query, [denied.cookie]),
                          {"state": denied.state, "nonce": denied.nonce, "error_description": "d" * 30}))
    flow, query, secrets = flow_with_code("bob")
    tiktok.fail_next(1, "5xx")
    answers.append(Answer(callback_route, "exchange failed", callback(query, [flow.cookie]), secrets))
    flow, query, secrets = flow_with_code("carol")
    clock.advance(SESSION_TTL + 1)
    answers.append(Answer(callback_route, "expired flow", callback(query, [flow.cookie]), secrets))

    # -- pop-up mode: a page that posts the result to the app's window -------------------------------------------
    popup = start_flow(apigw.Browser(), mode="popup")
    location = tiktok.approve(popup.authorize_location)
    answers.append(Answer(callback_route, "popup connected", callback(urlsplit(location).query, [popup.cookie]),
                          {"code": query_of(location)["code"][0], "state": popup.state, "nonce": popup.nonce}))
    popup = start_flow(apigw.Browser(), mode="popup")
    answers.append(Answer(callback_route, "popup provider error", callback(
        urlsplit(tiktok.deny(popup.authorize_location)).query, [popup.cookie]),
        {"state": popup.state, "nonce": popup.nonce}))

    # -- the unexpected: an exception whose text carries the state must not reach the page ---------------------
    flow, query, secrets = flow_with_code()

    def broken(state, *args, **kwargs):
        raise RuntimeError(f"boom while taking {state}")

    monkeypatch.setattr(root.container().flows, "take_flow", broken)
    answers.append(Answer(callback_route, "unexpected failure", callback(query, [flow.cookie]), secrets))
    return answers


@pytest.fixture
def answers(stack, tiktok, clock, monkeypatch) -> list[Answer]:
    return every_browser_answer(tiktok, clock, monkeypatch)


def test_the_catalogue_covers_every_browser_route_and_each_kind_of_answer(answers):
    assert {a.route_key for a in answers} == set(browser_routes())
    statuses = {a.response["statusCode"] for a in answers}
    assert {200, 302, 400, 403, 404, 410, 500} <= statuses, statuses
    unexpected = next(a for a in answers if a.name == "unexpected failure")
    assert unexpected.response["statusCode"] == 500  # the monkeypatch really took that path


def test_no_page_or_redirect_echoes_a_code_state_session_token_or_cookie_value(answers):
    leaks = []
    for a in answers:
        leaks += [(a.route_key, a.name, found) for found in echoed(a.response, {
            k: v for k, v in a.secrets.items() if k not in a.set_by_design})]
        without_cookies = {**a.response, "cookies": []}
        leaks += [(a.route_key, a.name, found) for found in echoed(without_cookies, {
            k: v for k, v in a.secrets.items() if k in a.set_by_design})]
    assert leaks == []


def test_the_redirect_to_the_provider_is_the_only_answer_that_carries_the_state(answers):
    (start,) = [a for a in answers if a.name == "redirect to the provider"]
    assert "state" in query_of(start.response["headers"]["Location"])
    for answer in answers:
        location = answer.response["headers"].get("Location")
        if location and answer is not start:
            assert set(query_of(location)) <= {"tab", "status", "connection_id", "error", "retryable",
                                               "missing_scopes", "granted_scopes"}, (answer.name, location)
            assert normalize_origin(location) == APP_ORIGIN, (answer.name, location)


def test_every_page_and_redirect_is_no_store_no_referrer_with_a_strict_csp(answers):
    problems = [(a.route_key, a.name, p) for a in answers for p in browser_answer_problems(a.response)]
    assert problems == []


def test_the_callback_only_ever_clears_cookies_and_clears_them_so_browsers_obey(answers):
    cleared = []
    for answer in answers:
        if answer.route_key != "GET /callback/{provider}":
            continue
        for cookie in set_cookies(answer.response):
            assert cookie_only_clears(cookie), (answer.name, cookie)
            # A __Host- cookie is only replaced by one with the same prefix rules: Secure, Path=/, no Domain.
            attributes = {p.strip().split("=")[0].lower() for p in cookie.split(";")[1:]}
            assert cookie.startswith("__Host-") and "secure" in attributes and "domain" not in attributes
            assert "Path=/" in cookie, cookie
            cleared.append(answer.name)
    assert {"connected", "provider error", "exchange failed", "popup connected"} <= set(cleared)


def test_the_authorize_redirect_sets_only_the_flow_cookie_with_every_protection(answers):
    (start,) = [a for a in answers if a.name == "redirect to the provider"]
    (cookie,) = set_cookies(start.response)
    attributes = [p.strip() for p in cookie.split(";")[1:]]
    assert cookie.startswith("__Host-okf-")
    assert {"Secure", "HttpOnly", "Path=/", "SameSite=Lax"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)
    for answer in answers:
        if answer is not start and answer.route_key == "GET /connect/{provider}":
            assert set_cookies(answer.response) == [], answer.name


@pytest.mark.parametrize(("policy", "problem"), [
    ("default-src 'none'; frame-ancestors 'none'; base-uri 'none'", None),
    ("default-src 'none'; script-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", "unsafe-inline"),
    ("default-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", "unsafe-inline"),
    ("default-src 'none'; script-src-attr 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", "unsafe-inline"),
    ("default-src 'none'; script-src https:; frame-ancestors 'none'; base-uri 'none'", "https:"),
    ("style-src 'self'; frame-ancestors 'none'; base-uri 'none'", "neither"),
    ("default-src 'none'; base-uri 'none'", "frame-ancestors"),
    (None, "no Content-Security-Policy"),
])
def test_the_csp_check_catches_policies_that_let_scripts_in(policy, problem):
    found = csp_problems(policy)
    assert (not found) if problem is None else any(problem in p for p in found), found


def test_the_popup_page_posts_only_to_the_apps_exact_origin_and_runs_only_its_hashed_script(answers):
    popups = [a for a in answers if a.name.startswith("popup")]
    assert len(popups) == 2
    for answer in popups:
        body = answer.response["body"]
        assert answer.response["statusCode"] == 200
        data = json.loads(re.search(r"<script type=application/json id=result>(.*?)</script>", body).group(1))
        assert data["origin"] == APP_ORIGIN  # postMessage's targetOrigin: never "*"
        assert normalize_origin(data["fallback"]) == APP_ORIGIN
        policy = csp_directives(header(answer.response, "Content-Security-Policy"))
        scripts = re.findall(r"<script>(.*?)</script>", body, flags=re.S)
        assert scripts, "no script: the pop-up could not post its result"
        for script in scripts:  # every executable script is allowed by its hash, and only by it
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy["script-src"], "a script the CSP does not allow"
        assert "<script" not in re.sub(r"<script( type=application/json id=result)?>.*?</script>", "", body,
                                       flags=re.S), "an unexpected script element"
