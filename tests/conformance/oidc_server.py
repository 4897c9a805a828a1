"""A real OAuth 2.0 / OpenID Connect server for conformance tests: npm `oidc-provider`, run from local/oidc.

The whole API:

    skip_without_node()        -> path of `node`; outside CI skips the test when node/npm are missing,
                                  with CI=true fails it instead.
    OidcServer.start(...)      -> a running server (also a context manager); `.stop()` ends it.
        .issuer                   "http://127.0.0.1:PORT" (no trailing slash; also the `iss` it sends)
        .client_id, .client_secret, .redirect_uris, .client_auth
        .discovery_url            issuer + "/.well-known/openid-configuration"
        .revoke_account(login)    test hook: revoke every grant of that user at the provider
                                  ("the user removed the app"); the next refresh gets invalid_grant
        .log()                    the server's stderr so far (protocol errors, one line each; no tokens)
    consent(authorize_url, login="alice", approve=True) -> callback URL
                                  drives the login and consent pages like a browser and returns the
                                  redirect to the client's redirect_uri (code, state, iss; or error=...)

The fixture `oidc` in tests/conformance/conftest.py starts one per test with the defaults below.

What the server does (local/oidc/server.mjs):
- one confidential client, client_secret_post by default or client_secret_basic (the other method
  is refused with 401 invalid_client), grant types authorization_code + refresh_token;
- PKCE S256 required (code_challenge_method must be sent); at least one scope must be requested;
- every refresh rotates the refresh token; presenting a used one gives invalid_grant and revokes the
  whole grant (its newest refresh token and its access tokens die too);
- access tokens live `access_token_ttl` seconds (120 by default), refresh tokens `refresh_token_ttl`
  (1 day, renewed at each rotation unless refresh_token_sliding=False); the token response has
  `expires_in` but no refresh-token expiry;
- errors: token endpoint JSON {"error", "error_description"} (400, or 401 for invalid_client);
  authorization errors redirect to the redirect_uri with error, error_description, state, iss;
- devInteractions: a login form (any login, any password) then a consent form.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, Self
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
OIDC_DIR = ROOT / "local" / "oidc"
SERVER_SCRIPT = OIDC_DIR / "server.mjs"

DEFAULT_REDIRECT_URI = "https://keeper.example.com/callback/oidc"
READY_TIMEOUT = 30.0
NPM_CI_TIMEOUT = 300.0
MIN_NODE_MAJOR = 20

INSTALL_HINT = (
    "node and npm are needed for the conformance tests (they run the npm package oidc-provider from "
    "local/oidc): install Node.js 20+ (e.g. `apt-get install -y nodejs npm`); the tests run "
    "`npm ci --prefix local/oidc` themselves."
)


class OidcServerError(RuntimeError):
    """The local OAuth server could not be installed, started or driven."""


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def skip_without_node() -> str:
    """Return the path of `node`; skip the test when node/npm are unusable (fail instead when CI=true)."""
    node, problem = _find_node()
    if problem:
        if _running_in_ci():
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    assert node is not None
    return node


@functools.cache
def _find_node() -> tuple[str | None, str | None]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, f"{'node' if not node else 'npm'} not found on PATH. {INSTALL_HINT}"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False, timeout=30)
    version = out.stdout.strip().lstrip("v")
    major = version.split(".")[0]
    if out.returncode != 0 or not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        return None, f"node {version or '?'} is too old or broken (need {MIN_NODE_MAJOR}+). {INSTALL_HINT}"
    return node, None


def _pinned_version() -> str | None:
    lock = json.loads((OIDC_DIR / "package-lock.json").read_text())
    return lock.get("packages", {}).get("node_modules/oidc-provider", {}).get("version")


def _installed_version() -> str | None:
    manifest = OIDC_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        return json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None


def ensure_installed() -> None:
    """`npm ci --prefix local/oidc` when node_modules is missing or holds another oidc-provider version.

    Serialised with a file lock, so parallel test workers install once.
    """
    if _installed_version() is not None and _installed_version() == _pinned_version():
        return
    npm = shutil.which("npm")
    if not npm:
        raise OidcServerError(f"npm not found on PATH. {INSTALL_HINT}")
    lock_path = Path(tempfile.gettempdir()) / "oauth-keeper-local-oidc-npm-ci.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() is not None and _installed_version() == _pinned_version():
            return
        try:
            out = subprocess.run(
                [npm, "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=OIDC_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=NPM_CI_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise OidcServerError(f"`npm ci --prefix local/oidc` took more than {NPM_CI_TIMEOUT:.0f} s") from exc
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip()[-2000:]
            raise OidcServerError(
                f"`npm ci --prefix local/oidc` failed (exit {out.returncode}); the npm registry must be "
                f"reachable once to install oidc-provider:\n{detail}"
            )


@dataclass
class OidcServer:
    """A running local/oidc/server.mjs. Build it with `OidcServer.start(...)`."""

    issuer: str
    port: int
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    client_auth: str
    _process: subprocess.Popen[str] = field(repr=False)
    _workdir: Path = field(repr=False)
    _stderr: IO[str] = field(repr=False)

    @classmethod
    def start(
        cls,
        *,
        redirect_uris: Sequence[str] = (DEFAULT_REDIRECT_URI,),
        client_id: str = "oauth-keeper-conformance",
        client_secret: str | None = None,
        client_auth: str = "client_secret_post",
        access_token_ttl: int = 120,
        refresh_token_ttl: int = 24 * 60 * 60,
        refresh_token_sliding: bool = True,
        strict_client_auth: bool = True,
        accounts: dict[str, dict[str, str]] | None = None,
    ) -> OidcServer:
        """Install (npm ci) if needed, start the server on a free loopback port, wait for its ready line.

        `redirect_uris` are registered exactly (the server compares them byte for byte).
        `refresh_token_sliding=False` gives rotated refresh tokens their predecessor's end instead of a
        fresh `refresh_token_ttl`. `strict_client_auth=False` restores oidc-provider's own leniency
        (client_secret_basic and client_secret_post both accepted whatever `client_auth` says).
        `accounts` optionally sets user-info claims, e.g.
        {"alice": {"name": "Alice A.", "picture": "https://..."}}; any login works without it.
        """
        node = skip_without_node()
        ensure_installed()
        secret = client_secret if client_secret is not None else os.urandom(24).hex()
        workdir = Path(tempfile.mkdtemp(prefix="oauth-keeper-oidc-"))
        config_path = workdir / "config.json"
        config = {
            "client": {
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uris": list(redirect_uris),
                "token_endpoint_auth_method": client_auth,
            },
            "access_token_ttl": access_token_ttl,
            "refresh_token_ttl": refresh_token_ttl,
            "refresh_token_sliding": refresh_token_sliding,
            "strict_client_auth": strict_client_auth,
            "accounts": accounts or {},
        }
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        stderr = open(workdir / "server.log", "w+")  # noqa: SIM115 - closed by stop()
        env = {**os.environ, "NODE_ENV": "development"}
        env.pop("NODE_OPTIONS", None)
        process = subprocess.Popen(
            [node, str(SERVER_SCRIPT), "--port", "0", "--config", str(config_path)],
            cwd=OIDC_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        try:
            ready = _read_ready_line(process, stderr)
        except BaseException:
            _terminate(process)
            stderr.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(
            issuer=ready["issuer"],
            port=int(ready["port"]),
            client_id=client_id,
            client_secret=secret,
            redirect_uris=tuple(redirect_uris),
            client_auth=client_auth,
            _process=process,
            _workdir=workdir,
            _stderr=stderr,
        )

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def revoke_account(self, login: str) -> int:
        """Revoke every grant of `login` (all its access and refresh tokens); returns how many grants."""
        response = httpx.post(f"{self.issuer}/__admin/accounts/{login}/revoke", timeout=10)
        response.raise_for_status()
        return int(response.json()["revoked_grants"])

    def log(self) -> str:
        self._stderr.flush()
        return (self._workdir / "server.log").read_text() if self._workdir.exists() else ""

    def stop(self) -> None:
        """SIGTERM, wait (then SIGKILL), remove the temp config. Idempotent."""
        _terminate(self._process)
        if self._process.stdout:
            self._process.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read_ready_line(process: subprocess.Popen[str], stderr: IO[str]) -> dict[str, Any]:
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OidcServerError(f"oidc server not ready after {READY_TIMEOUT:.0f} s:\n{_tail(stderr)}")
            if not selector.select(timeout=remaining):
                continue
            line = process.stdout.readline()
            if not line:
                process.wait(timeout=5)
                raise OidcServerError(
                    f"oidc server exited with {process.returncode} before it was ready:\n{_tail(stderr)}"
                )
            with contextlib.suppress(ValueError):
                ready = json.loads(line)
                if isinstance(ready, dict) and "issuer" in ready and "port" in ready:
                    return ready


def _tail(stderr: IO[str]) -> str:
    stderr.flush()
    stderr.seek(0)
    return stderr.read()[-3000:]


def _terminate(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


# --------------------------------------------------------------------------------------------------
# The browser part: devInteractions login and consent pages.


class ConsentError(OidcServerError):
    """The provider answered something other than its login/consent pages or a redirect."""


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.links: list[str] = []
        self.pre: list[str] = []
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(action=a.get("action", ""), method=a.get("method", "get").lower(), fields={}))
        elif tag in {"input", "button", "textarea"} and self.forms and a.get("name"):
            if tag == "button" and a.get("type", "submit") == "submit":
                return  # a submit button's name/value only counts when it is the one clicked
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "pre":
            self._in_pre = True
            self.pre.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre[-1] += data


def consent(
    authorize_url: str,
    login: str = "alice",
    *,
    approve: bool = True,
    client: httpx.Client | None = None,
    max_steps: int = 20,
) -> str:
    """Play the user at the provider: follow redirects, sign in as `login`, approve (or cancel) consent.

    Returns the URL the provider redirects the browser to on the client's side (the authorize request's
    redirect_uri, or any redirect leaving the provider's origin), e.g.
    ".../callback/oidc?code=...&state=...&iss=http%3A%2F%2F127.0.0.1%3APORT" or, after a refusal,
    "...?error=access_denied&error_description=...&state=...&iss=...". That URL is not requested.

    `client`: pass an httpx.Client to keep the provider's cookies (its session) across calls; by
    default each call is a fresh browser, so it always sees the login and consent pages.
    """
    query = parse_qs(urlsplit(authorize_url).query)
    redirect_uri = query.get("redirect_uri", [None])[0]
    provider_origin = _origin(authorize_url)
    own_client = client is None
    browser = client or httpx.Client(timeout=10.0, headers={"User-Agent": "oauth-keeper-conformance"})
    try:
        method, url, data = "GET", authorize_url, None
        for _ in range(max_steps):
            response = browser.request(method, url, data=data, follow_redirects=False)
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if _leaves_provider(target, redirect_uri, provider_origin):
                    return target
                method, url, data = "GET", target, None
                continue
            if response.status_code != 200:
                raise ConsentError(_describe(response))
            page = _PageParser()
            page.feed(response.text)
            if not approve:
                abort = next((link for link in page.links if link.rstrip("/").endswith("/abort")), None)
                if abort is None:
                    raise ConsentError(f"no cancel link on {response.url}: {_describe(response)}")
                method, url, data = "GET", urljoin(str(response.url), abort), None
                continue
            form = next((f for f in page.forms if f.method == "post"), None)
            if form is None:
                raise ConsentError(f"no form on {response.url}: {_describe(response)}")
            fields = dict(form.fields)
            if "login" in fields:
                fields["login"] = login
            if "password" in fields:
                fields["password"] = "any-password"  # devInteractions accept any password  # noqa: S105
            method, url, data = "POST", urljoin(str(response.url), form.action), fields
        raise ConsentError(f"no redirect to the client after {max_steps} steps (last: {url})")
    finally:
        if own_client:
            browser.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _leaves_provider(target: str, redirect_uri: str | None, provider_origin: str) -> bool:
    if redirect_uri is not None and target.split("?", 1)[0].split("#", 1)[0] == redirect_uri.split("?", 1)[0]:
        return True
    return _origin(target) != provider_origin


def _describe(response: httpx.Response) -> str:
    page = _PageParser()
    with contextlib.suppress(Exception):
        page.feed(response.text)
    details = "; ".join(p.strip() for p in page.pre if p.strip()) or response.text[:500]
    return f"HTTP {response.status_code} from {response.url}: {details}"

