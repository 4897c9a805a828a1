"""`make dev`: the whole of oauth-keeper on http://127.0.0.1:3000 until Ctrl-C, to click through by hand.

One process holds everything:

- the local API Gateway (local/gateway.py): HTTP requests become API Gateway HTTP API (payload 2.0) events for the
  template's routes, handlers run in-process, AWS_IAM routes need a SigV4 signature (unsigned calls get 403);
- the dashboard at /dev/ (static files in local/dashboard/) and its server-side proxy at /dev/api/, which signs
  the IAM calls with the local dummy identity of local/sigv4.py and hands them to the gateway in-process, so no
  credential ever reaches the browser;
- moto in server mode with the template's resources (tables, KMS key, SSM parameters, event bus);
- the simulated TikTok (consent page, token endpoint, /_sim/ fault controls) on its own port;
- every other shipped network (Instagram, Facebook Pages, YouTube, LinkedIn, X, Pinterest, Threads) simulated from
  its profile (local/sim_networks.py) on one more port, each under its own path, with a consent page; all eight
  are enabled (PROVIDERS), each with its client credentials in the local SSM;
- one ManualClock shared by the handlers and every simulated network: "advance the clock" moves them all.

Tests build the same thing on free ports with `start_dev_stack(port=0, tiktok_port=0)` (networks_port too).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
CLIENTS_JS_DIR = Path(__file__).resolve().parent.parent / "clients" / "js"  # connect.js, at /dev/clients/js/
OWNER_ID = "dev-user"  # the dashboard's one (fixed) app user
PROVIDER = "tiktok"
SCOPES = "user.info.basic,video.list,video.publish"
MAX_CLOCK_STEP = 400 * 86400
SIM_ACTIONS = ("outage", "fail-next", "latency", "revoke", "expire-refresh")
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUIET_PATHS = ("/dev/api/state",)  # polled every few seconds: not worth a log line

# The dashboard runs its own script and styles only, talks only to its own origin, and is never framed.
DASHBOARD_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
     "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
]

Answer = tuple[int, list[tuple[str, str]], bytes]


@dataclass
class DevStack:
    """A running local stack. `stop()` (or leaving the `with` block) shuts everything down."""

    base_url: str  # gateway + dashboard origin, e.g. http://127.0.0.1:3000
    moto_url: str
    clock: Any  # local.memory.ManualClock
    tiktok: Any  # local.fake_tiktok.FakeTikTok
    resources: Any  # local.stack.LocalResources
    networks: Any = None  # local.sim_networks.SimulatedNetworks: the other enabled networks
    owner_id: str = OWNER_ID
    _stops: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def dashboard_url(self) -> str:
        return f"{self.base_url}/dev/"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback/{PROVIDER}"

    @property
    def providers(self) -> tuple[str, ...]:
        """The enabled providers, TikTok first: what the dashboard offers to connect."""
        return (PROVIDER, *(self.networks.providers if self.networks is not None else ()))

    def stop(self) -> None:
        self._stops.close()

    def __enter__(self) -> DevStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_dev_stack(port: int = 0, *, tiktok_port: int = 0, networks_port: int = 0, host: str = "127.0.0.1",
                    log: Callable[[str], None] | None = None) -> DevStack:
    """Start moto, the simulated TikTok, the other simulated networks and the gateway + dashboard; port=0 picks
    free ports. Raises OSError when a port is taken.

    The process's environment, the layer's runtime and botocore's DynamoDB calls are set up for the stack's
    life and restored by stop(). One stack per process at a time (the handlers' runtime is process-global).
    """
    stops = ExitStack()
    try:
        return _start(stops, port, tiktok_port, networks_port, host, log)
    except BaseException:
        stops.close()
        raise


def _start(stops: ExitStack, port: int, tiktok_port: int, networks_port: int, host: str,
           log: Callable[[str], None] | None) -> DevStack:
    from werkzeug.serving import make_server

    from local.stack import DUMMY_CREDENTIALS

    # Quiet by default (set POWERTOOLS_LOG_LEVEL=INFO to see every handler's JSON log line).
    _set_env(stops, {"POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                     "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
                     **DUMMY_CREDENTIALS})
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    import logging

    from oauth_keeper.audit import audit_logger

    # A deployed function writes audit records whatever its level (oauth_keeper/audit.py); here the dashboard's
    # polling would fill the console with them, so they follow POWERTOOLS_LOG_LEVEL like the rest.
    stops.callback(audit_logger.setLevel, audit_logger.log_level)
    audit_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])

    werkzeug_log = logging.getLogger("werkzeug")  # moto's server would log every request line
    stops.callback(werkzeug_log.setLevel, werkzeug_log.level)
    werkzeug_log.setLevel(logging.ERROR)

    # 1. The gateway's socket first: its real port is in PUBLIC_BASE_URL, the allowed origins and TikTok's
    #    registered redirect URI.
    app = DevApp()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stops.callback(listener.close)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))  # an OSError (port in use) reaches the caller; werkzeug would sys.exit
    listener.listen(128)
    server = make_server(host, listener.getsockname()[1], app, threaded=True, request_handler=_quiet_handler(),
                         fd=listener.fileno())
    stops.callback(server.server_close)
    base_url = f"http://{host}:{listener.getsockname()[1]}"

    # 2. AWS: a moto server, fresh (moto's state is process-wide, so a previous stack's tables are dropped).
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    moto.start()
    stops.callback(moto.stop)
    moto_host, moto_port = moto.get_host_and_port()
    moto_url = f"http://{moto_host}:{moto_port}"
    _set_env(stops, {"AWS_ENDPOINT_URL": moto_url})
    import httpx

    httpx.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()

    # 3. The simulated TikTok on the shared clock, with our exact redirect URI registered.
    from oauth_keeper import root

    from local.fake_tiktok import FakeTikTok
    from local.memory import ManualClock
    from local.stack import atomic_dynamodb, create_resources, install_from_env

    clock = ManualClock()
    tiktok = FakeTikTok(clock=clock.now, redirect_uris=(f"{base_url}/callback/{PROVIDER}",))
    tiktok.start(host=host, port=tiktok_port)
    stops.callback(tiktok.stop)
    from local.sim_networks import SimulatedNetworks

    networks = SimulatedNetworks(clock=clock.now, public_base_url=base_url).start(host=host, port=networks_port)
    stops.callback(networks.stop)

    # 4. The template's resources, the functions' environment, and the layer wired to them and to the clock.
    def forget_everything() -> None:
        root.reset()

    forget_everything()
    stops.callback(forget_everything)
    stops.enter_context(atomic_dynamodb())  # moto checks conditions without a lock; real DynamoDB is atomic
    resources = create_resources(
        public_base_url=base_url, allowed_return_origins=[base_url], tiktok_base_url=tiktok.base_url,
        client_key=tiktok.client_key, client_secret=tiktok.client_secret, scopes=SCOPES,
        connect_confirmation="required",  # as the template deploys by default: the dashboard claims each connect
    )
    networks.put_credentials(resources.env["SSM_PREFIX"])
    _set_env(stops, {**resources.env, **networks.env(), "PROVIDERS": ",".join((PROVIDER, *networks.providers))})
    install_from_env(clock=clock)

    stack = DevStack(base_url=base_url, moto_url=moto_url, clock=clock, tiktok=tiktok, resources=resources,
                     networks=networks, _stops=stops)
    app.configure(stack, log)

    # 5. Serve. Stopping the server comes first when the stack stops (callbacks run last-in, first-out).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="dev-gateway",
                              daemon=True)
    thread.start()

    def stop_serving() -> None:
        server.shutdown()
        thread.join(timeout=5)
        app.close()

    stops.callback(stop_serving)
    return stack


def _set_env(stops: ExitStack, values: dict[str, str]) -> None:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)

    def restore() -> None:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    stops.callback(restore)


def _quiet_handler():
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        # werkzeug would log every request line, query string included (state, code): never.
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return QuietHandler


# -- the WSGI app: dashboard, its proxy, and the gateway for everything else --------------------------------------
class DevApp:
    def __init__(self) -> None:
        self.stack: DevStack | None = None
        self.log: Callable[[str], None] | None = None
        self._files = {**_files_in(DASHBOARD_DIR), **_files_in(CLIENTS_JS_DIR, "clients/js/")}
        self._events: deque[dict[str, Any]] = deque(maxlen=50)
        self._events_lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        self._last_sweep: dict[str, Any] | None = None
        self._gateway = None
        self._gateway_client = None
        self._sim = None

    def configure(self, stack: DevStack, log: Callable[[str], None] | None) -> None:
        import httpx

        from local.gateway import Gateway

        self.stack, self.log = stack, log
        self._gateway = Gateway(domain=stack.base_url.split("://", 1)[1], log=log)  # refused signatures: why
        # The proxy's calls go to the gateway in-process (a WSGI call), signed like any backend's.
        self._gateway_client = httpx.Client(transport=self._gateway.transport(), base_url=stack.base_url, timeout=60)
        self._sim = httpx.Client(base_url=stack.tiktok.base_url, timeout=10)

    def close(self) -> None:
        for client in (self._gateway_client, self._sim):
            if client is not None:
                client.close()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO") or "/"
        try:
            status, headers, body = self._route(method, path, environ)
        except Exception as exc:  # noqa: BLE001 - a local tool: say what broke rather than hang up
            status, headers, body = _json(500, _error("dev_stack_error", f"{type(exc).__name__}: {exc}"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        if self.log and path not in _QUIET_PATHS:
            # Never the query string: it carries the connect session, OAuth state and code.
            self.log(f"{method:6} {path}  {status}  {(time.perf_counter() - started) * 1000:.0f} ms")
        return [body]

    def _route(self, method: str, path: str, environ: dict[str, Any]) -> Answer:
        assert self.stack is not None and self._gateway is not None
        if path in ("/", "/dev"):
            return 302, [("Location", "/dev/"), ("Cache-Control", "no-store")], b""
        if path == "/dev/connect":  # the full-page "connect in this tab" link
            return self._connect_link(method, environ.get("QUERY_STRING", ""))
        if path.startswith("/dev/api/"):
            return self._api(method, path[len("/dev/api"):], environ)
        if path.startswith("/dev/"):
            return self._static(method, path[len("/dev/"):] or "index.html")
        return self._gateway.handle(environ)

    # -- static files ---------------------------------------------------------------------------------------------
    def _static(self, method: str, name: str) -> Answer:
        file = self._files.get(name)
        if method not in ("GET", "HEAD") or file is None:
            return 404, [("Content-Type", "text/plain; charset=utf-8"), *DASHBOARD_HEADERS], b"Not found"
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return 200, [("Content-Type", kind), *DASHBOARD_HEADERS], file.read_bytes()

    # -- the proxy -------------------------------------------------------------------------------------------------
    def _api(self, method: str, path: str, environ: dict[str, Any]) -> Answer:
        if method not in ("GET", "HEAD"):
            refused = self._refuse_cross_site(environ)
            if refused:
                return refused
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _json(400, _error("invalid_body", "Send a JSON object."))

        if (method, path) == ("GET", "/state"):
            return _json(200, self._state())
        if (method, path) == ("POST", "/connect"):
            return self._create_session(body.get("mode", "popup"), body.get("scopes"), body.get("provider", PROVIDER))
        if (method, path) == ("POST", "/claim"):
            # As an app's backend must: the owner is the dashboard's own user, never one the page sends.
            return self._signed("POST", "/connections/claims",
                                {"claim": body.get("claim"), "owner_id": self.stack.owner_id})
        if (method, path) == ("POST", "/sweep"):
            return _json(200, self._sweep())
        if (method, path) == ("POST", "/clock"):
            return self._advance_clock(body.get("seconds"))
        found = re.fullmatch(r"/connections/([^/]+)(/refresh)?", path)
        if found and _CONNECTION_ID.match(found.group(1)):
            connection_id = found.group(1)
            # As the README asks of an app's backend: scoped to the dashboard's own owner, never one from the page.
            owner = "?" + urlencode({"owner_id": self.stack.owner_id})
            if method == "POST" and found.group(2):
                return self._signed("POST", f"/connections/{connection_id}/refresh{owner}")
            if method == "DELETE" and not found.group(2):
                answer = self._signed("DELETE", f"/connections/{connection_id}{owner}")
                if answer[0] == 202:  # in AWS the refresh worker takes it within seconds: here, at once
                    self._sweep()
                return answer
        found = re.fullmatch(r"/tiktok/([a-z-]+)", path)
        if found and method == "POST" and found.group(1) in SIM_ACTIONS:
            answer = self._sim.post(f"/_sim/{found.group(1)}", json=body)
            return answer.status_code, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], \
                answer.content
        return _json(404, _error("not_found", f"No dashboard endpoint {method} /dev/api{path}."))

    def _refuse_cross_site(self, environ: dict[str, Any]) -> Answer | None:
        """Only the dashboard's own script may change things: a JSON body (other sites' forms cannot send one
        without a CORS preflight, which is never granted) from our own origin."""
        assert self.stack is not None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin != self.stack.base_url:
            return _json(403, _error("cross_origin", "Only the dashboard itself may call this."))
        kind = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            return _json(415, _error("json_required", "Send Content-Type: application/json."))
        return None

    def _signed(self, method: str, path_and_query: str, body: dict[str, Any] | None = None) -> Answer:
        """Call an IAM route as the app's backend would: SigV4-signed (local dummy identity), then pass the
        gateway's answer through unchanged."""
        from local import sigv4

        assert self.stack is not None and self._gateway_client is not None
        url = self.stack.base_url + path_and_query
        content = json.dumps(body).encode() if body is not None else None
        headers = sigv4.sign(method, url, content,
                             headers={"Content-Type": "application/json"} if content is not None else None)
        answer = self._gateway_client.request(method, url, content=content, headers=headers)
        return answer.status_code, [("Content-Type", answer.headers.get("content-type", "application/json")),
                                    ("Cache-Control", "no-store")], answer.content

    def _connect_request(self, mode: str, scopes: Any = None, provider: str = PROVIDER) -> dict[str, Any]:
        assert self.stack is not None
        request: dict[str, Any] = {"owner_id": self.stack.owner_id, "provider": provider,
                                   "return_to": self.stack.dashboard_url, "mode": mode}
        if scopes:
            request["scopes"] = scopes
        return request

    def _unknown_provider(self, provider: Any) -> Answer | None:
        assert self.stack is not None
        if provider in self.stack.providers:
            return None
        return _json(400, _error("invalid_provider", f"provider must be one of {', '.join(self.stack.providers)}."))

    def _create_session(self, mode: Any, scopes: Any, provider: Any = PROVIDER) -> Answer:
        if mode not in ("popup", "redirect"):
            return _json(400, _error("invalid_mode", "mode must be 'popup' or 'redirect'."))
        return self._unknown_provider(provider) or self._signed(
            "POST", "/connect-sessions", self._connect_request(mode, scopes, provider))

    def _connect_link(self, method: str, query: str) -> Answer:
        if method not in ("GET", "HEAD"):
            return _json(405, _error("method_not_allowed", "GET /dev/connect"))
        provider = (parse_qs(query).get("provider") or [PROVIDER])[-1]
        refused = self._unknown_provider(provider)
        if refused:
            return refused
        status, _, body = self._signed("POST", "/connect-sessions", self._connect_request("redirect", None, provider))
        if status != 201:
            return status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body
        return 303, [("Location", json.loads(body)["connect_url"]), ("Cache-Control", "no-store"),
                     ("Referrer-Policy", "no-referrer")], b""

    def _advance_clock(self, seconds: Any) -> Answer:
        assert self.stack is not None
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 < seconds <= MAX_CLOCK_STEP:
            return _json(400, _error("invalid_seconds", f"seconds must be a whole number from 1 to {MAX_CLOCK_STEP}."))
        self.stack.clock.advance(seconds)
        return _json(200, {"now": _iso(self.stack.clock.now()), "advanced_by": seconds})

    def _sweep(self) -> dict[str, Any]:
        """What the schedule does: the sweeper reads the due index into the queue, a worker drains it."""
        from oauth_keeper import root
        from oauth_keeper.usecases.connections import connection_view

        from local.memory import ListQueue
        from local.stack import sweep_into

        with self._sweep_lock:
            svc = root.container()
            queue = ListQueue()
            report = sweep_into(queue, svc)
            records = queue.drain()
            result = svc.refresh_worker.process(records) if records else {"batchItemFailures": []}
            ids = [json.loads(r["body"])["connection_id"] for r in records]
            now = svc.clock.now()
            outcomes = []
            for connection_id in ids:
                connection = svc.connections.get(connection_id)
                if connection is not None:
                    view = connection_view(connection, now)
                    outcomes.append({"connection_id": connection_id, "display_name": view["display_name"],
                                     "status": view["status"], "last_refresh": view["last_refresh"]})
            self._last_sweep = {"at": _iso(now), **report.as_dict(),
                                "failures": len(result["batchItemFailures"]), "outcomes": outcomes}
            return self._last_sweep

    def _state(self) -> dict[str, Any]:
        assert self.stack is not None
        status, _, body = self._signed("GET", "/connections?" + urlencode({"owner_id": self.stack.owner_id,
                                                                           "limit": 100}))
        listing = json.loads(body) if body else {}
        sim_stats = self._sim.get("/_sim/stats").json()
        sim_users = self._sim.get("/_sim/users").json()["users"]
        now = self.stack.clock.now()
        return {
            "owner_id": self.stack.owner_id,
            "now": _iso(now),
            "now_epoch": int(now),
            "connections": listing.get("connections", []) if status == 200 else [],
            "connections_error": None if status == 200 else listing,
            "events": self._recent_events(),
            "providers": self._providers(),
            "last_sweep": self._last_sweep,
            "tiktok": {
                "base_url": self.stack.tiktok.base_url,
                "app_name": self.stack.tiktok.app_name,
                "users": [{"handle": h, "open_id": u["open_id"], "display_name": u["display_name"]}
                          for h, u in sim_users.items()],
                **sim_stats,
            },
        }

    def _providers(self) -> list[dict[str, Any]]:
        """The enabled providers the dashboard offers, TikTok first: name, display name, where it is simulated,
        and (for the profile-simulated networks) what each has answered so far."""
        from oauth_keeper import root

        assert self.stack is not None
        profiles = root.container().profiles
        listed: list[dict[str, Any]] = []
        for name in self.stack.providers:
            entry: dict[str, Any] = {"name": name, "display_name": profiles.profile(name).display_name}
            if name == PROVIDER:
                entry["simulated_at"] = self.stack.tiktok.base_url
            else:
                entry["simulated_at"] = self.stack.networks.url(name)
                entry["answered"] = self.stack.networks.summary(name)
            listed.append(entry)
        return listed

    def _recent_events(self) -> list[dict[str, Any]]:
        """Connection events from the bus (an EventBridge rule delivers them to a queue in moto)."""
        assert self.stack is not None
        with self._events_lock:
            for event in self.stack.resources.received_events():
                detail = event.get("detail", {})
                self._events.appendleft({
                    "type": event.get("detail-type"), "connection_id": detail.get("connection_id"),
                    "account_id": detail.get("account_id"),  # names a connection no longer listed
                    "status": detail.get("status"), "reason": detail.get("reason"),
                    "retryable": detail.get("retryable"), "occurred_at": detail.get("occurred_at"),
                })
            return list(self._events)


def _files_in(folder: Path, prefix: str = "") -> dict[str, Path]:
    """The static files the dashboard serves from `folder`, by their path under /dev/ (a fixed list: no path
    from a request ever reaches the file system)."""
    return {prefix + p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}


def _iso(epoch: float) -> str:
    from oauth_keeper.domain.timestamps import iso8601

    return iso8601(epoch) or ""


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "field": None, "message": message}}


def _json(status: int, data: Any) -> Answer:
    return status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], json.dumps(data).encode()


# -- make dev ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`make dev`: the stack on fixed ports until Ctrl-C or SIGTERM; the handlers' EMF metric lines are kept off
    the console (local/emf.py)."""
    from local.emf import emf_kept_off_stdout

    with emf_kept_off_stdout():
        return _serve(argv)


def _serve(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEV_PORT", "3000")),
                        help="gateway and dashboard (default 3000)")
    parser.add_argument("--tiktok-port", type=int, default=int(os.environ.get("DEV_TIKTOK_PORT", "3001")),
                        help="simulated TikTok (default 3001)")
    parser.add_argument("--networks-port", type=int, default=int(os.environ.get("DEV_NETWORKS_PORT", "3002")),
                        help="the other simulated networks, one path each (default 3002)")
    args = parser.parse_args(argv)

    from local import sigv4

    def log(line: str) -> None:
        print(f"  {time.strftime('%H:%M:%S')}  {line}", flush=True)

    try:
        stack = start_dev_stack(args.port, tiktok_port=args.tiktok_port, networks_port=args.networks_port, log=log)
    except OSError as exc:
        print(f"Could not start: {exc}. Is something else using port {args.port}, {args.tiktok_port} or "
              f"{args.networks_port}? Stop it, or pick others: "
              "make dev DEV_PORT=3100 DEV_TIKTOK_PORT=3101 DEV_NETWORKS_PORT=3102", file=sys.stderr)
        return 1
    print(f"""
oauth-keeper local stack (Ctrl-C to stop)

  Dashboard           {stack.dashboard_url}
  API (local gateway) {stack.base_url}   routes and auth from template.yaml; IAM routes need SigV4
  Simulated TikTok    {stack.tiktok.base_url}   consent page; fault controls under /_sim/
  Other networks      {stack.networks.base_url}/<network>   {", ".join(stack.networks.providers)}
  AWS (moto)          {stack.moto_url}
  Redirect URI        {stack.redirect_uri}   (registered at the simulated TikTok; /callback/<network> for each)
  Dashboard user      owner_id={stack.owner_id}; its /dev/api/ proxy signs IAM calls server-side

Signing identity for the IAM routes (SigV4, service execute-api; local dummy values, not an AWS key):
  export AWS_ACCESS_KEY_ID={sigv4.LOCAL_ACCESS_KEY}
  export AWS_SECRET_ACCESS_KEY={sigv4.LOCAL_SECRET_KEY}
  export AWS_DEFAULT_REGION={sigv4.LOCAL_REGION}
A refused signature is logged below with why: unknown key, wrong region, clock skew, or (for a mismatch) the
canonical request the gateway computed (an IAM route's query included; never the signature or a secret).

Requests (paths only, never query strings):""", flush=True)

    stopped = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        print("\nStopping...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
