"""Click through the local stack in a real browser: connect (pop-up and full page), cancel, revoke + sweep,
reconnect, a callback replayed in another browser, pop-up blocked, a TikTok outage, refresh and disconnect.

Each test gets its own dev stack (gateway + dashboard, moto, simulated TikTok, one clock) on free ports; every
state is saved to test-output/screenshots/.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from local import sigv4

pytestmark = pytest.mark.e2e


# -- helpers -------------------------------------------------------------------------------------------------------
def open_consent_popup(page: Page, trigger: str = "#connect-popup") -> Page:
    """Click a connect button; TikTok's consent page opens in a pop-up."""
    with page.expect_popup() as opened:
        page.click(trigger)
    popup = opened.value
    popup.wait_for_selector("#authorize")
    return popup


def finish_in_popup(popup: Page, button: str = "authorize", user: str = "alice") -> None:
    """Pick the TikTok user and press Authorize or Cancel; the callback page posts the result and closes."""
    popup.select_option("#user", user)
    with popup.expect_event("close"):
        popup.click(f"#{button}", no_wait_after=True)


def connect_in_popup(page: Page, user: str = "alice") -> str:
    finish_in_popup(open_consent_popup(page), "authorize", user)
    expect(page.locator("#result")).to_contain_text("Connected")
    row = page.locator("article.connection").first
    expect(row.locator(".status")).to_have_text("active")
    return row.get_attribute("data-connection-id")


def revoke_and_sweep(page: Page, handle: str = "alice") -> None:
    """The user removes the app inside TikTok; time passes beyond the next refresh; the sweep runs."""
    page.click(f"#revoke-{handle}")
    expect(page.locator("#notice")).to_contain_text("removed the app's access")
    row = page.locator("article.connection").first
    page.click("#advance-1h")
    expect(page.locator("#offset")).to_contain_text("ahead of real time")
    expect(row.locator(".next-refresh")).to_contain_text("in ")  # eager: ~1 h 36 min after the connect
    page.click("#advance-1h")
    expect(row.locator(".next-refresh")).to_contain_text("overdue")
    page.click("#sweep")


def row(page: Page):
    return page.locator("article.connection")


# -- the flows -----------------------------------------------------------------------------------------------------
def test_connect_in_a_popup_closes_it_and_shows_connected(dashboard, shot):
    expect(dashboard.locator("#connections")).to_contain_text("No TikTok account connected yet")
    shot(dashboard, "1-empty")
    popup = open_consent_popup(dashboard)
    expect(popup.locator("h1")).to_contain_text("would like to access your TikTok account")
    expect(popup.locator("#scope-video\\.publish")).to_be_checked()
    shot(popup, "2-consent-popup")

    finish_in_popup(popup, "authorize")

    assert popup.is_closed()
    expect(dashboard.locator("#result")).to_contain_text("Connected as Alice Example")
    expect(row(dashboard)).to_have_count(1)
    expect(row(dashboard).locator(".status")).to_have_text("active")
    expect(row(dashboard).locator(".granted-scopes")).to_contain_text("video.publish")
    expect(row(dashboard).locator(".next-refresh")).to_contain_text("in 1 h")
    expect(dashboard.locator("#events")).to_contain_text("Connection Created")
    shot(dashboard, "3-connected")


def test_connect_through_the_full_page_redirect(dashboard, dev, shot):
    dashboard.click("#connect-tab")
    dashboard.wait_for_selector("#authorize")  # TikTok's consent page, in this tab
    shot(dashboard, "1-consent-in-tab")
    dashboard.click("#authorize")

    dashboard.wait_for_url(re.compile(r"/dev/"))
    expect(dashboard.locator("#result")).to_contain_text("Connected as Alice Example")
    expect(row(dashboard).locator(".status")).to_have_text("active")
    assert dashboard.url == dev.dashboard_url  # the result was read, then dropped from the address bar
    shot(dashboard, "2-connected")


def test_a_popup_flow_without_an_opener_falls_back_to_the_redirect(dashboard, shot):
    # A pop-up connect link opened in a plain tab (no window.opener): the callback page redirects instead.
    session = dashboard.evaluate("""fetch('/dev/api/connect', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({mode: 'popup'})}).then(r => r.json())""")
    dashboard.goto(session["connect_url"])
    dashboard.click("#authorize")

    expect(dashboard.locator("#result")).to_contain_text("Connected as Alice Example")
    expect(row(dashboard).locator(".status")).to_have_text("active")
    shot(dashboard, "connected-by-fallback")


def test_cancel_on_tiktok_shows_access_denied(dashboard, shot):
    finish_in_popup(open_consent_popup(dashboard), "cancel")

    result = dashboard.locator("#result")
    expect(result).to_contain_text("Not connected: access_denied")
    expect(result).to_contain_text("You chose Cancel on TikTok")
    expect(result).to_contain_text("Retryable: no")
    expect(dashboard.locator("#connections")).to_contain_text("No TikTok account connected yet")
    shot(dashboard, "access-denied")


def test_revoked_at_tiktok_then_swept_needs_reauthorization(dashboard, shot):
    connect_in_popup(dashboard)

    revoke_and_sweep(dashboard)

    connection = row(dashboard)
    expect(connection.locator(".status")).to_have_text("needs reauthorization")
    expect(connection).to_contain_text("The user must reconnect")
    expect(connection.locator(".last-refresh")).to_contain_text("failed (invalid_grant)")
    expect(dashboard.locator("#sweep-result")).to_contain_text("needs reauthorization")
    expect(dashboard.locator("#events")).to_contain_text("Connection Needs Reauthorization")
    expect(connection.locator("button.reconnect")).to_be_visible()
    shot(dashboard, "needs-reauth")


def test_reconnect_makes_the_same_connection_active_again(dashboard, shot):
    first_id = connect_in_popup(dashboard)
    revoke_and_sweep(dashboard)
    expect(row(dashboard).locator(".status")).to_have_text("needs reauthorization")

    finish_in_popup(open_consent_popup(dashboard, "article.connection button.reconnect"), "authorize")

    expect(dashboard.locator("#result")).to_contain_text("Connected as Alice Example")
    expect(row(dashboard)).to_have_count(1)
    expect(row(dashboard).locator(".status")).to_have_text("active")
    assert row(dashboard).get_attribute("data-connection-id") == first_id
    expect(dashboard.locator("#events")).to_contain_text("Connection Reconnected")
    shot(dashboard, "active-again")


def test_a_callback_opened_in_another_browser_is_refused(dashboard, browser, dev, shot):
    captured: dict[str, str] = {}

    def hold_consent(route):
        # Let TikTok answer the consent post, but keep its redirect to our callback from being followed.
        answer = route.fetch(max_redirects=0)
        captured["callback"] = answer.headers["location"]
        route.fulfill(status=200, content_type="text/html", body="<p id=held>Callback held by the test.</p>")

    dashboard.route(re.compile(r"/v2/auth/authorize/$"), hold_consent)
    dashboard.click("#connect-tab")
    dashboard.wait_for_selector("#authorize")
    dashboard.click("#authorize")
    dashboard.wait_for_selector("#held")
    assert captured["callback"].startswith(f"{dev.base_url}/callback/tiktok?code=")

    other = browser.new_context()
    try:
        stranger = other.new_page()
        response = stranger.goto(captured["callback"])
        assert response.status == 403
        expect(stranger.locator("body")).to_contain_text("started in this browser")
        expect(stranger.locator("body")).to_contain_text("start again")
        shot(stranger, "1-refused-in-another-browser")
    finally:
        other.close()

    # The browser that started it still can finish: the stranger's attempt consumed nothing.
    dashboard.goto(captured["callback"])
    expect(dashboard.locator("#result")).to_contain_text("Connected")
    shot(dashboard, "2-rightful-browser-connected")


# -- error states and the other buttons ----------------------------------------------------------------------------
def test_a_blocked_popup_says_allow_popups_and_offers_the_full_page_link(page, dev, shot):
    page.add_init_script("window.open = () => null;")  # what a pop-up blocker does to the page
    page.goto(dev.dashboard_url)
    page.wait_for_selector("body[data-ready=true]")

    page.click("#connect-popup")

    result = page.locator("#result")
    expect(result).to_contain_text("blocked the pop-up")
    expect(result).to_contain_text("Allow pop-ups")
    shot(page, "popup-blocked")
    page.click("#blocked-connect-tab")
    page.wait_for_selector("#authorize")
    page.click("#authorize")
    expect(page.locator("#result")).to_contain_text("Connected")


def test_a_tiktok_outage_during_connect_is_shown_as_retryable(dashboard, shot):
    dashboard.select_option("#outage", "5xx")
    dashboard.click("#set-outage")
    expect(dashboard.locator("#tiktok-status")).to_contain_text("Outage: 5xx")

    finish_in_popup(open_consent_popup(dashboard), "authorize")

    result = dashboard.locator("#result")
    expect(result).to_contain_text("Not connected: exchange_failed")
    expect(result).to_contain_text("try again")
    expect(result).to_contain_text("Retryable: yes")
    shot(dashboard, "1-outage-retryable")

    dashboard.select_option("#outage", "")
    dashboard.click("#set-outage")
    expect(dashboard.locator("#tiktok-status")).to_contain_text("Healthy")
    connect_in_popup(dashboard)
    shot(dashboard, "2-after-outage-connected")


def test_refresh_now_then_disconnect(dashboard, shot):
    connect_in_popup(dashboard)
    connection = row(dashboard)
    expect(connection.locator(".last-refresh")).to_contain_text("never")

    connection.locator("button.refresh").click()
    expect(dashboard.locator("#notice")).to_contain_text("Refresh: refreshed")
    expect(connection.locator(".last-refresh")).to_contain_text("succeeded")
    shot(dashboard, "1-refreshed")

    connection.locator("button.disconnect").click()
    expect(connection.locator(".status")).to_have_text("disconnected")
    expect(dashboard.locator("#events")).to_contain_text("Connection Disconnected")
    shot(dashboard, "2-disconnected")


def test_rate_limited_refreshes_put_the_connection_at_risk_until_one_succeeds(dashboard, shot):
    connect_in_popup(dashboard)
    dashboard.select_option("#outage", "429")
    dashboard.click("#set-outage")
    expect(dashboard.locator("#tiktok-status")).to_contain_text("Outage: 429")
    dashboard.click("#advance-1d")  # the access token has expired by now: eager counts that as at risk
    expect(row(dashboard).locator(".next-refresh")).to_contain_text("overdue")
    dashboard.click("#sweep")
    expect(row(dashboard).locator(".status")).to_have_text("at risk")
    expect(row(dashboard)).to_contain_text("rate limiting")
    shot(dashboard, "1-at-risk")

    dashboard.select_option("#outage", "")
    dashboard.click("#set-outage")
    dashboard.click("#advance-1h")
    dashboard.click("#sweep")
    expect(row(dashboard).locator(".status")).to_have_text("active")
    expect(dashboard.locator("#events")).to_contain_text("Connection Recovered")
    shot(dashboard, "2-recovered")


# -- the fence: IAM routes need a signature the browser never has ----------------------------------------------------
def test_the_browser_reaches_iam_routes_only_through_the_signing_proxy(dashboard, dev):
    unsigned = dashboard.evaluate("fetch('/connections?owner_id=dev-user').then(r => r.status)")
    assert unsigned == 403
    unsigned_post = dashboard.evaluate("""fetch('/connect-sessions', {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({owner_id: 'dev-user', provider: 'tiktok', return_to: location.href})})
        .then(r => r.status)""")
    assert unsigned_post == 403
    assert dashboard.evaluate("fetch('/dev/api/state').then(r => r.status)") == 200

    for name in ("app.js", "index.html"):
        text = httpx.get(f"{dev.base_url}/dev/{name}").text
        for secret in (sigv4.LOCAL_ACCESS_KEY, sigv4.LOCAL_SECRET_KEY, "AWS4-HMAC-SHA256"):
            assert secret not in text

    # Another site cannot drive the proxy: no JSON without a CORS preflight (never granted), and its Origin shows.
    assert httpx.post(f"{dev.base_url}/dev/api/connect", content='{"mode":"popup"}',
                      headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(f"{dev.base_url}/dev/api/connect", json={"mode": "popup"},
                      headers={"Origin": "http://evil.example"}).status_code == 403


def test_results_posted_from_another_origin_are_ignored(dashboard, dev):
    with dashboard.expect_popup() as opened:
        dashboard.evaluate(f"window.open({dev.tiktok.base_url + '/_sim/stats'!r}, 'other')")
    other = opened.value
    other.wait_for_load_state()
    other.evaluate("window.opener.postMessage({status: 'connected', connection_id: 'con_forged'}, '*')")
    dashboard.wait_for_timeout(300)
    expect(dashboard.locator("#result")).to_be_hidden()
