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
    expect(page.locator(".notice", has_text="removed the app's access")).to_be_visible()
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


def test_cancel_on_tiktok_shows_access_denied_with_one_advice(dashboard, shot):
    finish_in_popup(open_consent_popup(dashboard), "cancel")

    result = dashboard.locator("#result")
    expect(result).to_contain_text("Not connected: access_denied")
    expect(result).to_contain_text("You chose Cancel on TikTok")
    expect(result).to_contain_text("whenever you want")
    expect(result).to_contain_text("Retryable: no")
    expect(result).not_to_contain_text("won't help")  # connecting again is exactly what the user may do
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
def test_a_blocked_popup_connects_in_this_tab_instead(page, dev, shot):
    page.add_init_script("window.open = () => null;")  # what a pop-up blocker does to the page
    page.goto(dev.dashboard_url)
    page.wait_for_selector("body[data-ready=true]")

    page.click("#connect-popup")

    page.wait_for_selector("#authorize")  # connect.js sent this tab to TikTok's consent page
    assert page.url.startswith(dev.tiktok.base_url)
    shot(page, "1-consent-in-this-tab")
    page.click("#authorize")
    expect(page.locator("#result")).to_contain_text("Connected as Alice Example")
    expect(row(page).locator(".status")).to_have_text("active")
    assert page.url == dev.dashboard_url  # the claim code was taken out of the address bar
    shot(page, "2-connected")


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
    expect(dashboard.locator(".notice", has_text="Refresh: refreshed")).to_be_visible()
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


# -- the dashboard shows the truth -----------------------------------------------------------------------------------
def test_the_last_connect_box_stops_being_green_when_the_connection_needs_reauth_or_is_disconnected(dashboard, shot):
    result = dashboard.locator("#result")
    connect_in_popup(dashboard)
    expect(result).to_have_class(re.compile(r"\bok\b"))

    revoke_and_sweep(dashboard)

    expect(row(dashboard).locator(".status")).to_have_text("needs reauthorization")
    expect(result).not_to_have_class(re.compile(r"\bok\b"))
    expect(result).to_contain_text("needs reauthorization")
    shot(dashboard, "1-needs-reauth")

    finish_in_popup(open_consent_popup(dashboard, "article.connection button.reconnect"), "authorize")
    expect(result).to_have_class(re.compile(r"\bok\b"))
    row(dashboard).locator("button.disconnect").click()

    expect(row(dashboard).locator(".status")).to_have_text("disconnected")
    expect(result).not_to_have_class(re.compile(r"\bok\b"))
    expect(result).to_contain_text("disconnected")
    shot(dashboard, "2-disconnected")


def test_each_event_names_its_connection(dashboard, shot):
    alice = connect_in_popup(dashboard, "alice")
    finish_in_popup(open_consent_popup(dashboard), "authorize", "bob")
    expect(row(dashboard)).to_have_count(2)
    bob = dashboard.locator("article.connection", has_text="Bob Example").get_attribute("data-connection-id")

    events = dashboard.locator("#events li")
    expect(events).to_have_count(2)
    for name, connection_id in (("Alice Example", alice), ("Bob Example", bob)):
        event = events.filter(has_text=connection_id)
        expect(event).to_have_count(1)
        expect(event).to_contain_text("Connection Created")
        expect(event).to_contain_text(name)
    shot(dashboard, "two-connections")


def test_times_are_simulated_time_in_one_format(dashboard, shot):
    connect_in_popup(dashboard)
    connected_at = dashboard.locator("#now").inner_text()

    dashboard.click("#advance-1d")
    expect(dashboard.locator("#now")).not_to_have_text(connected_at)
    dashboard.click("#sweep")
    expect(dashboard.locator("#events")).to_contain_text("Connection Created")

    created = dashboard.locator("#events li", has_text="Connection Created")
    # The same simulated clock, read the same way as the header's and the cards' times.
    expect(created).to_contain_text(connected_at)
    expect(created).to_contain_text("1 d ago")
    expect(row(dashboard).locator(".connected-at")).to_contain_text("1 d ago")
    now = dashboard.locator("#now").inner_text()
    expect(dashboard.locator("#sweep-result")).to_contain_text(now)
    # Every date on the page reads like the simulated clock's (never an ISO or "... UTC" wall-clock-looking stamp).
    stamps = re.findall(r"\d{4}-\d\d-\d\d\S?\s?\d\d:\d\d:\d\d\S*(?: UTC)?", dashboard.locator("main").inner_text())
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp) for stamp in stamps), stamps
    shot(dashboard, "a-day-later")


COVERED_POINTS = """(selector) => {
    // Points of each matching element, inside the viewport, where something that isn't part of it is on top.
    const covered = [];
    for (const element of document.querySelectorAll(selector)) {
        const box = element.getBoundingClientRect();
        for (let x = box.left + 4; x < box.right - 4; x += 16) {
            for (let y = Math.max(box.top, 0) + 4; y < Math.min(box.bottom, innerHeight) - 4; y += 16) {
                const top = document.elementFromPoint(x, y);
                if (top && !element.contains(top)) covered.push([x, y, top.id || top.className]);
            }
        }
    }
    return covered;
}"""


def test_messages_never_cover_the_cards(page, dev, shot):
    page.set_viewport_size({"width": 1280, "height": 700})
    page.goto(dev.dashboard_url)
    page.wait_for_selector("body[data-ready=true]")
    connect_in_popup(page)
    page.evaluate("window.scrollTo(0, 0)")

    page.click("#advance-1h")
    expect(page.locator(".notice", has_text="Clock moved forward 1 h")).to_be_visible()
    assert page.evaluate(COVERED_POINTS, ".card, article.connection") == []
    shot(page, "1-clock-moved")

    row(page).locator("button.refresh").click()
    expect(page.locator(".notice", has_text="Refresh: refreshed")).to_be_visible()
    assert page.evaluate(COVERED_POINTS, ".card, article.connection") == []
    shot(page, "2-refreshed")


# -- the other networks ----------------------------------------------------------------------------------------------
def test_connect_instagram_from_its_own_button_then_extend_it_a_month_later(dashboard, dev, shot):
    # Every enabled network has a Connect button; Instagram's consent page is its simulator's, over loopback.
    for name in ("instagram", "facebook_pages", "youtube", "linkedin", "x_twitter", "pinterest", "threads"):
        expect(dashboard.locator(f"#connect-{name}")).to_be_visible()
    popup = open_consent_popup(dashboard, "#connect-instagram")
    assert popup.url.startswith(dev.networks.url("instagram") + "/authorize?")
    expect(popup.locator("h1")).to_contain_text("would like to access your Instagram account")
    shot(popup, "1-instagram-consent")

    finish_in_popup(popup, "authorize")

    expect(dashboard.locator("#result")).to_contain_text("Connected as User alice")
    connection = row(dashboard)
    expect(connection.locator(".badge.network")).to_have_text("Instagram")
    expect(connection).to_contain_text("Instagram account")
    expect(connection.locator(".status")).to_have_text("active")
    shot(dashboard, "2-instagram-connected")

    # Instagram's long-lived token lasts 60 days and the keeper extends it from day 48; a month on, nothing is due
    # yet, and Refresh now extends it at Instagram (its refresh endpoint, over loopback) for another 60.
    dashboard.click("#advance-30d")
    expect(dashboard.locator(".notice", has_text="Clock moved forward")).to_be_visible()
    dashboard.click("#sweep")
    expect(dashboard.locator("#sweep-result")).to_contain_text("0 due")
    expect(connection.locator(".next-refresh")).to_contain_text(re.compile(r"in 1[78] d"))
    connection.locator("button.refresh").click()
    expect(connection.locator(".last-refresh")).to_contain_text("succeeded")
    expect(connection.locator(".next-refresh")).to_contain_text(re.compile(r"in 4[78] d"))
    expect(connection.locator(".status")).to_have_text("active")
    shot(dashboard, "3-instagram-extended")


def test_deny_on_another_networks_consent_page_names_that_network(dashboard, shot):
    finish_in_popup(open_consent_popup(dashboard, "#connect-linkedin"), "cancel")

    result = dashboard.locator("#result")
    expect(result).to_contain_text("Not connected: access_denied")
    expect(result).to_contain_text("You chose Cancel on LinkedIn")
    shot(dashboard, "linkedin-access-denied")
