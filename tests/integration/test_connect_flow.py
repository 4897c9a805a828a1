"""A user connects TikTok: connect session -> authorize redirect -> TikTok consent -> callback -> stored."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.domain.errors import ProviderError

from local import apigw
from tests.integration.conftest import (
    APP_ORIGIN,
    BASE_URL,
    RETURN_TO,
    START,
    create_session,
    location_query,
)

pytestmark = pytest.mark.integration


def connect(browser, tiktok, *, owner_id="owner-1", user="alice", scopes=None, **session_extra):
    """The whole happy path; returns (callback response, authorize URL)."""
    created = create_session(owner_id=owner_id, **session_extra)
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    assert authorize["statusCode"] == 302, authorize
    callback_url = tiktok.approve(authorize["headers"]["Location"], user=user, scopes=scopes)
    return browser.get(callback_url), authorize["headers"]["Location"]


def raw_items(table_env: str) -> list[dict]:
    import os

    return boto3.client("dynamodb").scan(TableName=os.environ[table_env])["Items"]


def connection_items() -> list[dict]:
    """The Connections table's items but the guard items (one per connection: ADR 0018)."""
    from oauth_keeper.domain.connection import GUARD_PREFIX

    return [i for i in raw_items("CONNECTIONS_TABLE") if not i["connection_id"]["S"].startswith(GUARD_PREFIX)]


def connection_item(connection_id: str) -> dict:
    import os

    return boto3.client("dynamodb").get_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection_id": {"S": connection_id}}
    )["Item"]


def assert_security_headers(response):
    headers = response["headers"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_connect_stores_an_active_encrypted_connection_and_sends_the_user_back(stack, tiktok, browser):
    created = create_session()
    assert created["statusCode"] == 201
    session = json.loads(created["body"])
    assert session["connect_url"].startswith(f"{BASE_URL}/connect/tiktok?session=")
    assert session["expires_at"] == "2027-01-15T08:10:00Z"  # START + 10 min

    authorize = browser.get(session["connect_url"])
    assert authorize["statusCode"] == 302
    assert_security_headers(authorize)
    location = authorize["headers"]["Location"]
    assert location.startswith(tiktok.authorize_url + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["client_key"] == [tiktok.client_key]
    assert query["scope"] == ["user.info.basic,video.list"]
    assert query["redirect_uri"] == [f"{BASE_URL}/callback/tiktok"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 64  # hex
    (cookie,) = authorize["cookies"]
    assert cookie.startswith("__Host-okf-")
    for attribute in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"):
        assert attribute in cookie
    assert "Domain=" not in cookie

    callback = browser.get(tiktok.approve(location, user="alice"))
    assert callback["statusCode"] == 302
    assert_security_headers(callback)
    target = callback["headers"]["Location"]
    assert target.startswith(RETURN_TO + "&")  # return_to's own query kept
    result = parse_qs(urlsplit(target).query)
    assert result["status"] == ["connected"] and result["tab"] == ["social"]
    assert "missing_scopes" not in result
    assert any("Max-Age=0" in c for c in callback["cookies"])  # the flow cookie is cleared
    assert browser.cookies == {}

    item = connection_item(result["connection_id"][0])
    alice = tiktok.users["alice"]
    (grant,) = tiktok.grants_for(alice.open_id)
    assert item["status"]["S"] == "active"
    assert item["account_id"]["S"] == alice.open_id
    assert item["owner_id"]["S"] == "owner-1"
    assert item["display_name"]["S"] == alice.display_name
    assert int(item["access_expires_at"]["N"]) == START + 7200
    assert int(item["refresh_expires_at"]["N"]) == START + 180 * 86400
    assert "due_shard" in item and START < int(item["next_refresh_at"]["N"]) < START + 7200
    raw = json.dumps(item, default=str)
    sealed = item["tokens"]["B"]
    for secret in (grant.access_token, grant.refresh_token):
        assert secret not in raw and secret.encode() not in sealed

    (event,) = stack.received_events()
    assert event["detail-type"] == "Connection Created" and event["source"] == "oauth-keeper"
    detail = event["detail"]
    assert detail["connection_id"] == result["connection_id"][0]
    assert detail["status"] == "active" and detail["account_id"] == alice.open_id
    assert detail["access_expires_at"] == "2027-01-15T10:00:00Z"
    assert grant.access_token not in json.dumps(event) and grant.refresh_token not in json.dumps(event)
    assert not any(k.startswith("ob_") for k in connection_item(result["connection_id"][0]))  # outbox drained


def test_flows_and_sessions_are_stored_only_under_hashes(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    token = parse_qs(urlsplit(created["connect_url"]).query)["session"][0]
    dump = json.dumps(raw_items("FLOWS_TABLE"))
    assert token not in dump
    authorize = browser.get(created["connect_url"])
    state = parse_qs(urlsplit(authorize["headers"]["Location"]).query)["state"][0]
    nonce = next(iter(browser.cookies.values()))
    dump = json.dumps(raw_items("FLOWS_TABLE"), default=str)  # the sealed PKCE verifier is binary
    assert state not in dump and nonce not in dump


def test_partial_consent_reports_the_missing_scopes(stack, tiktok, browser):
    callback, _ = connect(browser, tiktok, scopes=["user.info.basic"])
    result = location_query(callback)
    assert result["status"] == ["connected"]
    assert result["missing_scopes"] == ["video.list"]
    item = connection_item(result["connection_id"][0])
    assert item["scopes_granted"]["S"] == "user.info.basic"


def test_user_cancelling_returns_access_denied_not_retryable_and_stores_nothing(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback = browser.get(tiktok.deny(authorize["headers"]["Location"]))
    assert callback["statusCode"] == 302
    result = location_query(callback)
    assert result["status"] == ["error"] and result["error"] == ["access_denied"]
    assert result["retryable"] == ["false"]
    assert raw_items("CONNECTIONS_TABLE") == []
    assert tiktok.stats["code_exchanges"] == 0


@pytest.mark.parametrize(("error", "expected", "retryable"), [
    ("server_error", "server_error", "true"),
    ("temporarily_unavailable", "temporarily_unavailable", "true"),
    ("invalid_scope", "invalid_scope", "false"),
    ("<script>", "provider_error", "true"),
])
def test_provider_errors_map_to_a_closed_list(stack, tiktok, browser, error, expected, retryable):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    state = parse_qs(urlsplit(authorize["headers"]["Location"]).query)["state"][0]
    from urllib.parse import urlencode

    callback = browser.get(f"{BASE_URL}/callback/tiktok?" + urlencode({"error": error, "state": state}))
    result = location_query(callback)
    assert result["error"] == [expected] and result["retryable"] == [retryable]


def test_replayed_callback_is_refused_without_a_second_exchange(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    saved_cookies = dict(browser.cookies)
    assert browser.get(callback_url)["statusCode"] == 302
    browser.cookies.update(saved_cookies)  # an attacker replays the very same request, cookie and all
    replay = browser.get(callback_url)
    assert replay["statusCode"] == 400
    assert "text/html" in replay["headers"]["Content-Type"]
    assert "start again" in replay["body"]
    assert_security_headers(replay)
    assert tiktok.stats["code_exchanges"] == 1


def test_forged_state_is_refused_and_nothing_is_stored(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    browser.get(created["connect_url"])
    name = next(iter(browser.cookies))
    response = apigw.invoke("GET", "/callback/tiktok", raw_query="code=abc&state=forged",
                            cookies=[f"{name}={browser.cookies[name]}"])
    assert response["statusCode"] in (400, 403)
    assert raw_items("CONNECTIONS_TABLE") == []
    assert tiktok.stats["token_requests"] == 0


def test_expired_flow_is_refused_without_calling_tiktok(stack, tiktok, browser, clock):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    clock.advance(601)
    response = browser.get(callback_url)
    assert response["statusCode"] == 410
    assert "expired" in response["body"]
    assert tiktok.stats["token_requests"] == 0
    assert raw_items("CONNECTIONS_TABLE") == []


def test_missing_or_foreign_cookie_is_refused_and_does_not_use_up_the_flow(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    path, query = urlsplit(callback_url).path, urlsplit(callback_url).query
    name = next(iter(browser.cookies))

    no_cookie = apigw.invoke("GET", path, raw_query=query)
    assert no_cookie["statusCode"] == 403 and "browser" in no_cookie["body"]
    # another flow's nonce under this flow's cookie name: another browser's attempt
    other = json.loads(create_session(owner_id="attacker")["body"])
    other_browser_cookies = {}
    other_response = apigw.invoke("GET", urlsplit(other["connect_url"]).path,
                                  raw_query=urlsplit(other["connect_url"]).query)
    other_browser_cookies["n"] = other_response["cookies"][0].split(";")[0].split("=", 1)[1]
    foreign = apigw.invoke("GET", path, raw_query=query, cookies=[f"{name}={other_browser_cookies['n']}"])
    assert foreign["statusCode"] == 403
    assert tiktok.stats["token_requests"] == 0

    # the real browser can still finish: nobody without the cookie could use up its flow
    assert location_query(browser.get(callback_url))["status"] == ["connected"]


@pytest.mark.parametrize("query", [
    "code=a&code=b&state={state}",
    "code=a&state={state}&state={state}",
])
def test_duplicate_code_or_state_is_refused(stack, tiktok, browser, query):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    state = parse_qs(urlsplit(authorize["headers"]["Location"]).query)["state"][0]
    response = browser.get(f"{BASE_URL}/callback/tiktok?" + query.format(state=state))
    assert response["statusCode"] == 400
    assert tiktok.stats["token_requests"] == 0


def test_a_connect_link_works_once_and_expires(stack, tiktok, browser, clock):
    created = json.loads(create_session()["body"])
    assert browser.get(created["connect_url"])["statusCode"] == 302
    again = browser.get(created["connect_url"])
    assert again["statusCode"] == 410 and "start again" in again["body"]
    assert_security_headers(again)

    late = json.loads(create_session()["body"])
    clock.advance(601)
    assert browser.get(late["connect_url"])["statusCode"] == 410


def test_missing_session_and_unknown_provider_get_html_pages(stack, tiktok, browser):
    assert browser.get(f"{BASE_URL}/connect/tiktok")["statusCode"] == 400
    unknown = browser.get(f"{BASE_URL}/connect/myspace?session=x")
    assert unknown["statusCode"] == 404 and "text/html" in unknown["headers"]["Content-Type"]
    callback = browser.get(f"{BASE_URL}/callback/myspace?code=a&state=b")
    assert callback["statusCode"] == 404


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"owner_id": "o", "provider": "tiktok", "return_to": "https://evil.example.net/"}, 400, "return_to"),
    ({"owner_id": "o", "provider": "tiktok", "return_to": "https://app.example.com@evil.net/"}, 400, "return_to"),
    ({"owner_id": "o", "provider": "myspace", "return_to": RETURN_TO}, 404, "provider"),
    ({"provider": "tiktok", "return_to": RETURN_TO}, 400, "owner_id"),
    ("not json", 400, "body"),
])
def test_bad_connect_session_requests_get_a_json_4xx_and_nothing_is_stored(stack, body, status, field):
    raw = body if isinstance(body, str) else json.dumps(body)
    response = apigw.invoke("POST", "/connect-sessions", body=raw)
    assert response["statusCode"] == status
    error = json.loads(response["body"])["error"]
    assert error["field"] == field and error["code"] and error["message"]
    assert raw_items("FLOWS_TABLE") == []


def test_unsigned_connect_session_requests_are_refused_as_api_gateway_would(stack):
    response = apigw.invoke("POST", "/connect-sessions", caller_arn=None,
                            body=json.dumps({"owner_id": "o", "provider": "tiktok", "return_to": RETURN_TO}))
    assert response["statusCode"] == 403
    assert raw_items("FLOWS_TABLE") == []


def test_reconnecting_the_same_account_updates_the_same_connection(stack, tiktok, browser):
    first, _ = connect(browser, tiktok)
    first_id = location_query(first)["connection_id"][0]
    second, _ = connect(browser, tiktok)
    assert location_query(second)["connection_id"] == [first_id]
    item = connection_item(first_id)
    assert item["token_version"]["N"] == "2" and item["status"]["S"] == "active"
    kinds = [e["detail-type"] for e in stack.received_events()]
    assert kinds == ["Connection Created", "Connection Reconnected"]
    other_owner, _ = connect(browser, tiktok, owner_id="owner-2")
    assert location_query(other_owner)["connection_id"] != [first_id]
    assert len(connection_items()) == 2
    assert len(raw_items("CONNECTIONS_TABLE")) == 4  # and their two guards


def concurrent_callbacks(tiktok, n: int) -> list[dict]:
    """`n` connects of alice for owner-1, each in its own browser, whose callbacks land at once: their answers."""
    callbacks = []
    for _ in range(n):
        b = apigw.Browser()
        authorize = b.get(json.loads(create_session()["body"])["connect_url"])
        callbacks.append((b, tiktok.approve(authorize["headers"]["Location"])))
    results: list[dict] = []
    threads = [threading.Thread(target=lambda b=b, u=u: results.append(b.get(u))) for b, u in callbacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_callbacks_for_one_account_make_one_connection(stack, tiktok, browser):
    results = concurrent_callbacks(tiktok, 4)
    ids = {location_query(r)["connection_id"][0] for r in results}
    assert len(ids) == 1
    (item,) = connection_items()
    assert item["token_version"]["N"] == "4"
    assert len(raw_items("CONNECTIONS_TABLE")) == 2  # and its guard


def test_a_failed_code_exchange_is_retryable_and_stores_nothing(stack, tiktok, browser):
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    tiktok.fail_next(1, "5xx")
    result = location_query(browser.get(callback_url))
    assert result["error"] == ["exchange_failed"] and result["retryable"] == ["true"]
    assert raw_items("CONNECTIONS_TABLE") == []


def test_a_wrong_client_secret_is_reported_as_configuration_not_retryable(stack, tiktok, browser):
    tiktok.rotate_client_secret("rotated-at-tiktok")
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    result = location_query(browser.get(tiktok.approve(authorize["headers"]["Location"])))
    assert result["error"] == ["provider_config"] and result["retryable"] == ["false"]
    assert raw_items("CONNECTIONS_TABLE") == []


def test_a_user_info_failure_never_loses_the_connection(stack, tiktok, browser, monkeypatch):
    endpoint = root.container().provider

    def broken(*args, **kwargs):
        raise ProviderError("down", code="server_error", kind=ProviderError.TRANSIENT)

    monkeypatch.setattr(endpoint, "fetch_user", broken)
    callback, _ = connect(browser, tiktok)
    result = location_query(callback)
    assert result["status"] == ["connected"]
    item = connection_item(result["connection_id"][0])
    assert item["status"]["S"] == "active" and "display_name" not in item


def test_the_pkce_method_is_switched_by_configuration_and_pkce_cannot_be_turned_off(stack, tiktok, browser,
                                                                                     monkeypatch):
    from oauth_keeper.domain.errors import ConfigurationError

    from local.stack import install_from_env

    monkeypatch.setenv("TIKTOK_PKCE_MODE", "s256")
    install_from_env()
    tiktok.pkce = "s256"  # TikTok checks the base64url challenge now
    callback, location = connect(browser, tiktok)
    assert parse_qs(urlsplit(location).query)["code_challenge_method"] == ["S256"]
    assert location_query(callback)["status"] == ["connected"]
    monkeypatch.setenv("TIKTOK_PKCE_MODE", "none")  # a deployment that used to turn it off fails its cold start
    with pytest.raises(ConfigurationError, match="TIKTOK_PKCE_MODE must be one of s256, s256-hex"):
        install_from_env()


def test_return_to_origin_must_be_on_the_allow_list(stack):
    response = create_session(return_to=APP_ORIGIN.replace("app.", "other.") + "/x")
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "return_to_not_allowed"


def popup_page_data(response) -> dict:
    import re

    found = re.search(r"<script type=application/json id=result>(.*?)</script>", response["body"])
    return json.loads(found.group(1))


def test_popup_mode_posts_the_result_to_the_opener_at_return_tos_exact_origin(stack, tiktok, browser):
    created = json.loads(create_session(mode="popup")["body"])
    authorize = browser.get(created["connect_url"])
    response = browser.get(tiktok.approve(authorize["headers"]["Location"], scopes=["user.info.basic"]))
    assert response["statusCode"] == 200 and "text/html" in response["headers"]["Content-Type"]
    data = popup_page_data(response)
    assert data["origin"] == APP_ORIGIN  # postMessage's targetOrigin: never "*"
    assert data["message"]["status"] == "connected" and data["message"]["connection_id"].startswith("con_")
    assert data["message"]["missing_scopes"] == ["video.list"]
    assert data["fallback"].startswith(RETURN_TO + "&status=connected")  # no opener: the redirect instead
    csp = response["headers"]["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert_security_headers(response)
    assert any("Max-Age=0" in c for c in response["cookies"])


def test_popup_mode_reports_a_cancel_with_its_reason(stack, tiktok, browser):
    created = json.loads(create_session(mode="popup")["body"])
    authorize = browser.get(created["connect_url"])
    data = popup_page_data(browser.get(tiktok.deny(authorize["headers"]["Location"])))
    assert data["message"] == {"status": "error", "error": "access_denied", "retryable": False}


def test_popup_page_data_cannot_break_out_of_its_script_block(stack, tiktok, browser):
    from oauth_keeper.http.responses import popup_result

    page = popup_result("https://app.example.com", {"status": "</script><script>alert(1)</script>"},
                        "https://app.example.com/?a=1&b=2")
    assert "</script><script>alert(1)" not in page.body
    assert popup_page_data({"body": page.body})["message"]["status"].startswith("</script>")


def test_an_unknown_mode_is_refused(stack):
    response = create_session(mode="iframe")
    assert response["statusCode"] == 400 and json.loads(response["body"])["error"]["field"] == "mode"


def test_an_authorization_response_from_another_issuer_is_refused_before_any_exchange(stack, tiktok, browser,
                                                                                      monkeypatch):

    from local.stack import install_from_env

    monkeypatch.setenv("TIKTOK_ISSUER", "https://www.tiktok.com")  # as if TikTok sent RFC 9207's iss
    install_from_env()
    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    result = location_query(browser.get(callback_url + "&iss=https%3A%2F%2Fattacker.example"))
    assert result["error"] == ["issuer_mismatch"] and result["retryable"] == ["false"]
    assert tiktok.stats["token_requests"] == 0
    assert raw_items("CONNECTIONS_TABLE") == []

    created = json.loads(create_session()["body"])
    authorize = browser.get(created["connect_url"])
    callback_url = tiktok.approve(authorize["headers"]["Location"])
    result = location_query(browser.get(callback_url + "&iss=https%3A%2F%2Fwww.tiktok.com"))
    assert result["status"] == ["connected"]  # the right issuer, or none when none was promised, passes
