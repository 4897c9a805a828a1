"""Simulated TikTok OAuth v2 (Login Kit) server over loopback, with fault injection, for demos and tests.

FakeTikTok is what demos and tests use: a facade over the package's parts, one concern each.
  authority.py  the rules: users, consent, codes, PKCE, token issuing and rotation, revocation (no HTTP)
  faults.py     misbehaving on purpose: outages, queued failures, latency, held answers
  consent.py    the consent page and TikTok's own error page, from consent.html and error.html
  server.py     routing each request to the parts above, and the loopback HTTP server
  admin.py      the /_sim/ control API the local dashboard drives
  wire.py       answers as values, log ids, strict query and form parsing
"""

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Self

from .admin import Admin
from .authority import (
    BASIC_SCOPE,
    KNOWN_SCOPES,
    PKCE_MODES,
    USER_FIELDS,
    Authority,
    AuthorizeError,
    Grant,
    TikTokUser,
    pkce_challenge,
)
from .consent import AUTHORIZE_PARAMS
from .faults import FAULT_KINDS, AnswerChange, Faults
from .server import (
    AUTHORIZE_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    Endpoints,
    LoopbackServer,
    authorize_params,
)
from .wire import OAuthErrors, Response

__all__ = [
    "AUTHORIZE_PARAMS",
    "AUTHORIZE_PATH",
    "BASIC_SCOPE",
    "FAULT_KINDS",
    "KNOWN_SCOPES",
    "PKCE_MODES",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "USERINFO_PATH",
    "USER_FIELDS",
    "AuthorizeError",
    "FakeTikTok",
    "Grant",
    "Response",
    "TikTokUser",
    "pkce_challenge",
]


class _Setting[T]:
    """A FakeTikTok attribute kept on the part that uses it, so setting it on the facade changes that part."""

    def __init__(self, part: str, name: str = ""):
        self._part = part
        self._name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = self._name or name

    def __get__(self, obj: Any, objtype: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # the descriptor itself, for introspection
        return getattr(getattr(obj, self._part), self._name)

    def __set__(self, obj: Any, value: T) -> None:
        setattr(getattr(obj, self._part), self._name, value)


class FakeTikTok:
    """TikTok's authorize, token, revoke and user-info endpoints, with knobs to make them misbehave."""

    # Settings a test may change between requests: each reads and writes the part it takes effect in.
    client_key = _Setting[str]("_authority")
    client_secret = _Setting[str]("_authority")
    redirect_uris = _Setting[tuple[str, ...]]("_authority")
    clock = _Setting[Callable[[], float]]("_authority")
    access_ttl = _Setting[int]("_authority")
    refresh_ttl = _Setting[int]("_authority")
    code_ttl = _Setting[int]("_authority")
    pkce = _Setting[str]("_authority")
    extend_refresh_on_rotation = _Setting[bool]("_authority")
    revoke_grant_on_reuse = _Setting[bool]("_authority")
    single_grant_per_user = _Setting[bool]("_authority")
    error_status = _Setting[int]("_oauth_error", "status")
    app_name = _Setting[str]("_endpoints")
    latency = _Setting[float]("_faults")
    timeout_delay = _Setting[float]("_faults")

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
        self._stats: Counter[str] = Counter()
        # One lock for the whole simulator, shared by its parts: the admin API reads state and stats together.
        lock = threading.RLock()
        self._authority = Authority(
            client_key=client_key,
            client_secret=client_secret,
            redirect_uris=tuple(redirect_uris),
            clock=clock,
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
            code_ttl=code_ttl,
            pkce=pkce,
            extend_refresh_on_rotation=extend_refresh_on_rotation,
            revoke_grant_on_reuse=revoke_grant_on_reuse,
            single_grant_per_user=single_grant_per_user,
            lock=lock,
            stats=self._stats,
        )
        self._oauth_error = OAuthErrors(self._stats, error_status)
        self._faults = Faults(lock=lock, stats=self._stats, oauth_error=self._oauth_error)
        self._endpoints = Endpoints(
            authority=self._authority,
            faults=self._faults,
            oauth_error=self._oauth_error,
            admin=Admin(authority=self._authority, faults=self._faults, stats=self._stats, lock=lock),
            stats=self._stats,
            lock=lock,
            app_name=app_name,
        )
        self._server = LoopbackServer(self)

    @property
    def stats(self) -> Counter[str]:
        """What happened, by name (token_requests, refresh_successes, faults_injected, ...)."""
        return self._stats

    @property
    def users(self) -> dict[str, TikTokUser]:
        """TikTok accounts by handle; alice, bob and carol exist from the start."""
        return self._authority.users

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        self._faults.rearm()
        self._server.start(host, port)
        return self

    def stop(self) -> None:
        self._faults.release_held()  # wakes requests held by latency or a "timeout" fault
        self._server.stop()

    def __enter__(self) -> Self:
        return self if self._server.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.base_url

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

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request: the loopback server and in-process transports (local/sim_transport.py) both
        come through here."""
        return self._endpoints.handle(method, target, headers, body)

    # ---- users and what they do inside TikTok ----------------------------------------------------

    def add_user(self, handle: str, display_name: str | None = None) -> TikTokUser:
        """Add a TikTok account; open_id is per app (derived from client_key), union_id per developer."""
        return self._authority.add_user(handle, display_name)

    def approve(self, authorize_url: str, user: str = "alice", scopes: list[str] | None = None) -> str:
        """Consent as `user` without a browser; returns the Location TikTok would redirect to.

        scopes=None grants everything requested. Raises AuthorizeError where TikTok would show its error page.
        """
        return self._authority.consent(authorize_params(authorize_url), "authorize", user, scopes)

    def deny(self, authorize_url: str) -> str:
        """Press Cancel on the consent page; returns the Location (error=access_denied)."""
        return self._authority.consent(authorize_params(authorize_url), "cancel", None, None)

    def revoke_user(self, open_id: str) -> int:
        """The user removes the app inside TikTok: every grant and pending code of theirs dies."""
        return self._authority.revoke_user(open_id)

    def expire_refresh_token(self, open_id: str) -> int:
        """Make the user's current refresh token(s) already expired, as when their 180 days run out."""
        return self._authority.expire_refresh_token(open_id)

    def rotate_client_secret(self, new_secret: str) -> None:
        self._authority.rotate_client_secret(new_secret)

    def grants_for(self, open_id: str) -> list[Grant]:
        """Snapshots of the user's live grants: not revoked, refresh token not expired."""
        return self._authority.grants_for(open_id)

    def signed_webhook(
        self,
        open_id: str,
        reason: int = 1,
        event: str = "authorization.removed",
        timestamp: int | None = None,
        *,
        create_time: Any = None,
        drop: tuple[str, ...] = (),
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery TikTok would send: raw body and its TikTok-Signature header, signed at `timestamp`
        (default now). The event was created at `create_time` (default: when signed; any JSON value, for
        hostile tests); `drop` leaves body fields out."""
        return self._authority.signed_webhook(open_id, reason, event, timestamp, create_time=create_time, drop=drop)

    def resign_webhook(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers of a retry of `body`: TikTok signs every attempt anew, at `timestamp` (default now)."""
        return self._authority.resign_webhook(body, timestamp)

    # ---- faults ----------------------------------------------------------------------------------

    def set_outage(self, kind: str | None) -> None:
        """Make the token, user-info and revoke endpoints fail with `kind` until cleared with None."""
        self._faults.set_outage(kind)

    def clear_faults(self) -> None:
        """No outage and no queued failures: TikTok behaves again from the next request."""
        self._faults.clear()

    def fail_next(self, n: int, kind: str) -> None:
        """The next n token-endpoint requests fail with `kind`, then it behaves again."""
        self._faults.fail_next(n, kind)

    def change_next_answers(self, n: int = 1, *, patch: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
                            status: int | None = None, raw: bytes | None = None, fault: str | None = None) -> None:
        """The next n successful token answers are processed (tokens issued, the old refresh token rotated
        away), then changed on the way back: fields set or dropped, another status, a raw body, or lost to a
        "timeout" or a "5xx" from something in front of TikTok."""
        self._faults.change_next(n, AnswerChange(patch=dict(patch or {}), drop=tuple(drop), status=status,
                                                 raw=raw, fault=fault))
