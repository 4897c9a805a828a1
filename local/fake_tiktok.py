"""Simulated TikTok OAuth v2 (Login Kit) server over loopback, with fault injection, for demos and tests."""

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

AUTHORIZE_PATH = "/v2/auth/authorize/"
TOKEN_PATH = "/v2/oauth/token/"
REVOKE_PATH = "/v2/oauth/revoke/"
USERINFO_PATH = "/v2/user/info/"

BASIC_SCOPE = "user.info.basic"
KNOWN_SCOPES = (
    BASIC_SCOPE,
    "user.info.profile",
    "user.info.stats",
    "video.list",
    "video.upload",
    "video.publish",
)
USER_FIELDS = ("open_id", "union_id", "avatar_url", "display_name")
PKCE_MODES = ("none", "s256", "s256-hex")
FAULT_KINDS = ("5xx", "temporarily_unavailable", "timeout", "429")

# The OAuth parameters the consent form carries through as hidden fields.
AUTHORIZE_PARAMS = (
    "client_key",
    "response_type",
    "scope",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "disable_auto_auth",
)


@dataclass
class TikTokUser:
    open_id: str
    union_id: str
    display_name: str
    avatar_url: str


@dataclass
class Grant:
    """One user's consent to the app and the tokens currently issued for it."""

    open_id: str
    scopes: list[str]
    access_token: str = ""
    access_expires_at: float = 0.0
    refresh_token: str = ""
    refresh_expires_at: float = 0.0
    revoked: bool = False
    rotated_refresh_tokens: list[str] = field(default_factory=list)


@dataclass
class _AuthCode:
    open_id: str
    scopes: list[str]
    redirect_uri: str
    code_challenge: str
    pkce_mode: str  # the mode in force at authorize time, so a later switch can't change the check
    expires_at: float
    used: bool = False


@dataclass
class _AuthRequest:
    params: dict[str, str]
    redirect_uri: str
    state: str
    scopes: list[str]


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def json(self) -> Any:
        return json.loads(self.body)


class AuthorizeError(Exception):
    """An authorize request TikTok answers with its own error page instead of redirecting back."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class _BadRequest(Exception):
    pass


def _log_id() -> str:
    # TikTok log ids are timestamp-prefixed hex; support asks for them, so clients must keep them.
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def _json(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def _html(status: int, page: str) -> Response:
    return Response(
        status, page.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    )


def _redirect(location: str) -> Response:
    return Response(302, b"", {"Location": location, "Cache-Control": "no-store"})


def _single_values(query: str) -> dict[str, str]:
    """Parse a query or form body; a repeated parameter is a malformed request (RFC 6749 section 3.1)."""
    parsed = parse_qs(query, keep_blank_values=True)
    repeated = [name for name, values in parsed.items() if len(values) > 1]
    if repeated:
        raise _BadRequest(f"parameter repeated: {', '.join(repeated)}")
    return {name: values[0] for name, values in parsed.items()}


def _append_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


def _new_code() -> str:
    # Real codes carry '*' and '!'; '%XX' and '+' make any double decode or missing encode fail the exchange.
    t = secrets.token_urlsafe
    return f"{t(12)}*{t(9)}!{t(6)}%{secrets.token_hex(1).upper()}~{t(6)}+{t(3)}"


def pkce_challenge(verifier: str, mode: str) -> str:
    """The code_challenge for a verifier: TikTok's hex digest ("s256-hex") or RFC 7636 base64url ("s256")."""
    digest = hashlib.sha256(verifier.encode()).digest()
    if mode == "s256-hex":
        return digest.hex()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class FakeTikTok:
    """TikTok's authorize, token, revoke and user-info endpoints, with knobs to make them misbehave."""

    def __init__(
        self,
        *,
        client_key: str = "sim-client-key",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a simulator's well-known secret
        redirect_uris: tuple[str, ...] | list[str] = (),
        clock: Callable[[], float] = time.time,
        access_ttl: int = 7200,
        refresh_ttl: int = 180 * 86400,
        code_ttl: int = 600,
        pkce: str = "s256-hex",
        extend_refresh_on_rotation: bool = False,
        revoke_grant_on_reuse: bool = True,
        single_grant_per_user: bool = False,
        error_status: int = 200,
        app_name: str = "Demo Scheduler",
    ):
        if pkce not in PKCE_MODES:
            raise ValueError(f"pkce must be one of {PKCE_MODES}")
        self.client_key = client_key
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.code_ttl = code_ttl
        self.pkce = pkce
        self.extend_refresh_on_rotation = extend_refresh_on_rotation
        self.revoke_grant_on_reuse = revoke_grant_on_reuse
        # The open question in design.md: does a new consent kill the user's older grant for this app?
        self.single_grant_per_user = single_grant_per_user
        self.error_status = error_status
        self.app_name = app_name
        self.latency = 0.0
        self.timeout_delay = 3.0
        self.stats: Counter[str] = Counter()
        self.users: dict[str, TikTokUser] = {}
        for handle, name in (("alice", "Alice Example"), ("bob", "Bob Example"), ("carol", "Carol Example")):
            self.add_user(handle, name)

        self._lock = threading.RLock()
        self._codes: dict[str, _AuthCode] = {}
        self._grants: list[Grant] = []
        self._by_refresh: dict[str, Grant] = {}  # current and rotated-away tokens, so reuse is recognised
        self._by_access: dict[str, tuple[Grant, float]] = {}  # older access tokens live until they expire
        self._outage: str | None = None
        self._fail_queue: list[str] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeTikTok":
        handler = type("FakeTikTokHandler", (_Handler,), {"sim": self})
        self._stopping.clear()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-tiktok", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests held by latency or a "timeout" fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeTikTok":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("FakeTikTok is not started")
        return self._base_url

    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def revoke_url(self) -> str:
        return self.base_url + REVOKE_PATH

    @property
    def userinfo_url(self) -> str:
        return self.base_url + USERINFO_PATH

    # ---- users and faults ------------------------------------------------------------------------

    def add_user(self, handle: str, display_name: str | None = None) -> TikTokUser:
        """Add a TikTok account; open_id is per app (derived from client_key), union_id per developer."""
        app_digest = hashlib.sha256(f"{self.client_key}/{handle}".encode()).digest()
        user = TikTokUser(
            open_id="-000" + base64.urlsafe_b64encode(app_digest).decode()[:32],
            union_id=hashlib.sha256(f"union/{handle}".encode()).hexdigest()[:32],
            display_name=display_name or handle.title(),
            avatar_url=f"https://p16-sign.tiktokcdn.example/avatar/{handle}.jpeg",
        )
        self.users[handle] = user
        return user

    def set_outage(self, kind: str | None) -> None:
        """Make the token, user-info and revoke endpoints fail with `kind` until cleared with None."""
        if kind is not None and kind not in FAULT_KINDS:
            raise ValueError(f"outage kind must be None or one of {FAULT_KINDS}")
        with self._lock:
            self._outage = kind

    def clear_faults(self) -> None:
        """No outage and no queued failures: TikTok behaves again from the next request."""
        with self._lock:
            self._outage = None
            self._fail_queue.clear()

    def fail_next(self, n: int, kind: str) -> None:
        """The next n token-endpoint requests fail with `kind`, then it behaves again."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._fail_queue.extend([kind] * n)

    def revoke_user(self, open_id: str) -> int:
        """The user removes the app inside TikTok: every grant and pending code of theirs dies."""
        with self._lock:
            for code in self._codes.values():
                if code.open_id == open_id:
                    code.used = True
            live = [g for g in self._grants if g.open_id == open_id and not g.revoked]
            for grant in live:
                grant.revoked = True
            return len(live)

    def expire_refresh_token(self, open_id: str) -> int:
        """Make the user's current refresh token(s) already expired, as when their 180 days run out."""
        with self._lock:
            now = self.clock()
            live = [g for g in self._grants if g.open_id == open_id and not g.revoked]
            for grant in live:
                grant.refresh_expires_at = now - 1
            return len(live)

    def rotate_client_secret(self, new_secret: str) -> None:
        with self._lock:
            self.client_secret = new_secret

    def grants_for(self, open_id: str) -> list[Grant]:
        """Snapshots of the user's live grants: not revoked, refresh token not expired."""
        with self._lock:
            now = self.clock()
            return [
                replace(g, scopes=list(g.scopes), rotated_refresh_tokens=list(g.rotated_refresh_tokens))
                for g in self._grants
                if g.open_id == open_id and not g.revoked and now < g.refresh_expires_at
            ]

    def signed_webhook(
        self,
        open_id: str,
        reason: int = 1,
        event: str = "authorization.removed",
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery TikTok would send: raw body and its TikTok-Signature header."""
        t = int(self.clock()) if timestamp is None else timestamp
        body = json.dumps(
            {
                "client_key": self.client_key,
                "event": event,
                "create_time": t,
                "user_openid": open_id,
                "content": json.dumps({"reason": reason}),  # TikTok sends content as a JSON string
            }
        ).encode()
        signature = hmac.new(self.client_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "TikTok-Signature": f"t={t},s={signature}"}

    # ---- the consent flow, shared by the HTTP handlers and approve()/deny() ----------------------

    def approve(self, authorize_url: str, user: str = "alice", scopes: list[str] | None = None) -> str:
        """Consent as `user` without a browser; returns the Location TikTok would redirect to.

        scopes=None grants everything requested. Raises AuthorizeError where TikTok would show its error page.
        """
        return self._consent(self._authorize_query(authorize_url), "authorize", user, scopes)

    def deny(self, authorize_url: str) -> str:
        """Press Cancel on the consent page; returns the Location (error=access_denied)."""
        return self._consent(self._authorize_query(authorize_url), "cancel", None, None)

    @staticmethod
    def _authorize_query(authorize_url: str) -> dict[str, str]:
        parts = urlsplit(authorize_url)
        if parts.path != AUTHORIZE_PATH:
            raise AuthorizeError("invalid_request", f"not an authorize URL (path {parts.path!r})")
        try:
            return _single_values(parts.query)
        except _BadRequest as exc:
            raise AuthorizeError("invalid_request", str(exc)) from None

    def _check_authorize(self, params: dict[str, str]) -> _AuthRequest:
        # Mistakes here cannot be reported to the app: TikTok shows its own page and never redirects.
        if not hmac.compare_digest(params.get("client_key", "").encode(), self.client_key.encode()):
            raise AuthorizeError("invalid_client", "client_key is not valid")
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_uri_registered(redirect_uri):
            raise AuthorizeError("invalid_request", "redirect_uri is not registered for this app")
        if params.get("response_type") != "code":
            raise AuthorizeError("unsupported_response_type", "response_type must be code")
        if not params.get("state"):
            raise AuthorizeError("invalid_request", "state is required")
        if params.get("code_challenge"):
            if params.get("code_challenge_method") != "S256":
                raise AuthorizeError("invalid_request", "code_challenge_method must be S256")
        elif self.pkce != "none":
            raise AuthorizeError("invalid_request", "code_challenge is required")
        scopes = params.get("scope", "").split(",") if params.get("scope") else []
        return _AuthRequest(params, redirect_uri, params["state"], scopes)

    def _redirect_uri_registered(self, uri: str) -> bool:
        if self.redirect_uris:
            # Exact match, as TikTok does: no prefix matching, no trailing-slash leniency.
            return uri in self.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    @staticmethod
    def _scope_error(req: _AuthRequest) -> str | None:
        unknown = [s for s in req.scopes if s not in KNOWN_SCOPES]
        if not req.scopes or unknown:
            detail = f"unknown scope(s): {', '.join(unknown)}" if unknown else "scope is required"
            return _append_query(
                req.redirect_uri, {"error": "invalid_scope", "error_description": detail, "state": req.state}
            )
        return None

    def _consent(
        self, params: dict[str, str], action: str, user: str | None, granted: list[str] | None
    ) -> str:
        """Validate like the consent page, then answer the user's choice with the callback Location."""
        with self._lock:
            req = self._check_authorize(params)
            scope_error = self._scope_error(req)
            if scope_error:
                return scope_error
            if action != "authorize":
                self.stats["denials"] += 1
                return _append_query(
                    req.redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "The user denied the authorization request",
                        "state": req.state,
                    },
                )
            account = self._find_user(user or "")
            if account is None:
                raise AuthorizeError("invalid_request", f"no such TikTok user: {user!r}")
            requested = set(req.scopes) | {BASIC_SCOPE}
            chosen = req.scopes if granted is None else granted
            extra = [s for s in chosen if s not in requested]
            if extra:
                raise AuthorizeError("invalid_scope", f"scopes granted but not requested: {', '.join(extra)}")
            # user.info.basic is always granted; keep the requested order for the rest.
            scopes = [BASIC_SCOPE] + [
                s for s in dict.fromkeys(req.scopes) if s in chosen and s != BASIC_SCOPE
            ]
            code = _new_code()
            self._codes[code] = _AuthCode(
                open_id=account.open_id,
                scopes=scopes,
                redirect_uri=req.redirect_uri,
                code_challenge=params.get("code_challenge", ""),
                pkce_mode=self.pkce,
                expires_at=self.clock() + self.code_ttl,
            )
            self.stats["authorizations"] += 1
            return _append_query(
                req.redirect_uri, {"code": code, "scopes": ",".join(scopes), "state": req.state}
            )

    def _find_user(self, name: str) -> TikTokUser | None:
        if name in self.users:
            return self.users[name]
        return next((u for u in self.users.values() if u.open_id == name), None)

    # ---- HTTP routing ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request; the socket handler is only a thin adapter around this."""
        path, _, query = target.partition("?")
        lowered = {k.lower(): v for k, v in headers.items()}
        routes: dict[tuple[str, str], Callable[[str, dict[str, str], bytes], Response]] = {
            ("GET", AUTHORIZE_PATH): self._authorize_page,
            ("POST", AUTHORIZE_PATH): self._authorize_submit,
            ("POST", TOKEN_PATH): self._token,
            ("POST", REVOKE_PATH): self._revoke,
            ("GET", USERINFO_PATH): self._userinfo,
        }
        route = routes.get((method, path))
        if route is not None:
            return route(query, lowered, body)
        if path.startswith("/_sim/"):
            return self._admin(method, path, body)
        if any(p == path for _, p in routes):
            return _json(405, {"error": "invalid_request", "error_description": f"{method} not allowed"})
        return _json(404, {"error": "not_found", "error_description": f"no such endpoint: {path}"})

    def _authorize_page(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        try:
            params = _single_values(query)
            with self._lock:
                req = self._check_authorize(params)
                scope_error = self._scope_error(req)
        except (AuthorizeError, _BadRequest) as exc:
            return self._error_page(exc)
        if scope_error:
            return _redirect(scope_error)
        return _html(200, self._consent_page(req, preselect=params.get("user", "")))

    def _authorize_submit(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {name: form[name][-1] for name in AUTHORIZE_PARAMS if name in form}
        action = form.get("action", ["cancel"])[-1]
        try:
            return _redirect(
                self._consent(params, action, form.get("user", [""])[-1], form.get("granted", []))
            )
        except AuthorizeError as exc:
            return self._error_page(exc)

    def _error_page(self, exc: Exception) -> Response:
        error, description = (
            (exc.error, exc.description) if isinstance(exc, AuthorizeError) else ("invalid_request", str(exc))
        )
        self.stats["authorize_errors"] += 1
        return _html(
            400,
            (
                '<!doctype html><html><head><meta charset="utf-8">'
                "<title>TikTok - Something went wrong</title>"
                "</head><body><h1>Something went wrong</h1>"
                "<p>We couldn't log in with TikTok.</p>"
                f'<p>Error: <code id="error">{html.escape(error)}</code></p>'
                f'<p id="error-description">{html.escape(description)}</p>'
                f"<p>log_id: {_log_id()}</p></body></html>"
            ),
        )

    def _consent_page(self, req: _AuthRequest, preselect: str) -> str:
        e = html.escape
        hidden = "".join(
            f'<input type="hidden" name="{e(name)}" value="{e(req.params[name])}">'
            for name in AUTHORIZE_PARAMS
            if name in req.params
        )
        options = "".join(
            f'<option value="{e(handle)}"{" selected" if preselect in (handle, u.open_id) else ""}>'
            f"{e(u.display_name)} (@{e(handle)})</option>"
            for handle, u in self.users.items()
        )
        boxes = [
            f'<label><input type="checkbox" id="scope-{BASIC_SCOPE}" checked disabled> {BASIC_SCOPE}'
            " (always shared)</label><br>"
        ]
        boxes += [
            f'<label><input type="checkbox" id="scope-{e(s)}" name="granted" value="{e(s)}" checked> '
            f"{e(s)}</label><br>"
            for s in dict.fromkeys(req.scopes)
            if s != BASIC_SCOPE
        ]
        # No JavaScript: a plain form whose two submit buttons tell Authorize from Cancel.
        return (
            '<!doctype html><html><head><meta charset="utf-8">'
            f"<title>TikTok - Authorize {e(self.app_name)}</title></head><body>"
            f"<h1>{e(self.app_name)} would like to access your TikTok account</h1>"
            f'<form method="post" action="{AUTHORIZE_PATH}">{hidden}'
            f'<p><label for="user">Log in as</label> <select id="user" name="user">{options}</select></p>'
            f"<fieldset><legend>{e(self.app_name)} will be able to</legend>{''.join(boxes)}</fieldset>"
            f"<p>You will be sent back to {e(req.redirect_uri)}</p>"
            '<button type="submit" id="authorize" name="action" value="authorize">Authorize</button> '
            '<button type="submit" id="cancel" name="action" value="cancel">Cancel</button>'
            "</form></body></html>"
        )

    # ---- token endpoint --------------------------------------------------------------------------

    def _token(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        with self._lock:
            self.stats["token_requests"] += 1
            fault = self._fail_queue.pop(0) if self._fail_queue else self._outage
        self._hold(self.latency)
        if fault:
            return self._token_fault(fault)
        form, refused = self._client_form(headers, body)
        if refused:
            return refused
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        if not grant_type:
            return self._oauth_error("invalid_request", "grant_type is required")
        return self._oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    @staticmethod
    def _token_form(headers: dict[str, str], body: bytes) -> dict[str, str]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _BadRequest("Content-Type must be application/x-www-form-urlencoded")
        try:
            return _single_values(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise _BadRequest("body is not UTF-8") from None

    def _exchange_code(self, form: dict[str, str]) -> Response:
        for required in ("code", "redirect_uri"):
            if not form.get(required):
                return self._oauth_error("invalid_request", f"{required} is required")
        with self._lock:
            self.stats["code_exchanges"] += 1
            now = self.clock()
            code = self._codes.get(form["code"])
            if code is None:
                return self._oauth_error("invalid_grant", "authorization code is invalid")
            if code.used:
                return self._oauth_error("invalid_grant", "authorization code has been used")
            if now >= code.expires_at:
                return self._oauth_error("invalid_grant", "authorization code is expired")
            if form["redirect_uri"] != code.redirect_uri:
                return self._oauth_error("invalid_grant", "redirect_uri does not match the authorize request")
            if code.code_challenge:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    return self._oauth_error("invalid_request", "code_verifier is required")
                # "none" mode only means a challenge is optional; one that was sent is checked per RFC 7636.
                mode = "s256" if code.pkce_mode == "none" else code.pkce_mode
                if not hmac.compare_digest(pkce_challenge(verifier, mode), code.code_challenge):
                    return self._oauth_error("invalid_grant", "code_verifier does not match code_challenge")
            code.used = True
            if self.single_grant_per_user:
                for older in self._grants:
                    if older.open_id == code.open_id:
                        older.revoked = True
            grant = Grant(open_id=code.open_id, scopes=code.scopes, refresh_expires_at=now + self.refresh_ttl)
            self._grants.append(grant)
            self._issue_tokens(grant, now)
            self.stats["code_exchange_successes"] += 1
            return self._token_success(grant, now)

    def _refresh(self, form: dict[str, str]) -> Response:
        token = form.get("refresh_token", "")
        if not token:
            return self._oauth_error("invalid_request", "refresh_token is required")
        with self._lock:
            self.stats["refreshes"] += 1
            now = self.clock()
            grant = self._by_refresh.get(token)
            if grant is None:
                return self._oauth_error("invalid_grant", "refresh_token is invalid")
            if grant.revoked:
                return self._oauth_error("invalid_grant", "refresh_token is revoked")
            if token != grant.refresh_token:
                self.stats["refresh_reuses"] += 1
                if self.revoke_grant_on_reuse:
                    grant.revoked = True  # a replayed token may be stolen: kill the whole grant
                return self._oauth_error("invalid_grant", "refresh_token has been rotated")
            if now >= grant.refresh_expires_at:
                return self._oauth_error("invalid_grant", "refresh_token is expired")
            grant.rotated_refresh_tokens.append(grant.refresh_token)
            if self.extend_refresh_on_rotation:
                grant.refresh_expires_at = now + self.refresh_ttl
            self._issue_tokens(grant, now)
            self.stats["refresh_successes"] += 1
            return self._token_success(grant, now)

    def _issue_tokens(self, grant: Grant, now: float) -> None:
        grant.access_token = "act." + secrets.token_urlsafe(32)
        grant.access_expires_at = now + self.access_ttl
        grant.refresh_token = "rft." + secrets.token_urlsafe(32)
        self._by_access[grant.access_token] = (grant, grant.access_expires_at)
        self._by_refresh[grant.refresh_token] = grant

    def _token_success(self, grant: Grant, now: float) -> Response:
        return _json(
            200,
            {
                "access_token": grant.access_token,
                "expires_in": int(self.access_ttl),
                "open_id": grant.open_id,
                "refresh_token": grant.refresh_token,
                "refresh_expires_in": max(0, int(grant.refresh_expires_at - now)),
                "scope": ",".join(grant.scopes),
                "token_type": "Bearer",
            },
        )

    def _oauth_error(self, error: str, description: str, status: int | None = None) -> Response:
        self.stats["token_errors"] += 1
        log_id = _log_id()
        return _json(
            self.error_status if status is None else status,
            {"error": error, "error_description": description, "log_id": log_id},
            {"X-Tt-Logid": log_id},
        )

    def _token_fault(self, kind: str) -> Response:
        self.stats["faults_injected"] += 1
        if kind == "timeout":
            self._hold(self.timeout_delay)
        if kind == "429":
            response = self._oauth_error("rate_limit_exceeded", "Too many requests (simulated)", 429)
        elif kind == "temporarily_unavailable":
            # An OAuth error code, not an HTTP one: clients must classify by body, whatever the status.
            response = self._oauth_error("temporarily_unavailable", "Service temporarily unavailable (simulated)")
        else:
            response = self._oauth_error("server_error", f"Internal error (simulated {kind})", 503)
        # Lets an in-process transport turn a "timeout" into a client-side timeout without waiting.
        response.headers["X-Sim-Fault"] = kind
        return response

    def _hold(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # stop() releases held requests at once

    # ---- user info and revoke --------------------------------------------------------------------

    def _userinfo(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        with self._lock:
            self.stats["userinfo_requests"] += 1
            fault = self._outage
        if fault:
            return self._userinfo_fault(fault)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        with self._lock:
            grant, expires_at = self._by_access.get(token.strip(), (None, 0.0))
            if scheme.lower() != "bearer" or grant is None or grant.revoked or self.clock() >= expires_at:
                return self._userinfo_error(
                    401, "access_token_invalid", "The access token is invalid or not found in the request."
                )
            user = next(u for u in self.users.values() if u.open_id == grant.open_id)
        try:
            fields = [f for f in _single_values(query).get("fields", "").split(",") if f]
        except _BadRequest as exc:
            return self._userinfo_error(400, "invalid_params", str(exc))
        unknown = [f for f in fields if f not in USER_FIELDS]
        if not fields or unknown:
            return self._userinfo_error(
                400, "invalid_params", f"invalid fields: {','.join(unknown) or '(none)'}"
            )
        return _json(
            200,
            {
                "data": {"user": {f: getattr(user, f) for f in fields}},
                "error": {"code": "ok", "message": "", "log_id": _log_id()},
            },
        )

    def _userinfo_error(self, status: int, code: str, message: str) -> Response:
        return _json(status, {"data": {}, "error": {"code": code, "message": message, "log_id": _log_id()}})

    def _userinfo_fault(self, kind: str) -> Response:
        self.stats["faults_injected"] += 1
        if kind == "timeout":
            self._hold(self.timeout_delay)
        if kind == "429":
            return self._userinfo_error(429, "rate_limit_exceeded", "Too many requests (simulated)")
        code = "temporarily_unavailable" if kind == "temporarily_unavailable" else "internal_error"
        return self._userinfo_error(503, code, f"Service unavailable (simulated {kind})")

    def _client_form(self, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], Response | None]:
        """The form body and, when it must be refused, the answer. Credentials only count in the body:
        TikTok takes no HTTP Basic auth."""
        try:
            form = self._token_form(headers, body)
        except _BadRequest as exc:
            return {}, self._oauth_error("invalid_request", str(exc))
        key_ok = hmac.compare_digest(form.get("client_key", "").encode(), self.client_key.encode())
        secret_ok = hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
        if not (key_ok and secret_ok):
            return form, self._oauth_error("invalid_client", "client_key or client_secret is invalid")
        return form, None

    def _revoke(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        with self._lock:
            fault = self._outage
        if fault:
            return self._token_fault(fault)  # same host as the token endpoint, so the same outage
        form, refused = self._client_form(headers, body)
        if refused:
            return refused
        if not form.get("token"):
            return self._oauth_error("invalid_request", "token is required")
        with self._lock:
            self.stats["revocations"] += 1
            # Unknown or already-dead tokens succeed too (RFC 7009): revoking is idempotent.
            grant, _ = self._by_access.get(form["token"], (None, 0.0))
            if grant is not None:
                grant.revoked = True
        return _json(200, {"error": "", "error_description": "", "log_id": _log_id()})

    # ---- admin endpoints for the local dashboard -------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"{}") if method == "POST" else {}
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            if (method, path) == ("GET", "/_sim/stats"):
                with self._lock:
                    return _json(
                        200,
                        {
                            "stats": dict(self.stats),
                            "outage": self._outage,
                            "fail_next": len(self._fail_queue),
                            "latency": self.latency,
                        },
                    )
            if (method, path) == ("GET", "/_sim/users"):
                return _json(200, {"users": {h: vars(u) for h, u in self.users.items()}})
            if (method, path) == ("POST", "/_sim/outage"):
                self.set_outage(payload.get("kind"))
                return _json(200, {"outage": payload.get("kind")})
            if (method, path) == ("POST", "/_sim/fail-next"):
                self.fail_next(int(payload["n"]), payload["kind"])
                return _json(200, {"fail_next": len(self._fail_queue)})
            if (method, path) == ("POST", "/_sim/latency"):
                self.latency = float(payload["seconds"])
                return _json(200, {"latency": self.latency})
            if (method, path) == ("POST", "/_sim/revoke"):
                return _json(200, {"revoked": self.revoke_user(payload["open_id"])})
            if (method, path) == ("POST", "/_sim/expire-refresh"):
                return _json(200, {"expired": self.expire_refresh_token(payload["open_id"])})
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": "invalid_request", "error_description": str(exc)})
        return _json(404, {"error": "not_found", "error_description": f"no such endpoint: {method} {path}"})


class _Handler(BaseHTTPRequestHandler):
    sim: FakeTikTok  # bound per server by FakeTikTok.start()
    server_version = "FakeTikTok/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test and demo output clean

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            response = self.sim.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # a bug in the simulator: answer it rather than print a traceback
            response = _json(500, {"error": "server_error", "error_description": f"simulator bug: {exc!r}"})
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired during a "timeout" fault)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
