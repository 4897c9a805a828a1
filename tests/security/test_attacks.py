"""Attacks on the connect flow (RFC 9700): each one is refused, and nothing is stored for anyone.

Extends test_connect_flow.py (plain replay, a forged state, a foreign nonce, a reused link) with what an
attacker would actually try: racing a replay, login CSRF, a state on another provider's callback, open
redirects through return_to, a session token used as a state, and an injected authorization code.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth_keeper import root
from oauth_keeper.domain.flows import SESSION_TTL, OAuthFlow, secret_hash
from oauth_keeper.domain.protocol import new_secret
from oauth_keeper.domain.validation import normalize_origin
from oauth_keeper.usecases.connect import flow_cookie_name, with_query

from local import apigw
from tests.integration.conftest import APP_ORIGIN, BASE_URL, RETURN_TO, create_session
from tests.security.support import (
    browser_answer_problems,
    callback,
    connection_ids,
    connection_item,
    flow_exists,
    item_count,
    query_of,
    start_flow,
)

pytestmark = pytest.mark.integration


def assert_refused_page(response, status: int, *words: str) -> None:
    assert response["statusCode"] == status, response
    assert "Location" not in response["headers"]
    assert browser_answer_problems(response) == []
    for word in words:
        assert word in response["body"], response["body"]


# -- state replay ---------------------------------------------------------------------------------------------
def test_a_replayed_callback_changes_nothing_the_first_one_stored(stack, tiktok, browser):
    flow = start_flow(browser)
    callback_url = tiktok.approve(flow.authorize_location)
    first = browser.get(callback_url)
    connection_id = query_of(first["headers"]["Location"])["connection_id"][0]
    stored = connection_item(connection_id)
    events = stack.received_events()

    replay = callback(urlsplit(callback_url).query, cookies=[flow.cookie])  # request and cookie, byte for byte
    assert_refused_page(replay, 400, "start again")
    assert connection_item(connection_id) == stored  # same tokens, version, status
    assert connection_ids() == {connection_id}
    assert stack.received_events() == [] and len(events) == 1
    assert tiktok.stats["token_requests"] == 1


def test_a_replayed_error_callback_is_refused_too(stack, tiktok, browser):
    flow = start_flow(browser)
    denied_url = tiktok.deny(flow.authorize_location)
    assert query_of(browser.get(denied_url)["headers"]["Location"])["error"] == ["access_denied"]
    replay = callback(urlsplit(denied_url).query, cookies=[flow.cookie])
    assert_refused_page(replay, 400)
    assert item_count("CONNECTIONS_TABLE") == 0


def test_two_racing_presentations_of_one_callback_exchange_the_code_once(stack, tiktok, browser):
    flow = start_flow(browser)
    query = urlsplit(tiktok.approve(flow.authorize_location)).query
    barrier, answers = threading.Barrier(2), []

    def present():
        barrier.wait()
        answers.append(callback(query, cookies=[flow.cookie]))

    threads = [threading.Thread(target=present) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["statusCode"] for a in answers) == [302, 400]
    assert tiktok.stats["code_exchanges"] == 1
    assert len(connection_ids()) == 1


# -- a state used from another browser --------------------------------------------------------------------
def test_login_csrf_the_attackers_callback_opened_in_the_victims_browser_is_refused(stack, tiktok):
    """The attacker consents with their own TikTok account, then lures the victim's browser to the callback."""
    attacker, victim = apigw.Browser(), apigw.Browser()
    attackers_flow = start_flow(attacker, owner_id="attacker")
    victims_flow = start_flow(victim, owner_id="victim")  # the victim even has a connect of their own going
    lure = tiktok.approve(attackers_flow.authorize_location, user="bob")

    response = victim.get(lure)
    assert_refused_page(response, 403, "browser")
    assert item_count("CONNECTIONS_TABLE") == 0
    assert tiktok.stats["token_requests"] == 0
    assert flow_exists(secret_hash("state", attackers_flow.state))  # not even the attacker's flow is used up
    assert flow_exists(secret_hash("state", victims_flow.state))
    assert victim.cookies == {victims_flow.cookie_name: victims_flow.nonce}  # the victim's cookie untouched


def test_a_state_presented_with_another_flows_whole_cookie_jar_is_refused(stack, tiktok):
    attacker, victim = apigw.Browser(), apigw.Browser()
    victims_flow = start_flow(victim, owner_id="victim")
    attackers_flow = start_flow(attacker, owner_id="attacker")
    stolen_query = urlsplit(tiktok.approve(victims_flow.authorize_location)).query
    # the attacker has the victim's callback URL (e.g. from a proxy log) but only their own cookies
    response = callback(stolen_query, cookies=[attackers_flow.cookie])
    assert_refused_page(response, 403)
    # ...and their own flow's nonce renamed to the victim's cookie name: the conditional delete compares it
    renamed = callback(stolen_query, cookies=[f"{victims_flow.cookie_name}={attackers_flow.nonce}"])
    assert_refused_page(renamed, 403, "another browser")
    assert tiktok.stats["token_requests"] == 0 and item_count("CONNECTIONS_TABLE") == 0
    assert flow_exists(secret_hash("state", victims_flow.state))
    assert location_of(victim.get(f"{BASE_URL}/callback/tiktok?{stolen_query}"))["status"] == ["connected"]


def location_of(response) -> dict[str, list[str]]:
    return query_of(response["headers"]["Location"])


# -- a state on another provider's callback --------------------------------------------------------------------
def test_a_state_on_an_unknown_providers_callback_is_refused_and_stays_usable(stack, tiktok, browser):
    flow = start_flow(browser)
    query = urlsplit(tiktok.approve(flow.authorize_location)).query
    for provider in ("myspace", "TikTok", "tiktok2"):
        response = callback(query, cookies=[flow.cookie], provider=provider)
        assert response["statusCode"] == 404 and browser_answer_problems(response) == []
    assert flow_exists(secret_hash("state", flow.state))
    assert tiktok.stats["token_requests"] == 0
    assert location_of(callback(query, cookies=[flow.cookie]))["status"] == ["connected"]


def test_a_flow_started_for_another_provider_is_refused_on_tiktoks_callback_without_using_it(stack, tiktok):
    """A flow stored for provider "other" (as a second provider's authorize would) presented on /callback/tiktok,
    with its own browser's cookie: wrong_provider, and the flow stays for its own callback."""
    state, nonce = new_secret(), new_secret()
    now = int(root.container().clock.now())
    root.container().flows.put_flow(state, OAuthFlow(
        provider="other", owner_id="owner-1", return_to=RETURN_TO, scopes=("profile",),
        redirect_uri=f"{BASE_URL}/callback/other", code_verifier=new_secret(),
        nonce_hash=secret_hash("nonce", nonce), expires_at=now + SESSION_TTL,
    ))
    response = callback(urlencode({"code": "a-code-for-other", "state": state}),
                        cookies=[f"{flow_cookie_name(state)}={nonce}"])
    assert_refused_page(response, 400, "does not belong to this service")
    assert flow_exists(secret_hash("state", state))
    assert tiktok.stats["token_requests"] == 0 and item_count("CONNECTIONS_TABLE") == 0


# -- open redirects through return_to ------------------------------------------------------------------------------
OPEN_REDIRECTS = [
    "https://evil.example.net/",
    "https://app.example.com.evil.example.net/",  # the allowed host as a prefix
    "https://evil.example.net/https://app.example.com/",
    "https://evil.example.net?https://app.example.com",
    "http://app.example.com/settings",  # scheme downgrade: another origin
    "https://app.example.com:8443/",  # another port: another origin
    "https://app.example.com:443.evil.example.net/",
    "https://app.example.com@evil.example.net/",  # userinfo
    "https://user:pass@app.example.com/",
    "https://evil.example.net@app.example.com/",
    "https://app.example.com%40evil.example.net/",
    "https://app.example.com\\@evil.example.net/",  # backslashes: browsers read them as slashes
    "https://evil.example.net\\app.example.com/",
    "https:\\\\evil.example.net",
    "/\\evil.example.net",
    "//evil.example.net/",  # scheme-relative
    "///evil.example.net/",
    "https:/evil.example.net",
    "https:evil.example.net",
    "/settings",  # relative
    "app.example.com/settings",
    "https://app.example.com%2f@evil.example.net/",  # encoded slashes
    "https://app.example.com%2F.evil.example.net/",
    "https://evil.example.net%2F%2Fapp.example.com/",
    "https://app.example.com%00.evil.example.net/",
    " https://app.example.com/",  # whitespace browsers strip or fold
    "https://app.example.com/\t",
    "https://app.example.com\n.evil.example.net/",
    "https://app.example.com\r\n/",
    "\x00https://app.example.com/",
    "https://\u0430pp.example.com/",  # Cyrillic a
    "https://app.ex\u0430mple.com/",
    "https://app\uff0eexample\uff0ecom/",  # fullwidth full stops
    "https://app.example.com\u3002evil.example.net/",  # ideographic full stop: a dot to IDNA
    "https://xn--pp-8kc.example.com/",  # IDNA (punycode) look-alike
    "https://app.example.com./",  # trailing dot: another origin to the browser's cookie/origin model
    "https://app.example.com../",
    "https://[::1]/",
    "https://app.example.com:0/",
    "https://app.example.com:99999/",
    "https://app.example.com/#@evil.example.net",  # fragments
    "https://app.example.com#https://evil.example.net",
    "javascript:alert(document.domain)//https://app.example.com/",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "ftp://app.example.com/",
    "https://app.example.com:@evil.example.net/",
    "https://app.example.com;@evil.example.net/",
]


@pytest.mark.parametrize("return_to", OPEN_REDIRECTS, ids=[repr(u)[1:40] for u in OPEN_REDIRECTS])
def test_return_to_outside_the_allow_list_is_refused_when_the_session_is_created(stack, return_to):
    response = create_session(return_to=return_to)
    assert response["statusCode"] == 400, response
    error = json.loads(response["body"])["error"]
    assert error["field"] == "return_to"
    assert error["code"] in ("invalid_return_to", "return_to_not_allowed")
    assert "evil" not in error["message"]  # the refusal does not reflect the URL
    assert item_count("FLOWS_TABLE") == 0


@pytest.mark.parametrize("return_to", [
    "https://app.example.com", "https://app.example.com/", "https://APP.example.com/x", "HTTPS://app.example.com/x",
    "https://app.example.com:443/x?a=1&b=2", f"{RETURN_TO}", "https://app.example.com//evil.example.net/x",
])
def test_return_to_on_the_allowed_origin_sends_the_user_back_there_and_only_there(stack, tiktok, browser, return_to):
    """The check is an origin comparison, not a refusal of everything: these are the app's own pages."""
    flow = start_flow(browser, return_to=return_to)
    answer = browser.get(tiktok.approve(flow.authorize_location))
    assert normalize_origin(answer["headers"]["Location"]) == APP_ORIGIN
    assert location_of(answer)["status"] == ["connected"]


# Characters that make parsers disagree, inserted anywhere into an allowed URL.
_TRICKY = st.sampled_from(list("@\\/:;#?%.&=[] \t\n\r\x00\u3002\uff0e\u0430") + ["%2f", "%40", "%2e", "//", "\\\\"])


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_return_to_is_accepted_the_redirect_stays_on_the_allowed_origin(stack, data):
    base = data.draw(st.sampled_from([RETURN_TO, APP_ORIGIN, APP_ORIGIN + "/", "https://app.example.com:443/x"]))
    url = base
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(url)))
        url = url[:position] + data.draw(_TRICKY) + url[position:]
    response = create_session(return_to=url)
    if response["statusCode"] != 201:
        assert response["statusCode"] == 400
        assert json.loads(response["body"])["error"]["field"] == "return_to"
        return
    # Accepted: the browser must land on the app's origin. Read the URL as a browser does (WHATWG), not as
    # urlsplit does, and compare both: they may only agree.
    assert browser_host(url) == "app.example.com", url
    parts = urlsplit(url)
    assert parts.hostname == "app.example.com" and parts.port in (None, 443) and parts.scheme == "https"
    assert normalize_origin(with_query(url, {"status": "connected"})) == APP_ORIGIN


def browser_host(url: str) -> str:
    """host[:port] as a WHATWG URL parser sees it for a special scheme: tabs and newlines removed, leading and
    trailing C0/space stripped, backslashes as slashes, userinfo up to the last "@" dropped, the default or an
    empty port dropped."""
    url = re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(0x21))))
    rest = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*", "", url)
    authority = re.split(r"[/\\?#]", rest, maxsplit=1)[0]
    return re.sub(r":(443)?$", "", authority.rsplit("@", 1)[-1].lower())


# -- connect-session reuse -----------------------------------------------------------------------------------
def test_a_used_connect_link_opened_in_another_browser_starts_nothing(stack, tiktok):
    connect_url = json.loads(create_session()["body"])["connect_url"]
    assert apigw.Browser().get(connect_url)["statusCode"] == 302
    flows_after_first = item_count("FLOWS_TABLE")
    other = apigw.Browser()
    response = other.get(connect_url)
    assert_refused_page(response, 410, "start again")
    assert other.cookies == {} and not response.get("cookies")
    assert item_count("FLOWS_TABLE") == flows_after_first


def test_two_browsers_racing_one_connect_link_start_one_flow(stack, tiktok):
    connect_url = json.loads(create_session()["body"])["connect_url"]
    barrier, answers = threading.Barrier(4), []

    def open_link():
        barrier.wait()
        answers.append(apigw.Browser().get(connect_url))

    threads = [threading.Thread(target=open_link) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["statusCode"] for a in answers) == [302, 410, 410, 410]
    assert item_count("FLOWS_TABLE") == 1  # the one flow; the session itself is gone


def test_a_connect_link_on_another_providers_path_is_refused_without_using_it_up(stack, tiktok, browser):
    connect_url = json.loads(create_session()["body"])["connect_url"]
    query = urlsplit(connect_url).query
    for provider in ("myspace", "TikTok"):
        assert browser.get(f"{BASE_URL}/connect/{provider}?{query}")["statusCode"] == 404
    assert browser.cookies == {}
    assert browser.get(connect_url)["statusCode"] == 302


def test_a_connect_session_token_is_no_state(stack, tiktok, browser):
    """Sessions and states live in one table under kind-separated hashes: one cannot stand for the other."""
    connect_url = json.loads(create_session()["body"])["connect_url"]
    token = query_of(connect_url)["session"][0]
    response = callback(urlencode({"code": "x", "state": token}), cookies=[f"{flow_cookie_name(token)}={token}"])
    assert_refused_page(response, 400)
    assert tiktok.stats["token_requests"] == 0
    assert browser.get(connect_url)["statusCode"] == 302  # and the link still works


# -- an injected authorization code ------------------------------------------------------------------------------
def test_an_attackers_code_injected_into_the_victims_flow_fails_pkce_and_connects_no_one(stack, tiktok):
    """The attacker gets a code for their own TikTok account through their own flow, then makes the victim's
    browser present it with the victim's state and cookie. TikTok refuses the exchange: the victim's PKCE
    verifier does not match the attacker's challenge."""
    attacker, victim = apigw.Browser(), apigw.Browser()
    attackers_flow = start_flow(attacker, owner_id="attacker")
    stolen_code = query_of(tiktok.approve(attackers_flow.authorize_location, user="bob"))["code"][0]
    victims_flow = start_flow(victim, owner_id="victim")

    response = victim.get(f"{BASE_URL}/callback/tiktok?" + urlencode({"code": stolen_code,
                                                                      "state": victims_flow.state}))
    assert response["statusCode"] == 302 and browser_answer_problems(response) == []
    assert response["headers"]["Location"].startswith(RETURN_TO + "&")  # back to the victim's app, with
    result = location_of(response)
    assert result["status"] == ["error"] and result["error"] == ["exchange_failed"]
    assert result["retryable"] == ["true"] and "connection_id" not in result
    assert tiktok.stats["code_exchanges"] == 1 and tiktok.stats["code_exchange_successes"] == 0
    assert item_count("CONNECTIONS_TABLE") == 0  # nothing for the victim, nothing for the attacker
    assert stack.received_events() == []
    assert victim.cookies == {}  # the victim's flow is over and its cookie cleared


# -- forged provider webhooks (a public route: the signature is the only fence) -----------------------------------
def _webhook(body: bytes, headers: dict[str, str]) -> dict:
    """The delivery, then the worker over whatever it queued (SQS's event source, within seconds in AWS)."""
    from local.stack import deliver_refresh_queue

    response = apigw.invoke("POST", "/webhooks/tiktok", body=body, headers=headers)
    deliver_refresh_queue()
    return response


@pytest.mark.parametrize("forgery", ["wrong_secret", "stale_replay", "body_swapped", "signature_of_other_body",
                                     "no_signature", "future_timestamp"])
def test_a_forged_webhook_disconnects_no_one(stack, tiktok, clock, forgery):
    import hashlib
    import hmac

    browser = apigw.Browser()
    flow = start_flow(browser)
    connection_id = location_of(browser.get(tiktok.approve(flow.authorize_location)))["connection_id"][0]
    alice = tiktok.users["alice"].open_id
    body, headers = tiktok.signed_webhook(alice)
    now = int(clock.now())
    if forgery == "wrong_secret":
        signature = hmac.new(b"guessed-secret", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
        headers = {**headers, "TikTok-Signature": f"t={now},s={signature}"}
    elif forgery == "stale_replay":  # a genuine delivery captured 10 minutes ago
        body, headers = tiktok.signed_webhook(alice, timestamp=now - 600)
    elif forgery == "future_timestamp":
        body, headers = tiktok.signed_webhook(alice, timestamp=now + 600)
    elif forgery == "body_swapped":  # bob's genuine delivery, rewritten to name alice, bob's signature kept
        body, headers = tiktok.signed_webhook(tiktok.users["bob"].open_id)
        body = body.replace(tiktok.users["bob"].open_id.encode(), alice.encode())
    elif forgery == "signature_of_other_body":
        _, headers = tiktok.signed_webhook(alice, event="authorization.other")
    elif forgery == "no_signature":
        headers = {"Content-Type": "application/json"}
    response = _webhook(body, headers)
    assert response["statusCode"] in (400, 401), response
    assert "error" in json.loads(response["body"])
    assert connection_item(connection_id)["status"]["S"] == "active"
    assert [e for e in stack.received_events() if e["detail-type"] == "Connection Disconnected"] == []


def test_a_genuine_webhook_does_disconnect(stack, tiktok, clock):
    """The control for the forgeries above: the same request, correctly signed, is acted on."""
    browser = apigw.Browser()
    flow = start_flow(browser)
    connection_id = location_of(browser.get(tiktok.approve(flow.authorize_location)))["connection_id"][0]
    clock.advance(3600)  # the user removes the app an hour later (a removal within a minute of it is ignored)
    body, headers = tiktok.signed_webhook(tiktok.users["alice"].open_id)
    assert _webhook(body, headers)["statusCode"] == 200
    assert connection_item(connection_id)["status"]["S"] == "disconnected"
