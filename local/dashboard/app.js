// The local dashboard (an ES module). It holds no credentials: every call goes to /dev/api/ on this origin, whose
// server-side proxy signs the IAM routes (local/dev.py). Untrusted text is only ever set with textContent.
// It connects as an app would: clients/js/connect.js opens the pop-up, then its backend (the proxy) claims.
import { connect, redirectResult } from "/dev/clients/js/connect.js";

const STATUS_TEXT = {
  active: "active",
  at_risk: "at risk",
  needs_reauth: "needs reauthorization",
  disconnecting: "disconnecting",
  disconnected: "disconnected",
};

// "{network}" is the connection's network (TikTok, Instagram, ...): see say().
const REASON_TEXT = {
  invalid_grant: "{network} refused the refresh token: the user removed the app's access, or the grant ended",
  rotation_lost: "a refresh may have rotated the token without us saving it",
  refresh_token_expired: "the refresh token ran out",
  provider_unavailable: "{network} is failing or unreachable",
  rate_limited: "{network} is rate limiting us",
  provider_config: "{network} refuses the app's client credentials",
  user_revoked: "the user removed the app inside {network}",
  app_disconnected: "the app disconnected it",
  connect_finishing: "connected on the network's short-lived token; the long-lived one is being fetched in the background",
  connect_incomplete: "the network never exchanged the short-lived token for a long-lived one",
};

// What to tell the user after a connect attempt failed: what happened and what to do next.
const ERROR_HELP = {
  claim_expired: "The connect was not confirmed within 10 minutes, so nothing was connected. Click Connect TikTok to try again.",
  owner_mismatch: "This connect link was made for another user of the app, so nothing was connected here.",
  claim_used: "This connect was already confirmed or refused. Click Connect TikTok to try again.",
  user_revoked: "You removed the app inside TikTok after allowing it, so nothing was connected. Click Connect TikTok if you want to connect again.",
  access_denied: "You chose Cancel on TikTok, so nothing was connected. Click Connect TikTok whenever you want to connect.",
  invalid_scope: "TikTok refused the permissions the app asked for. Trying again won't help until the app's scope settings are fixed.",
  invalid_request: "The sign-in request was not valid. Start again from the app; if it keeps happening, the app's configuration needs fixing.",
  unauthorized_client: "TikTok doesn't let this app connect this account (in sandbox mode only target users can). An operator must fix the app's TikTok settings.",
  unsupported_response_type: "TikTok refused the sign-in request. An operator must fix the app's TikTok settings.",
  server_error: "TikTok had a problem. Wait a few minutes and try again.",
  temporarily_unavailable: "TikTok is temporarily unavailable. Wait a few minutes and try again.",
  exchange_failed: "TikTok didn't complete the sign-in (the code exchange failed). Wait a few minutes and try again.",
  provider_config: "The app's TikTok credentials are wrong. This isn't your fault: an operator must fix them, then try again.",
  account_unavailable: "TikTok didn't say which account was connected. Wait a few minutes and try again.",
  account_mismatch: "You picked a different TikTok account than the one being upgraded. Try again and choose the same account.",
  provider_error: "TikTok returned an unexpected error. Wait a few minutes and try again.",
};

const INACTIVE = ["needs_reauth", "disconnecting", "disconnected"];
const DEFAULT_PROVIDER = "tiktok";
const CONNECTING_KEY = "oauth-keeper-dev:connecting";  // the network of a connect that left this tab (redirect)

let state = null;
let loading = false;
let loadAgain = false;
let lastOutcome = null;  // the last connect result, re-rendered as the listing brings the account's name and status
// Messages after an action, shown inside the card whose button was pressed ("keeper", "tiktok", or
// "connection:<id>"), never floating over the page: where -> {message, kind, timer}.
const notes = new Map();

// -- small helpers ---------------------------------------------------------------------------------------------
function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (method !== "GET") {  // the proxy takes changes only as JSON (other sites can't send that without CORS)
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body === undefined ? {} : body);
  }
  const response = await fetch("/dev/api" + path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message = error.message || (data && data.message) || (data && data.error_description) || response.statusText;
    const failure = new Error(message);
    failure.status = response.status;
    failure.code = error.code || (data && data.error) || "http_" + response.status;
    failure.retryable = error.retryable;
    throw failure;
  }
  return data;
}

function notice(where, message, kind) {
  const previous = notes.get(where);
  if (previous) clearTimeout(previous.timer);
  const timer = setTimeout(() => { notes.delete(where); renderNote(where); }, kind === "error" ? 10000 : 6000);
  notes.set(where, { message, kind, timer });
  renderNote(where);
}

function noteFor(where) {
  const note = notes.get(where);
  if (!note) return null;
  return el("p", { className: "notice" + (note.kind === "error" ? " error" : ""), role: "status" }, note.message);
}

function renderNote(where) {
  if (where.startsWith("connection:")) { if (state) renderConnections(); return; }
  const box = $("notice-" + where);
  if (box) box.replaceChildren(...[noteFor(where)].filter(Boolean));
}

function duration(seconds) {
  seconds = Math.abs(Math.round(seconds));
  if (seconds < 60) return seconds + " s";
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days) return days + " d" + (hours ? " " + hours + " h" : "");
  if (hours) return hours + " h" + (minutes ? " " + minutes + " min" : "");
  return minutes + " min";
}

// The enabled networks' names as their profiles give them (state.providers), e.g. x_twitter -> "X".
function networkName(provider) {
  const found = ((state && state.providers) || []).find((p) => p.name === provider);
  return found ? found.display_name : (provider === DEFAULT_PROVIDER ? "TikTok" : provider || "the network");
}

// The dashboard's texts name TikTok, the first network; for another network's connection they name that one.
function say(text, provider) {
  const name = networkName(provider || DEFAULT_PROVIDER);
  return String(text).replaceAll("{network}", name).replaceAll("TikTok", name);
}

function epochOf(iso) { return iso ? Date.parse(iso) / 1000 : null; }

// Every time on the page is simulated time, shown one way: as the header's clock shows it, or relative to it.
function stamp(iso) { return iso ? iso.replace("T", " ").replace("Z", "") : ""; }

function relative(iso, { pastWord = "ago", expired = false } = {}) {
  const diff = epochOf(iso) - state.now_epoch;
  if (Math.abs(diff) < 5) return "just now";
  return diff >= 0 ? "in " + duration(diff) : (expired ? "expired " : "") + duration(diff) + " " + pastWord;
}

function when(iso, options = {}) {
  if (!iso || !state) return el("span", { className: "muted" }, "—");
  const past = epochOf(iso) - state.now_epoch < -5;
  return el("span", { title: stamp(iso) + " (simulated time, UTC)", className: past && options.expired ? "bad" : null },
    relative(iso, options));
}

async function withButton(button, where, action) {
  if (button) button.disabled = true;
  const previous = notes.get(where);  // a new action in this card: the last one's message no longer applies
  if (previous) { clearTimeout(previous.timer); notes.delete(where); renderNote(where); }
  try { await action(); }
  catch (error) { notice(where, error.message || String(error), "error"); }
  finally { if (button) button.disabled = false; await load(); }
}

// -- the connect result box --------------------------------------------------------------------------------------
function showResult(kind, title, ...lines) {
  const box = $("result");
  box.replaceChildren(el("p", { className: "caption muted" }, "Last connect attempt"), el("h3", {}, title), ...lines.filter(Boolean).map((line) => (line instanceof Node ? line : el("p", {}, line))));
  box.className = "result " + kind;
  box.hidden = false;
}

function showOutcome(data, provider) {
  if (!lastOutcome || lastOutcome.data !== data) lastOutcome = { data, provider: provider || DEFAULT_PROVIDER };
  provider = lastOutcome.provider;
  if (data.status === "connected") {
    const connection = ((state && state.connections) || []).find((c) => c.connection_id === data.connection_id);
    const who = connection && connection.display_name ? " as " + connection.display_name : "";
    const granted = [].concat(data.granted_scopes || []).join(", ");
    const missing = [].concat(data.missing_scopes || []).filter(Boolean);
    if (connection && connection.status !== "active") {
      // The connect worked, but the connection has changed since: the box must not say all is well.
      showResult(INACTIVE.includes(connection.status) ? "stale" : "warn",
        "Connected" + who + " earlier; now " + (STATUS_TEXT[connection.status] || connection.status),
        el("p", {}, "Connection ", el("code", {}, data.connection_id), ": see its card below for what to do."));
      return;
    }
    showResult("ok", "Connected" + who,
      el("p", {}, "Connection ", el("code", {}, data.connection_id || "?"), granted ? " · granted: " + granted : ""),
      missing.length ? say("TikTok", provider) + " granted less than asked: " + missing.join(", ") + " missing. Connect again and keep those boxes ticked if the app needs them." : null);
    return;
  }
  const code = data.error || "unknown_error";
  const retryable = data.retryable === true || data.retryable === "true";
  const help = say(ERROR_HELP[code] || (retryable ? "Wait a few minutes and try again." : "Start again from the app."), provider);
  showResult("error", "Not connected: " + code,
    el("p", {}, help),
    // What the callback reported to the app, in its terms: never a second piece of advice beside the one above.
    el("p", { className: "muted" }, retryable ? "Retryable: yes (the same connect can work when tried again later)." : "Retryable: no (an app should not retry this by itself)."));
}

function showPending(kind, title, ...lines) {
  lastOutcome = null;
  showResult(kind, title, ...lines);
}

// -- connecting: connect.js opens the pop-up (this tab goes to TikTok instead if the pop-up is blocked) -----------
async function connectInPopup(button, provider = DEFAULT_PROVIDER) {
  // connect() is called inside the click, with the session still on its way: the pop-up opens at once.
  if (button) button.disabled = true;
  try { sessionStorage.setItem(CONNECTING_KEY, provider); } catch (_) { /* storage off: the result says TikTok */ }
  const session = api("POST", "/connect", { mode: "popup", provider }).then((answer) => answer.connect_url);
  // Enabled again once the session exists: a second click brings the pop-up back with a new session.
  session.finally(() => { if (button) button.disabled = false; }).catch(() => {});
  showPending("pending", say("Waiting for TikTok…", provider), "Finish in the pop-up window. If you can't see it, it may be behind this window.");
  let result;
  try {
    result = await connect(session);
  } catch (error) {
    showPending("error", "Could not start connecting", error.message, "Try again in a moment.");
    return;
  }
  if (result.status === "cancelled") {
    if (result.error !== "superseded") {  // superseded: a newer click's connect reports instead
      showPending("warn", say("The pop-up was closed before TikTok finished", provider), say("Nothing was connected. Click Connect TikTok to try again.", provider));
    }
    return;
  }
  settle(result, provider);
}

// Connect confirmation: the callback only holds the grant; the dashboard's backend claims it for its own user.
async function settle(data, provider = DEFAULT_PROVIDER) {
  if (data.status !== "pending_confirmation") { showOutcome(data, provider); load(); return; }
  showPending("pending", "Almost done…", "Confirming the connection for this user.");
  try {
    const answer = await api("POST", "/claim", { claim: data.claim });
    const c = answer.connection;
    showOutcome({ status: "connected", connection_id: c.connection_id, granted_scopes: c.scopes_granted,
      missing_scopes: c.missing_scopes }, provider);
  } catch (error) {
    // A used or expired claim code never works again (410, 409): only a failure on our side is worth retrying.
    showOutcome({ status: "error", error: error.code || "claim_failed", retryable: error.status >= 500 }, provider);
  }
  load();
}

// -- rendering ---------------------------------------------------------------------------------------------------
function renderClock() {
  $("now").textContent = stamp(state.now);
  const ahead = state.now_epoch - Date.now() / 1000;
  $("offset").textContent = Math.abs(ahead) < 90 ? "in step with real time" : duration(ahead) + (ahead > 0 ? " ahead of" : " behind") + " real time";
}

function hintFor(c) {
  const inNetwork = (text) => say(text, c.provider);
  const reason = c.status_reason ? (REASON_TEXT[c.status_reason] || c.status_reason) : null;
  if (c.status === "needs_reauth") return el("p", { className: "hint bad" }, inNetwork("TikTok no longer accepts this connection (" + (reason || "grant gone") + "). The user must reconnect: click Reconnect."));
  if (c.status === "at_risk") return el("p", { className: "hint" }, inNetwork("Refreshing keeps failing for a reason that isn't the user's (" + (reason || "unknown") + "). The keeper keeps retrying; posts may fail until it recovers."));
  if (c.status === "disconnected") return el("p", { className: "hint muted" }, inNetwork("Disconnected" + (reason ? ": " + reason : "") + ". Its tokens were erased; reconnect to use it again."));
  if (c.status === "disconnecting") return el("p", { className: "hint muted" }, inNetwork("Being disconnected: no token is served; the keeper is revoking its access at TikTok (retried for up to a day), then erases its tokens."));
  if (c.refresh_in_doubt) return el("p", { className: "hint" }, inNetwork("A refresh ended without an answer: TikTok may have rotated the token. The next refresh will tell."));
  return null;
}

function lastRefresh(c) {
  const last = c.last_refresh || {};
  if (!last.outcome) return el("span", { className: "muted" }, "never (tokens from the connect)");
  return el("span", {}, last.outcome + (last.reason ? " (" + last.reason + ")" : "") + " · ", when(last.at));
}

function scopes(list, missing) {
  if (!list || !list.length) return el("span", { className: "muted" }, "—");
  return list.map((s) => el("span", { className: "scope" + (missing ? " missing" : "") }, s));
}

function renderConnection(c) {
  const id = c.connection_id;
  const inactive = INACTIVE.includes(c.status);
  const buttons = [];
  const where = "connection:" + id;
  if (inactive) {
    buttons.push(el("button", { type: "button", className: "primary reconnect", onclick: (e) => connectInPopup(e.currentTarget, c.provider) }, "Reconnect"));
  } else {
    buttons.push(el("button", { type: "button", className: "refresh", onclick: (e) => refreshNow(e.currentTarget, where, c) }, "Refresh now"));
  }
  if (c.status !== "disconnected" && c.status !== "disconnecting") {
    buttons.push(el("button", { type: "button", className: "danger disconnect", onclick: (e) => disconnect(e.currentTarget, where, c) }, "Disconnect"));
  }
  const network = networkName(c.provider);
  return el("article", { className: "connection", dataset: { connectionId: id, status: c.status, provider: c.provider } },
    el("header", {},
      el("span", { className: "name" }, c.display_name || network + " account"),
      el("span", { className: "badge network" }, network),
      el("span", { className: "badge status status-" + c.status }, STATUS_TEXT[c.status] || c.status)),
    hintFor(c),
    el("dl", {},
      el("dt", {}, "Connection"), el("dd", {}, el("code", {}, id)),
      el("dt", {}, network + " account"), el("dd", {}, el("code", {}, c.account_id)),
      el("dt", {}, "Granted scopes"), el("dd", { className: "granted-scopes" }, scopes(c.scopes_granted)),
      c.missing_scopes && c.missing_scopes.length ? [el("dt", {}, "Missing scopes"), el("dd", {}, scopes(c.missing_scopes, true))] : null,
      el("dt", {}, "Access token"), el("dd", {}, inactive ? el("span", { className: "muted" }, "—") : when(c.access_expires_at, { expired: true })),
      el("dt", {}, "Next refresh"), el("dd", { className: "next-refresh" }, c.next_refresh_at ? when(c.next_refresh_at, { pastWord: "overdue" }) : el("span", { className: "muted" }, "none scheduled")),
      el("dt", {}, "Refresh token"), el("dd", {}, inactive ? el("span", { className: "muted" }, "—") : when(c.refresh_expires_at, { expired: true })),
      el("dt", {}, "Last refresh"), el("dd", { className: "last-refresh" }, lastRefresh(c)),
      el("dt", {}, "Connected"), el("dd", { className: "connected-at" }, when(c.connected_at))),
    el("div", { className: "actions" }, buttons),
    noteFor(where));
}

function renderConnections() {
  const list = state.connections || [];
  $("count").textContent = list.length ? "(" + list.length + ")" : "";
  if (state.connections_error) {
    $("connections").replaceChildren(el("p", { className: "bad" }, "Could not list connections: " + JSON.stringify(state.connections_error)));
    return;
  }
  if (!list.length) {
    $("connections").replaceChildren(el("p", { className: "muted" }, "No TikTok account connected yet, nor any other network's. Click a Connect button above."));
    return;
  }
  $("connections").replaceChildren(...list.map(renderConnection));
}

function renderTikTok() {
  const t = state.tiktok;
  const bits = [t.outage ? "Outage: " + t.outage : "Healthy"];
  if (t.fail_next) bits.push(t.fail_next + " token call(s) will fail");
  if (t.latency) bits.push("latency " + t.latency + " s");
  const stats = t.stats || {};
  bits.push((stats.refresh_successes || 0) + " refreshes, " + (stats.code_exchange_successes || 0) + " connects, " + (stats.token_errors || 0) + " token errors");
  $("tiktok-status").textContent = bits.join(" · ");
  if (document.activeElement !== $("outage")) $("outage").value = t.outage || "";
  $("tiktok-users").replaceChildren(...t.users.map((u) => el("div", { className: "user" },
    el("span", {}, u.display_name, " ", el("span", { className: "muted" }, "@" + u.handle)),
    el("span", { className: "buttons" },
      el("button", { type: "button", id: "revoke-" + u.handle, title: "The user removes the app in TikTok's settings",
        onclick: (e) => simAction(e.currentTarget, "revoke", { open_id: u.open_id }, u.display_name + " removed the app's access at TikTok.") }, "Revoke app access"),
      el("button", { type: "button", id: "expire-" + u.handle, title: "The user's refresh token reaches its end",
        onclick: (e) => simAction(e.currentTarget, "expire-refresh", { open_id: u.open_id }, u.display_name + "'s refresh token has now expired at TikTok.") }, "Expire refresh token")))));
}

function connectionName(e) {
  const c = (state.connections || []).find((c) => c.connection_id === e.connection_id);
  if (c && c.display_name) return c.display_name + " (" + networkName(c.provider) + ")";
  const network = c ? networkName(c.provider) : "Account";  // a connection no longer listed: its network is gone too
  return e.account_id ? network + (c ? " account " : " ") + e.account_id : network + (c ? " account" : "");
}

// One Connect button per enabled network besides TikTok's own (#connect-popup), built when the list changes.
let offered = "";
function renderProviders() {
  const others = (state.providers || []).filter((p) => p.name !== DEFAULT_PROVIDER);
  const key = others.map((p) => p.name + "=" + p.display_name).join(",");
  if (key === offered) return;
  offered = key;
  $("connect-networks").replaceChildren(...others.map((p) => el("button", {
    type: "button", id: "connect-" + p.name, className: "connect-network", dataset: { provider: p.name },
    onclick: (e) => connectInPopup(e.currentTarget, p.name) }, "Connect " + p.display_name)));
}

function renderEvents() {
  const items = state.events || [];
  if (!items.length) { $("events").replaceChildren(el("li", { className: "muted" }, "None yet.")); return; }
  $("events").replaceChildren(...items.map((e) => el("li", { dataset: { connectionId: e.connection_id || "" } },
    el("strong", {}, e.type), " · ", STATUS_TEXT[e.status] || e.status, e.reason ? " (" + e.reason + ")" : "",
    el("br"), connectionName(e), " ", el("code", {}, e.connection_id || "?"),
    el("br"), el("span", { className: "muted" }, e.occurred_at ? stamp(e.occurred_at) + " · " + relative(e.occurred_at) : "—"))));
}

function renderSweep() {
  const s = state.last_sweep;
  if (!s) { $("sweep-result").textContent = "No sweep yet."; return; }
  const parts = ["Last sweep at " + stamp(s.at) + " (" + relative(s.at) + "): " + s.due + " due, " + s.sent + " sent to the worker" + (s.failures ? ", " + s.failures + " crashed" : "") + "."];
  for (const o of s.outcomes || []) {
    parts.push((o.display_name || o.connection_id) + " → " + (STATUS_TEXT[o.status] || o.status) + (o.last_refresh && o.last_refresh.outcome ? " (" + o.last_refresh.outcome + (o.last_refresh.reason ? ": " + o.last_refresh.reason : "") + ")" : "") + ".");
  }
  if (!s.sent) parts.push("Nothing was due: advance the clock past a connection's next refresh first.");
  $("sweep-result").textContent = parts.join(" ");
}

async function load() {
  if (loading) { loadAgain = true; return; }  // the running load goes round once more: never a stale view
  loading = true;
  try {
    do {
      loadAgain = false;
      state = await api("GET", "/state");
      renderClock();
      renderProviders();
      renderConnections();
      renderTikTok();
      renderEvents();
      renderSweep();
      if (lastOutcome && lastOutcome.data.status === "connected") showOutcome(lastOutcome.data);
    } while (loadAgain);
    document.body.dataset.ready = "true";
  } catch (error) {
    $("connections").replaceChildren(el("p", { className: "bad" }, "The local stack doesn't answer (" + error.message + "). Is `make dev` still running?"));
  } finally {
    loading = false;
  }
}

// -- actions -----------------------------------------------------------------------------------------------------
function refreshNow(button, where, c) {
  return withButton(button, where, async () => {
    try {
      const answer = await api("POST", "/connections/" + encodeURIComponent(c.connection_id) + "/refresh");
      const now = answer.connection;
      notice(where, "Refresh: " + answer.result + " — " + (STATUS_TEXT[now.status] || now.status) + (now.last_refresh.reason ? " (" + now.last_refresh.reason + ")" : "") + ".");
    } catch (error) {
      if (error.status === 409) throw new Error(say("TikTok no longer accepts this connection: the user must reconnect. (", c.provider) + error.message + ")");
      if (error.status === 503) throw new Error(say("TikTok couldn't refresh it just now; the keeper will retry. (", c.provider) + error.message + ")");
      throw error;
    }
  });
}

function disconnect(button, where, c) {
  return withButton(button, where, async () => {
    await api("DELETE", "/connections/" + encodeURIComponent(c.connection_id));
    notice(where, (c.display_name || "The account") + say(" is disconnected: its access was revoked at TikTok (retried for a day if TikTok fails) and its tokens erased.", c.provider));
  });
}

function simAction(button, action, body, message) {
  return withButton(button, "tiktok", async () => {
    await api("POST", "/tiktok/" + action, body);
    notice("tiktok", message);
  });
}

function advanceClock(button) {
  const seconds = Number(button.dataset.seconds);
  return withButton(button, "keeper", async () => {
    await api("POST", "/clock", { seconds });
    notice("keeper", "Clock moved forward " + duration(seconds) + ". Run a sweep to let the keeper catch up.");
  });
}

function runSweep(button) {
  return withButton(button, "keeper", async () => {
    await api("POST", "/sweep", {});
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect-popup").addEventListener("click", (e) => connectInPopup(e.currentTarget));
  for (const id of ["advance-1h", "advance-1d", "advance-30d"]) $(id).addEventListener("click", (e) => advanceClock(e.currentTarget));
  $("sweep").addEventListener("click", (e) => runSweep(e.currentTarget));
  $("set-outage").addEventListener("click", (e) => {
    const kind = $("outage").value || null;
    simAction(e.currentTarget, "outage", { kind }, kind ? "TikTok now fails with " + kind + "." : "TikTok is healthy again.");
  });
  $("fail-next").addEventListener("click", (e) => {
    const kind = $("fail-kind").value;
    simAction(e.currentTarget, "fail-next", { n: 1, kind }, "TikTok's next token call will fail with " + kind + ".");
  });
  const fromRedirect = redirectResult();  // the claim code leaves the address bar at once (replaceState)
  let connecting = DEFAULT_PROVIDER;
  try {
    connecting = sessionStorage.getItem(CONNECTING_KEY) || DEFAULT_PROVIDER;
    sessionStorage.removeItem(CONNECTING_KEY);
  } catch (_) { /* storage off */ }
  $("connect-tab").addEventListener("click", () => {
    try { sessionStorage.setItem(CONNECTING_KEY, DEFAULT_PROVIDER); } catch (_) { /* storage off */ }
  });
  if (fromRedirect) settle(fromRedirect, connecting); else load();
  setInterval(() => { if (!document.hidden) load(); }, 2000);
});
