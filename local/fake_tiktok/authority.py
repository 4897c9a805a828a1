"""TikTok's authorization server as pure rules: accounts, consent, codes, PKCE, token issuing, rotation, revocation.

No HTTP server and no HTML here. The endpoints (server.py) read requests and render answers; this module
decides. A refusal is an exception carrying TikTok's error code: AuthorizeError for the authorize step (TikTok
shows it on its own page), OAuthError for the token and revoke endpoints.
"""

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

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
class AuthCode:
    open_id: str
    scopes: list[str]
    redirect_uri: str
    code_challenge: str
    pkce_mode: str  # the mode in force at authorize time, so a later switch can't change the check
    expires_at: float
    used: bool = False


@dataclass
class AuthRequest:
    """An authorize request that passed the checks TikTok makes before showing the consent page."""

    params: dict[str, str]
    redirect_uri: str
    state: str
    scopes: list[str]


class AuthorizeError(Exception):
    """An authorize request TikTok answers with its own error page instead of redirecting back."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class OAuthError(Exception):
    """A token or revoke request TikTok refuses with an OAuth error answer."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def append_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


def new_code() -> str:
    # Real codes carry '*' and '!'; '%XX' and '+' make any double decode or missing encode fail the exchange.
    t = secrets.token_urlsafe
    return f"{t(12)}*{t(9)}!{t(6)}%{secrets.token_hex(1).upper()}~{t(6)}+{t(3)}"


def pkce_challenge(verifier: str, mode: str) -> str:
    """The code_challenge for a verifier: TikTok's hex digest ("s256-hex") or RFC 7636 base64url ("s256")."""
    digest = hashlib.sha256(verifier.encode()).digest()
    if mode == "s256-hex":
        return digest.hex()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Authority:
    """Who the users are, what they consented to, which codes and tokens are alive, and TikTok's rules for them.

    The rule switches (pkce, extend_refresh_on_rotation, revoke_grant_on_reuse, single_grant_per_user) and the
    TTLs are plain attributes: tests change them between requests.
    """

    def __init__(
        self,
        *,
        client_key: str,
        client_secret: str,
        redirect_uris: tuple[str, ...],
        clock: Callable[[], float],
        access_ttl: int,
        refresh_ttl: int,
        code_ttl: int,
        pkce: str,
        extend_refresh_on_rotation: bool,
        revoke_grant_on_reuse: bool,
        single_grant_per_user: bool,
        lock: threading.RLock,
        stats: Counter[str],
    ):
        if pkce not in PKCE_MODES:
            raise ValueError(f"pkce must be one of {PKCE_MODES}")
        self.client_key = client_key
        self.client_secret = client_secret
        self.redirect_uris = redirect_uris
        self.clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.code_ttl = code_ttl
        self.pkce = pkce
        self.extend_refresh_on_rotation = extend_refresh_on_rotation
        self.revoke_grant_on_reuse = revoke_grant_on_reuse
        # Unverified at TikTok: does a new consent kill the user's older grant for this app? This mode says yes.
        self.single_grant_per_user = single_grant_per_user
        self.users: dict[str, TikTokUser] = {}
        for handle, name in (("alice", "Alice Example"), ("bob", "Bob Example"), ("carol", "Carol Example")):
            self.add_user(handle, name)

        self._lock = lock  # the simulator's one lock: the admin API reads state and stats together under it
        self._stats = stats
        self._codes: dict[str, AuthCode] = {}
        self._grants: list[Grant] = []
        self._by_refresh: dict[str, Grant] = {}  # current and rotated-away tokens, so reuse is recognised
        self._by_access: dict[str, tuple[Grant, float]] = {}  # older access tokens live until they expire

    # ---- accounts --------------------------------------------------------------------------------

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

    def find_user(self, name: str) -> TikTokUser | None:
        """A user by handle or by open_id."""
        if name in self.users:
            return self.users[name]
        return next((u for u in self.users.values() if u.open_id == name), None)

    def user_for_access_token(self, token: str) -> TikTokUser | None:
        """The user an access token speaks for, or None when it is unknown, revoked or expired."""
        with self._lock:
            grant, expires_at = self._by_access.get(token, (None, 0.0))
            if grant is None or grant.revoked or self.clock() >= expires_at:
                return None
            return next(u for u in self.users.values() if u.open_id == grant.open_id)

    # ---- consent ---------------------------------------------------------------------------------

    def check_authorize(self, params: dict[str, str]) -> AuthRequest:
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
        return AuthRequest(params, redirect_uri, params["state"], scopes)

    def _redirect_uri_registered(self, uri: str) -> bool:
        if self.redirect_uris:
            # Exact match, as TikTok does: no prefix matching, no trailing-slash leniency.
            return uri in self.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    @staticmethod
    def scope_error(req: AuthRequest) -> str | None:
        """The callback Location for a bad scope: unlike the checks above, TikTok reports this to the app."""
        unknown = [s for s in req.scopes if s not in KNOWN_SCOPES]
        if not req.scopes or unknown:
            detail = f"unknown scope(s): {', '.join(unknown)}" if unknown else "scope is required"
            return append_query(
                req.redirect_uri, {"error": "invalid_scope", "error_description": detail, "state": req.state}
            )
        return None

    def consent(self, params: dict[str, str], action: str, user: str | None, granted: list[str] | None) -> str:
        """Validate like the consent page, then answer the user's choice with the callback Location.

        granted=None grants everything requested. Raises AuthorizeError where TikTok would show its error page.
        """
        with self._lock:
            req = self.check_authorize(params)
            scope_error = self.scope_error(req)
            if scope_error:
                return scope_error
            if action != "authorize":
                self._stats["denials"] += 1
                return append_query(
                    req.redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "The user denied the authorization request",
                        "state": req.state,
                    },
                )
            account = self.find_user(user or "")
            if account is None:
                raise AuthorizeError("invalid_request", f"no such TikTok user: {user!r}")
            requested = set(req.scopes) | {BASIC_SCOPE}
            chosen = req.scopes if granted is None else granted
            extra = [s for s in chosen if s not in requested]
            if extra:
                raise AuthorizeError("invalid_scope", f"scopes granted but not requested: {', '.join(extra)}")
            # user.info.basic is always granted; keep the requested order for the rest.
            scopes = [BASIC_SCOPE] + [s for s in dict.fromkeys(req.scopes) if s in chosen and s != BASIC_SCOPE]
            code = new_code()
            self._codes[code] = AuthCode(
                open_id=account.open_id,
                scopes=scopes,
                redirect_uri=req.redirect_uri,
                code_challenge=params.get("code_challenge", ""),
                pkce_mode=self.pkce,
                expires_at=self.clock() + self.code_ttl,
            )
            self._stats["authorizations"] += 1
            return append_query(req.redirect_uri, {"code": code, "scopes": ",".join(scopes), "state": req.state})

    # ---- token and revoke endpoints --------------------------------------------------------------

    def authenticate_client(self, form: Mapping[str, str]) -> None:
        """Credentials only count in the form body: TikTok takes no HTTP Basic auth."""
        key_ok = hmac.compare_digest(form.get("client_key", "").encode(), self.client_key.encode())
        secret_ok = hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
        if not (key_ok and secret_ok):
            raise OAuthError("invalid_client", "client_key or client_secret is invalid")

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint's answer body for an authenticated client's form."""
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        for required in ("code", "redirect_uri"):
            if not form.get(required):
                raise OAuthError("invalid_request", f"{required} is required")
        with self._lock:
            self._stats["code_exchanges"] += 1
            now = self.clock()
            code = self._codes.get(form["code"])
            if code is None:
                raise OAuthError("invalid_grant", "authorization code is invalid")
            if code.used:
                raise OAuthError("invalid_grant", "authorization code has been used")
            if now >= code.expires_at:
                raise OAuthError("invalid_grant", "authorization code is expired")
            if form["redirect_uri"] != code.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the authorize request")
            if code.code_challenge:
                verifier = form.get("code_verifier", "")
                if not verifier:
                    raise OAuthError("invalid_request", "code_verifier is required")
                # "none" mode only means a challenge is optional; one that was sent is checked per RFC 7636.
                mode = "s256" if code.pkce_mode == "none" else code.pkce_mode
                if not hmac.compare_digest(pkce_challenge(verifier, mode), code.code_challenge):
                    raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
            code.used = True
            if self.single_grant_per_user:
                for older in self._grants:
                    if older.open_id == code.open_id:
                        older.revoked = True
            grant = Grant(open_id=code.open_id, scopes=code.scopes, refresh_expires_at=now + self.refresh_ttl)
            self._grants.append(grant)
            self._issue_tokens(grant, now)
            self._stats["code_exchange_successes"] += 1
            return self._token_answer(grant, now)

    def _refresh(self, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        with self._lock:
            self._stats["refreshes"] += 1
            now = self.clock()
            grant = self._by_refresh.get(token)
            if grant is None:
                raise OAuthError("invalid_grant", "refresh_token is invalid")
            if grant.revoked:
                raise OAuthError("invalid_grant", "refresh_token is revoked")
            if token != grant.refresh_token:
                self._stats["refresh_reuses"] += 1
                if self.revoke_grant_on_reuse:
                    grant.revoked = True  # a replayed token may be stolen: kill the whole grant
                raise OAuthError("invalid_grant", "refresh_token has been rotated")
            if now >= grant.refresh_expires_at:
                raise OAuthError("invalid_grant", "refresh_token is expired")
            grant.rotated_refresh_tokens.append(grant.refresh_token)
            if self.extend_refresh_on_rotation:
                grant.refresh_expires_at = now + self.refresh_ttl
            self._issue_tokens(grant, now)
            self._stats["refresh_successes"] += 1
            return self._token_answer(grant, now)

    def _issue_tokens(self, grant: Grant, now: float) -> None:
        grant.access_token = "act." + secrets.token_urlsafe(32)
        grant.access_expires_at = now + self.access_ttl
        grant.refresh_token = "rft." + secrets.token_urlsafe(32)
        self._by_access[grant.access_token] = (grant, grant.access_expires_at)
        self._by_refresh[grant.refresh_token] = grant

    def _token_answer(self, grant: Grant, now: float) -> dict[str, Any]:
        return {
            "access_token": grant.access_token,
            "expires_in": int(self.access_ttl),
            "open_id": grant.open_id,
            "refresh_token": grant.refresh_token,
            "refresh_expires_in": max(0, int(grant.refresh_expires_at - now)),
            "scope": ",".join(grant.scopes),
            "token_type": "Bearer",
        }

    def revoke(self, form: Mapping[str, str]) -> None:
        """The revoke endpoint, for an authenticated client's form."""
        if not form.get("token"):
            raise OAuthError("invalid_request", "token is required")
        with self._lock:
            self._stats["revocations"] += 1
            # Unknown tokens and revoked grants succeed (RFC 7009): revoking is idempotent.
            grant, expires_at = self._by_access.get(form["token"], (None, 0.0))
            if grant is not None and not grant.revoked and self.clock() >= expires_at:
                # Undocumented at TikTok, so the cautious reading: an expired access token cannot end its grant,
                # which lives on with its refresh token. Only a refresh, then a revoke, ends it.
                self._stats["revoke_refusals"] += 1
                raise OAuthError("invalid_grant", "access_token is expired")
            if grant is not None:
                grant.revoked = True

    # ---- what happens inside TikTok, and what tests and the admin API look at --------------------

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
        *,
        create_time: Any = None,
        drop: tuple[str, ...] = (),
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook delivery TikTok would send: raw body and its TikTok-Signature header, signed at `timestamp`
        (default now). The event was created at `create_time` (default: when signed; any JSON value, for
        hostile tests); `drop` leaves body fields out."""
        t = int(self.clock()) if timestamp is None else timestamp
        fields = {
            "client_key": self.client_key,
            "event": event,
            "create_time": t if create_time is None else create_time,
            "user_openid": open_id,
            "content": json.dumps({"reason": reason}),  # TikTok sends content as a JSON string
        }
        body = json.dumps({k: v for k, v in fields.items() if k not in drop}).encode()
        return body, self.resign_webhook(body, t)

    def resign_webhook(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers of a retry of `body`: TikTok signs every attempt anew, at `timestamp` (default now)."""
        t = int(self.clock()) if timestamp is None else timestamp
        signature = hmac.new(self.client_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "TikTok-Signature": f"t={t},s={signature}"}
