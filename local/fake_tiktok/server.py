"""The simulated TikTok's HTTP side: routes each request to the authority, the fault controls, the consent pages or
the admin API, and serves the answers over loopback with a ThreadingHTTPServer."""

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from .admin import Admin
from .authority import USER_FIELDS, Authority, AuthorizeError, OAuthError
from .consent import AUTHORIZE_PARAMS, consent_page, error_page
from .faults import Faults
from .wire import (
    BadRequest,
    OAuthErrors,
    Response,
    html_response,
    json_response,
    log_id,
    redirect,
    single_values,
    userinfo_error,
)

AUTHORIZE_PATH = "/v2/auth/authorize/"
TOKEN_PATH = "/v2/oauth/token/"
REVOKE_PATH = "/v2/oauth/revoke/"
USERINFO_PATH = "/v2/user/info/"
ADMIN_PREFIX = "/_sim/"

_Route = Callable[[str, dict[str, str], bytes], Response]


def authorize_params(authorize_url: str) -> dict[str, str]:
    """An authorize URL's parameters, read as the authorize endpoint reads them (to consent without a browser)."""
    parts = urlsplit(authorize_url)
    if parts.path != AUTHORIZE_PATH:
        raise AuthorizeError("invalid_request", f"not an authorize URL (path {parts.path!r})")
    try:
        return single_values(parts.query)
    except BadRequest as exc:
        raise AuthorizeError("invalid_request", str(exc)) from None


class Endpoints:
    """TikTok's authorize, token, revoke and user-info endpoints, and the admin API, behind one `handle`.

    Parsing requests and shaping answers happens here; what to answer is the authority's decision, unless a
    fault gets there first. `app_name` is a plain attribute: it only changes what the consent page says.
    """

    def __init__(
        self,
        *,
        authority: Authority,
        faults: Faults,
        oauth_error: OAuthErrors,
        admin: Admin,
        stats: Counter[str],
        lock: threading.RLock,
        app_name: str,
    ):
        self.app_name = app_name
        self._authority = authority
        self._faults = faults
        self._oauth_error = oauth_error
        self._admin = admin
        self._stats = stats
        self._lock = lock
        self._routes: dict[tuple[str, str], _Route] = {
            ("GET", AUTHORIZE_PATH): self._authorize_page,
            ("POST", AUTHORIZE_PATH): self._authorize_submit,
            ("POST", TOKEN_PATH): self._token,
            ("POST", REVOKE_PATH): self._revoke,
            ("GET", USERINFO_PATH): self._userinfo,
        }

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request; the socket handler is only a thin adapter around this."""
        path, _, query = target.partition("?")
        lowered = {k.lower(): v for k, v in headers.items()}
        route = self._routes.get((method, path))
        if route is not None:
            return route(query, lowered, body)
        if path.startswith(ADMIN_PREFIX):
            return self._admin.handle(method, path, body)
        if any(p == path for _, p in self._routes):
            return json_response(405, {"error": "invalid_request", "error_description": f"{method} not allowed"})
        return json_response(404, {"error": "not_found", "error_description": f"no such endpoint: {path}"})

    # ---- authorize: the consent page and its form ------------------------------------------------

    def _authorize_page(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        try:
            params = single_values(query)
            with self._lock:
                req = self._authority.check_authorize(params)
                scope_error = self._authority.scope_error(req)
        except (AuthorizeError, BadRequest) as exc:
            return self._error_page(exc)
        if scope_error:
            return redirect(scope_error)
        page = consent_page(
            req,
            app_name=self.app_name,
            users=self._authority.users,
            preselect=params.get("user", ""),
            form_action=AUTHORIZE_PATH,
        )
        return html_response(200, page)

    def _authorize_submit(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        # Read leniently, like a browser's form post; consent() then checks everything the page checked,
        # so a forged post gains nothing.
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {name: form[name][-1] for name in AUTHORIZE_PARAMS if name in form}
        action = form.get("action", ["cancel"])[-1]
        try:
            return redirect(
                self._authority.consent(params, action, form.get("user", [""])[-1], form.get("granted", []))
            )
        except AuthorizeError as exc:
            return self._error_page(exc)

    def _error_page(self, exc: Exception) -> Response:
        error, description = (
            (exc.error, exc.description) if isinstance(exc, AuthorizeError) else ("invalid_request", str(exc))
        )
        self._stats["authorize_errors"] += 1
        return html_response(400, error_page(error, description))

    # ---- token and revoke ------------------------------------------------------------------------

    def _token(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        with self._lock:
            self._stats["token_requests"] += 1
            fault = self._faults.take_token_fault()
        self._faults.hold(self._faults.latency)
        if fault:
            return self._faults.token_answer(fault)
        try:
            answer = self._authority.token(self._client_form(headers, body))
        except OAuthError as exc:
            return self._oauth_error(exc.error, exc.description)
        change = self._faults.take_change()
        return change.apply(answer, self._faults) if change else json_response(200, answer)

    def _revoke(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        fault = self._faults.outage
        if fault:
            return self._faults.token_answer(fault)  # same host as the token endpoint, so the same outage
        try:
            self._authority.revoke(self._client_form(headers, body))
        except OAuthError as exc:
            return self._oauth_error(exc.error, exc.description)
        return json_response(200, {"error": "", "error_description": "", "log_id": log_id()})

    def _client_form(self, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The form body of a token or revoke request, once the client's credentials in it check out."""
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        try:
            form = single_values(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "body is not UTF-8") from None
        except BadRequest as exc:
            raise OAuthError("invalid_request", str(exc)) from None
        self._authority.authenticate_client(form)
        return form

    # ---- user info -------------------------------------------------------------------------------

    def _userinfo(self, query: str, headers: dict[str, str], body: bytes) -> Response:
        with self._lock:
            self._stats["userinfo_requests"] += 1
            fault = self._faults.outage
        if fault:
            return self._faults.userinfo_answer(fault)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        user = self._authority.user_for_access_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return userinfo_error(
                401, "access_token_invalid", "The access token is invalid or not found in the request."
            )
        try:
            fields = [f for f in single_values(query).get("fields", "").split(",") if f]
        except BadRequest as exc:
            return userinfo_error(400, "invalid_params", str(exc))
        unknown = [f for f in fields if f not in USER_FIELDS]
        if not fields or unknown:
            return userinfo_error(400, "invalid_params", f"invalid fields: {','.join(unknown) or '(none)'}")
        return json_response(
            200,
            {
                "data": {"user": {f: getattr(user, f) for f in fields}},
                "error": {"code": "ok", "message": "", "log_id": log_id()},
            },
        )


# ---- the loopback server -------------------------------------------------------------------------


class _App(Protocol):
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response: ...


class _Handler(BaseHTTPRequestHandler):
    app: _App  # bound per server by LoopbackServer.start()
    server_version = "FakeTikTok/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test and demo output clean

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # Looked up per request, so a wrapper set on the app's instance (a benchmark's timer) sees every call.
            response = self.app.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # a bug in the simulator: answer it rather than print a traceback
            response = json_response(500, {"error": "server_error", "error_description": f"simulator bug: {exc!r}"})
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


class LoopbackServer:
    """Serves an app's `handle` over HTTP from a daemon thread, one thread per request."""

    def __init__(self, app: _App):
        self._app = app
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""  # stays set after stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("FakeTikTok is not started")
        return self._base_url

    def start(self, host: str, port: int) -> None:
        handler = type("FakeTikTokHandler", (_Handler,), {"app": self._app})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-tiktok", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
