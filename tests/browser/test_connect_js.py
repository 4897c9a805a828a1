"""clients/js/connect.js in a real browser: a small app page on the local stack's origin imports it (as served at
/dev/clients/js/connect.js) and connects through the simulated TikTok.

Covered: the pop-up's result, claimed by the backend; a blocked pop-up (this tab redirects, or `redirect: false`);
the user closing the pop-up; messages from another origin in the pop-up, and from another window on the service's
own origin, both ignored.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

APP_PATH = "/dev/_connect-test.html"  # only in the test's browser (page.route): the stack does not serve it
# An app page: its Connect button calls connect() inside the click, with the session from its backend (here the
# dashboard's proxy, which creates `mode=popup` sessions returning to /dev/ on this origin).
APP_PAGE = """<!doctype html><meta charset=utf-8><title>An app</title>
<button id=connect type=button>Connect</button>
<script type=module>
import { connect } from "/dev/clients/js/connect.js";
window.results = [];
window.logged = [];
for (const name of ["log", "info", "warn", "error", "debug"]) {
  const original = console[name];
  console[name] = (...args) => { window.logged.push(args.map(String).join(" ")); original.apply(console, args); };
}
function session() {
  return fetch("/dev/api/connect", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({mode: "popup"})}).then((r) => r.json()).then((s) => s.connect_url);
}
document.getElementById("connect").addEventListener("click", () => {
  // window.connectUrl (a string fetched beforehand) or, by default, a promise of it; window.options as given.
  connect(window.connectUrl || session(), window.options || {}).then(
    (result) => window.results.push(result), (failure) => window.results.push({rejected: String(failure)}));
});
document.body.dataset.ready = "true";
</script>"""


@pytest.fixture
def app(page: Page, dev) -> Page:
    page.route(f"{dev.base_url}{APP_PATH}",
               lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=APP_PAGE))
    page.goto(dev.base_url + APP_PATH)
    page.wait_for_selector("body[data-ready=true]")
    return page


def click_connect(app: Page) -> Page:
    """Click the app's Connect button; TikTok's consent page opens in the pop-up."""
    with app.expect_popup() as opened:
        app.click("#connect")
    popup = opened.value
    popup.wait_for_selector("#authorize")
    return popup


def authorize(popup: Page) -> None:
    with popup.expect_event("close"):
        popup.click("#authorize", no_wait_after=True)


def results(app: Page) -> list[dict]:
    app.wait_for_function("window.results.length > 0")
    return app.evaluate("window.results")


def claim(app: Page, code: str) -> dict:
    """What the app's backend does with the result (here the dashboard's proxy, owner fixed server-side)."""
    return app.evaluate("""(claim) => fetch('/dev/api/claim', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({claim})})
        .then(async (r) => ({status: r.status, body: await r.json()}))""", code)


# -- the pop-up --------------------------------------------------------------------------------------------------
def test_the_popup_resolves_with_the_claim_which_the_backend_claims(app, dev):
    app.evaluate("""fetch('/dev/api/connect', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({mode: 'popup'})}).then((r) => r.json())
        .then((s) => { window.connectUrl = s.connect_url; })""")
    popup = click_connect(app)
    assert popup.url.startswith(dev.tiktok.base_url)

    authorize(popup)

    [result] = results(app)
    assert result["status"] == "pending_confirmation"
    assert isinstance(result["claim"], str) and len(result["claim"]) >= 40
    claimed = claim(app, result["claim"])
    assert claimed["status"] == 200
    assert claimed["body"]["result"] == "created"
    assert claimed["body"]["connection"]["status"] == "active"
    assert app.url == dev.base_url + APP_PATH  # the app page stayed where it was
    assert not any(result["claim"] in line for line in app.evaluate("window.logged"))


def test_an_error_from_the_callback_resolves_with_it(app):
    popup = click_connect(app)  # connectUrl a promise: the pop-up opened before the session existed
    with popup.expect_event("close"):
        popup.click("#cancel", no_wait_after=True)

    assert results(app) == [{"status": "error", "error": "access_denied", "retryable": False}]


# -- a blocked pop-up ----------------------------------------------------------------------------------------------
def test_a_blocked_popup_redirects_this_tab_and_the_result_comes_back_on_return_to(app, dev):
    app.add_init_script("window.open = () => null;")  # what a pop-up blocker does to the page
    app.reload()
    app.wait_for_selector("body[data-ready=true]")

    app.click("#connect")

    app.wait_for_selector("#authorize")  # TikTok's consent page, in this tab
    assert app.url.startswith(dev.tiktok.base_url)
    app.click("#authorize")
    # return_to is the dashboard, which reads the result with redirectResult() and claims it.
    expect(app.locator("#result")).to_contain_text("Connected as Alice Example")
    assert app.url == dev.dashboard_url  # the claim code was taken out of the address bar


def test_a_blocked_popup_without_redirect_resolves_as_blocked(app, dev):
    app.add_init_script("window.open = () => null;")
    app.reload()
    app.wait_for_selector("body[data-ready=true]")
    app.evaluate("window.options = {redirect: false}")

    app.click("#connect")

    assert results(app) == [{"status": "cancelled", "error": "popup_blocked", "retryable": True}]
    assert app.url == dev.base_url + APP_PATH


# -- cancel --------------------------------------------------------------------------------------------------------
def test_closing_the_popup_resolves_as_cancelled(app):
    popup = click_connect(app)

    popup.close()

    assert results(app) == [{"status": "cancelled", "error": "popup_closed", "retryable": True}]


# -- messages that are not the result ------------------------------------------------------------------------------
def test_a_message_from_another_origin_in_the_popup_is_ignored(app, dev):
    popup = click_connect(app)  # the pop-up shows TikTok's page: another origin than the service's
    popup.evaluate("window.opener.postMessage({status: 'connected', connection_id: 'con_forged'}, '*')")
    app.wait_for_timeout(300)  # time enough for a message to arrive; the real result is seconds away
    assert app.evaluate("window.results") == []

    authorize(popup)

    [result] = results(app)
    assert result["status"] == "pending_confirmation"
    assert claim(app, result["claim"])["status"] == 200


def test_a_message_from_the_services_origin_but_not_the_popup_is_ignored(app, dev):
    popup = click_connect(app)
    # Another window on the service's own origin (a frame of this page: the same origin here) posts a result.
    app.evaluate("""() => {
        const frame = document.body.appendChild(document.createElement('iframe'));
        frame.contentWindow.eval("parent.postMessage({status: 'connected', connection_id: 'con_forged'}, '*')");
    }""")
    app.wait_for_timeout(300)
    assert app.evaluate("window.results") == []

    authorize(popup)

    [result] = results(app)
    assert result["status"] == "pending_confirmation"
