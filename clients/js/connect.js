// oauth-keeper's browser connect helper: opens a connect session in a pop-up and resolves with the callback's result.
// A plain ES module (no build step, no dependencies): copy it next to your page's scripts, or import it as is.
// It never logs, stores or sends anything itself: the result (a claim code among it) goes only to the caller.

const WINDOW_NAME = "oauth-keeper-connect";  // one pop-up per page: clicking Connect again reuses it
const POLL_MS = 250;  // how often the opener looks whether the user closed the pop-up
// The callback page posts its result and then closes itself, so the window can be seen closed a moment before the
// message is handled: wait this long before calling a closed window a cancel.
const CLOSED_GRACE_MS = 800;
// The fields the callback adds to return_to (usecases/connect.py CallbackResult), as redirectResult reads them back.
const RESULT_FIELDS = ["status", "claim", "connection_id", "error", "retryable", "granted_scopes", "missing_scopes",
  "status_reason"];

let running = null;  // the connect() in progress: a new one supersedes it

/**
 * The callback's result, as the callback page posts it (or adds it to `return_to` in a full-page redirect).
 *
 * @typedef {object} ConnectResult
 * @property {"pending_confirmation" | "connected" | "error" | "cancelled"} status
 *   `pending_confirmation`: hand `claim` to your backend, which calls `POST /connections/claims` with the owner of
 *   the logged-in session; `connected`: stored already (`ConnectConfirmation=off`); `error`: nothing was connected;
 *   `cancelled`: the user closed the pop-up (`error` is `popup_closed`), another connect() took over
 *   (`superseded`), or the pop-up was blocked and `redirect: false` was asked (`popup_blocked`).
 * @property {string} [claim] the single-use claim code (10 minutes); a secret: never log it or put it in a URL.
 * @property {string} [connection_id] with `connected`.
 * @property {string[]} [granted_scopes] with `connected`.
 * @property {string[]} [missing_scopes] with `connected`, when the user granted less than asked.
 * @property {string} [status_reason] with `connected`: `connect_finishing` when the network's connect chain (its
 *   long-lived-token exchange) finishes in the background; the connection works meanwhile (ADR 0025).
 * @property {string} [error] with `error` (the callback's code, e.g. `access_denied`, `exchange_failed`) and
 *   `cancelled`.
 * @property {boolean} [retryable] with `error` and `cancelled`: whether the same connect can work if tried again
 *   later without anything being fixed.
 */

/**
 * Open oauth-keeper's connect flow in a pop-up and resolve with its result.
 *
 * Call it from the click handler itself (pop-up blockers allow only windows opened during a click). The session
 * must have been created with `"mode": "popup"` and a `return_to` on this page's origin: the callback page posts
 * its result to exactly that origin, then closes. Only messages from the service's exact origin AND from the
 * window this call opened are accepted; anything else is ignored.
 *
 * If the browser blocks the pop-up, this tab goes to the connect URL instead (a full-page redirect): the promise
 * then never settles, and the result comes back on `return_to`'s query string: read it with `redirectResult()`.
 *
 * @param {string | Promise<string>} connectUrl `connect_url` from `POST /connect-sessions`, or a promise of it
 *   (your backend's call): the pop-up opens at once, inside the click, and goes to the URL when it arrives.
 * @param {object} [options]
 * @param {string} [options.origin] the service's origin (scheme, host, port), e.g.
 *   `https://abc123.execute-api.eu-west-1.amazonaws.com`. Default: `connectUrl`'s origin. Give it when
 *   `connectUrl` is not on the service (e.g. your own URL that redirects there).
 * @param {boolean} [options.redirect=true] `false`: when the pop-up is blocked, resolve with
 *   `{status: "cancelled", error: "popup_blocked", retryable: true}` instead of redirecting this tab.
 * @param {number} [options.width=520] the pop-up's width in CSS pixels.
 * @param {number} [options.height=760] the pop-up's height in CSS pixels.
 * @returns {Promise<ConnectResult>} resolves with the callback's result, or with a `cancelled` result; rejects
 *   only when `connectUrl` is a promise that rejects (the pop-up is closed then), or when `connectUrl` or
 *   `options.origin` is not an absolute http(s) URL (TypeError).
 */
export function connect(connectUrl, options = {}) {
  const { redirect = true, width = 520, height = 760 } = options;
  let given = null;
  try { if (options.origin !== undefined) given = originOf(options.origin); }
  catch (failure) { return Promise.reject(failure); }
  const left = Math.max(0, Math.round(window.screenX + (window.outerWidth - width) / 2));
  const top = Math.max(0, Math.round(window.screenY + (window.outerHeight - height) / 2));
  // Opened empty, synchronously, while the click still counts; pointed at the connect URL once it is known.
  const popup = window.open("", WINDOW_NAME, `popup,width=${width},height=${height},left=${left},top=${top}`);

  if (!popup) {
    if (!redirect) return Promise.resolve(cancelled("popup_blocked"));
    return Promise.resolve(connectUrl).then((url) => {
      checkUrl(url);
      window.location.assign(url);
      return new Promise(() => {});  // this page is leaving: the result arrives on return_to
    });
  }

  if (running) running.settle(cancelled("superseded"));
  try { popup.focus(); } catch (_) { /* brings a reused pop-up to the front where the browser allows it */ }
  try {
    if (popup.location.href === "about:blank") {
      popup.document.title = "Connecting…";
      popup.document.body.textContent = "Connecting…";
    }
  } catch (_) { /* the reused window shows another origin's page: leave it */ }

  return new Promise((resolve, reject) => {
    let origin = given;
    let watch = null;
    let grace = null;
    const call = { settle: finish };
    running = call;

    function finish(result, failure) {
      if (running !== call) return;
      running = null;
      window.removeEventListener("message", onMessage);
      clearInterval(watch);
      clearTimeout(grace);
      if (failure !== undefined) reject(failure); else resolve(result);
    }

    function onMessage(event) {
      // The service's callback page in the window this call opened, and nothing else: another window or frame
      // (even on the service's origin) or another origin in our pop-up (e.g. the provider's page) is ignored.
      if (origin === null || event.origin !== origin || event.source !== popup) return;
      const data = event.data;
      if (!data || typeof data !== "object" || Array.isArray(data) || typeof data.status !== "string") return;
      finish({ ...data });
      if (!popup.closed) popup.close();
    }

    window.addEventListener("message", onMessage);
    watch = setInterval(() => {
      if (!popup.closed || grace !== null) return;
      grace = setTimeout(() => finish(cancelled("popup_closed")), CLOSED_GRACE_MS);
    }, POLL_MS);

    Promise.resolve(connectUrl).then((url) => {
      checkUrl(url);
      if (running !== call) return;
      if (origin === null) origin = originOf(url);
      popup.location.href = url;
    }).catch((failure) => {
      if (running !== call) return;  // superseded: the window is the newer call's now
      if (!popup.closed) popup.close();
      finish(undefined, failure);
    });
  });
}

/**
 * Read the connect result from this page's address after a full-page redirect (`return_to?status=...`), and take
 * it out of the address bar at once (the claim code must not stay in history, bookmarks or a Referer).
 *
 * @returns {ConnectResult | null} the result (`retryable` a boolean, scope lists as arrays), or null when the
 *   address carries none. Other query parameters and the fragment are kept.
 */
export function redirectResult() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("status")) return null;
  const result = {};
  for (const name of RESULT_FIELDS) {
    if (!url.searchParams.has(name)) continue;
    const value = url.searchParams.get(name);
    if (name === "retryable") result[name] = value === "true";
    else if (name.endsWith("_scopes")) result[name] = value ? value.split(",") : [];
    else result[name] = value;
    url.searchParams.delete(name);
  }
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  return result;
}

function cancelled(error) {
  return { status: "cancelled", error, retryable: true };
}

function originOf(value) {
  const url = new URL(value);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError("connect: not an http(s) URL");
  return url.origin;
}

function checkUrl(url) {
  if (typeof url !== "string") throw new TypeError("connect: connectUrl must be a URL string");
  originOf(url);
}
