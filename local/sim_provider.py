"""A simulated OAuth provider driven by a provider profile plus quirk knobs, as an httpx transport.

Whatever the profile says a request looks like (URL, method, encoding, client authentication, parameter names,
the connect chain, the refresh strategy), the simulator expects exactly that and refuses anything else the way
the real provider does (`Quirks.error_shapes`). Its grants follow the strategy: rotating refresh tokens die when
used (and a reused one kills its family), standard ones live on, an extension renews the access token itself
only once it is `min_token_age` old and while it is valid, a re-exchange swaps a valid token for a new one; hard
caps end a grant whatever refreshing does, and disuse ends it when nothing refreshed it in time. Time is the
injected clock's: days pass in microseconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import httpx
from oauth_keeper.domain.protocol import code_challenge
from oauth_keeper.domain.providers import ProviderProfile, RequestShape

DAY = 86_400


@dataclass
class Quirks:
    """What the simulated provider does beyond its profile (seconds). None: taken from the profile."""

    access_ttl: int | None = None  # the access token's lifetime (the chain's last link's token for a chain)
    short_ttl: int = 3600  # the code's token when a chain follows (Meta's short-lived token)
    refresh_ttl: int | None = None  # a refresh token's lifetime, reported when the profile reads it
    hard_cap: int | None = None  # the grant ends this long after consent
    disuse_expiry: int | None = None  # the refresh credential dies unused this long
    min_token_age: int | None = None
    issues_refresh_on_refresh: bool = True  # a standard provider may omit the refresh token on refresh (Google)
    omit_refresh_on_next_code: bool = False  # the next code exchange issues no refresh token (a re-consent)
    lose_next_refresh_answer: bool = False  # the next refresh is processed, then the answer is lost (a timeout)
    on_refresh: Callable[[], None] | None = None  # called while a refresh is being processed (race tests)
    on_code_exchange: Callable[[], None] | None = None  # ...while a code exchange is (a slow provider: the clock moves)
    on_chain: Callable[[], None] | None = None  # ...while a chain link is
    # The answer when a grant is gone, a credential is refused, a method is wrong, a client is refused:
    # (HTTP status, JSON body), as the real provider shapes them.
    dead_grant: tuple[int, Any] = (400, {"error": "invalid_grant"})
    too_young: tuple[int, Any] = (400, {"error": "invalid_request"})
    wrong_method: tuple[int, Any] = (400, {"error": "invalid_request"})
    bad_client: tuple[int, Any] = (401, {"error": "invalid_client"})
    channels_page_size: int | None = None  # the channel list answers in pages this long (a `next` URL each)


@dataclass
class _Grant:
    user: str
    consented_at: int
    scopes: tuple[str, ...]
    alive: bool = True
    last_refresh: int = 0
    redirect_uri: str | None = None  # the authorization request's, which the code exchange must repeat
    code_challenge: str | None = None  # the authorization request's PKCE challenge (RFC 7636)


@dataclass
class _Token:
    grant: _Grant
    issued_at: int
    expires_at: int | None
    alive: bool = True


@dataclass
class Call:
    step: str
    at: int
    status: int


@dataclass
class SimulatedProvider(httpx.BaseTransport):
    profile: ProviderProfile
    clock: Callable[[], float]
    quirks: Quirks = field(default_factory=Quirks)
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"  # noqa: S105 - a simulator's
    calls: list[Call] = field(default_factory=list)
    reused_refresh_tokens: int = 0
    faults: list[tuple[str, int, Any]] = field(default_factory=list)  # (step, status, body), next matching call
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _access_tokens: dict[str, _Token] = field(default_factory=dict)
    _refresh_tokens: dict[str, _Token] = field(default_factory=dict)
    # Each user's channels (profiles with a `channels` section): (id, name, role), made up on first listing.
    channels: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    channel_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # derived token -> (user, channel id)

    # -- the user's side ---------------------------------------------------------------------------------------
    def approve(self, user: str, scopes: tuple[str, ...] | None = None, *, redirect_uri: str | None = None,
                code_challenge: str | None = None) -> str:
        """The user consents: a code for a new grant of `scopes` (None: the profile's defaults). Given the
        authorization request's `redirect_uri` and PKCE `code_challenge`, the code exchange must send the same
        redirect URI and the matching `code_verifier` (RFC 6749 section 4.1.3, RFC 7636 section 4.6), or it gets
        the network's dead-grant answer."""
        code = "code-" + secrets.token_urlsafe(12)
        granted = self.profile.default_scopes if scopes is None else scopes
        self._codes[code] = _Grant(user=user, consented_at=self._now(), scopes=granted, redirect_uri=redirect_uri,
                                   code_challenge=code_challenge)
        return code

    def revoke_user(self, user: str) -> None:
        """The user removes the app at the provider: every grant of theirs dies."""
        for token in (*self._access_tokens.values(), *self._refresh_tokens.values()):
            if token.grant.user == user:
                token.grant.alive = False

    def fail_next(self, step: str, status: int, body: Any) -> None:
        """The next `step` call (code_exchange, chain, refresh, userinfo, revoke) answers this instead."""
        self.faults.append((step, status, body))

    def sent(self, step: str) -> list[Call]:
        return [c for c in self.calls if c.step == step]

    # -- the wire ------------------------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url).split("?", 1)[0]
        params = self._params(request)
        step, shape = self._step(url, params)
        if step is None or shape is None:
            return self._json(404, {"error": "not_found"})
        status, body = self._answer(step, shape, request, params)
        self.calls.append(Call(step, self._now(), status))
        if step == "refresh" and self.quirks.lose_next_refresh_answer:
            self.quirks.lose_next_refresh_answer = False
            raise httpx.ReadTimeout("simulated: processed, answer lost", request=request)
        return self._json(status, body)

    def _answer(self, step: str, shape: RequestShape, request: httpx.Request,
                params: dict[str, str]) -> tuple[int, Any]:
        for index, (fault_step, status, body) in enumerate(self.faults):
            if fault_step == step:
                del self.faults[index]
                return status, body
        if request.method != shape.method:
            return self.quirks.wrong_method
        for name, value in self.profile.headers.items():
            if request.headers.get(name) != value:
                return 400, {"error": "invalid_request", "error_description": f"missing header {name}"}
        if step not in ("userinfo", "channels") and not self._client_ok(shape, request, params):
            return self.quirks.bad_client
        for name, value in shape.params.items():
            if params.get(name) != value:
                return 400, {"error": "invalid_request", "error_description": f"{name} missing"}
        return getattr(self, "_" + step)(shape, request, params)

    def _code_exchange(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        grant = self._codes.pop(params.get("code", ""), None)  # single use, whatever the outcome
        if grant is None or not self._bound_ok(grant, params):
            return self.quirks.dead_grant
        if self.quirks.on_code_exchange is not None:
            self.quirks.on_code_exchange()
        grant.last_refresh = self._now()
        if self.profile.chain:  # a short-lived token only: the chain makes it long-lived
            return 200, self._tokens(grant, ttl=self.quirks.short_ttl, with_refresh=False)
        with_refresh = self._issues_refresh and not self.quirks.omit_refresh_on_next_code
        self.quirks.omit_refresh_on_next_code = False
        return 200, self._tokens(grant, ttl=self._access_ttl(), with_refresh=with_refresh)

    def _chain(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        token = self._live(self._access_tokens, params.get(shape.credential_param or "access_token"))
        if token is None:
            return self.quirks.dead_grant
        if self.quirks.on_chain is not None:
            self.quirks.on_chain()
        return 200, self._tokens(token.grant, ttl=self._access_ttl(), with_refresh=False, account=False)

    def _refresh(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        credential = params.get(shape.credential_param or "refresh_token", "")
        store = self._access_tokens if self.profile.refreshes_with_access_token else self._refresh_tokens
        token = store.get(credential)
        now = self._now()
        if token is not None and not token.alive and self.profile.refresh_strategy == "rotating":
            self.reused_refresh_tokens += 1
            token.grant.alive = False  # a reused rotated token kills the whole family
        token = self._live(store, credential)
        if token is None or self._disused(token.grant, now):
            return self.quirks.dead_grant
        min_age = self.quirks.min_token_age if self.quirks.min_token_age is not None \
            else self.profile.timing.min_token_age
        if now - token.issued_at < min_age:
            return self.quirks.too_young
        if self.quirks.on_refresh is not None:
            self.quirks.on_refresh()
        token.grant.last_refresh = now
        if self.profile.refresh_strategy == "rotating" or self.profile.refreshes_with_access_token:
            token.alive = False
        with_refresh = self._issues_refresh and (self.profile.refresh_strategy == "rotating"
                                                 or self.quirks.issues_refresh_on_refresh)
        return 200, self._tokens(token.grant, ttl=self._access_ttl(), with_refresh=with_refresh, account=False)

    def _userinfo(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        header = request.headers.get("authorization", "")
        credential = header[7:] if shape.bearer and header.startswith("Bearer ") \
            else params.get(shape.credential_param or "access_token")
        token = self._live(self._access_tokens, credential)
        if token is None:
            return self.quirks.dead_grant
        fields = self.profile.userinfo
        body: dict[str, Any] = {}
        for path, value in ((fields.account_id, token.grant.user), (fields.display_name, f"User {token.grant.user}"),
                            (fields.avatar_url, f"https://avatars.sim/{token.grant.user}.png"),
                            *(((fields.success_path, fields.success_value),) if fields.success_path else ())):
            _put(body, path, value)
        return 200, body

    def _channels(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        """The channels the grant's user may post to, shaped as the profile's `channels` section reads them: each
        listing derives fresh channel tokens when the profile reads one (a Page token per Page)."""
        fields = self.profile.channels
        assert fields is not None
        for name, value in fields.headers.items():
            if request.headers.get(name) != value:
                return 400, {"error": "invalid_request", "error_description": f"missing header {name}"}
        header = request.headers.get("authorization", "")
        credential = header[7:] if fields.bearer and header.startswith("Bearer ") \
            else params.get(fields.credential_param)
        token = self._live(self._access_tokens, credential)
        if token is None:
            return self.quirks.dead_grant
        user = token.grant.user
        items = []
        for channel_id, name, role in self.channels_for(user):
            item: dict[str, Any] = {}
            _put(item, fields.id, (fields.id_prefix or "") + channel_id)
            if fields.name:
                _put(item, fields.name, name)
            if fields.token:
                derived = "pt-" + secrets.token_urlsafe(16)
                self.channel_tokens[derived] = (user, channel_id)
                _put(item, fields.token, derived)
            if fields.role_path:
                _put(item, fields.role_path, role)
            items.append(item)
        size = self.quirks.channels_page_size
        start = int(params.get("after", "0") or 0)
        page = items[start:start + size] if size else items
        body: dict[str, Any] = {}
        _put(body, fields.items, page)
        if size and fields.next and start + size < len(items):
            query = {**fields.query, "after": str(start + size)}
            if not fields.bearer:
                query[fields.credential_param] = credential or ""
            _put(body, fields.next, fields.url + "?" + urlencode(query))
        return 200, body

    def channels_for(self, user: str) -> list[tuple[str, str, str]]:
        """The user's channels, made up on first use: three Pages or organizations (one of them only viewable
        when the profile filters roles), or one YouTube-like channel when no token or role tells them apart."""
        fields = self.profile.channels
        if user not in self.channels:
            if fields is not None and fields.role_path:
                self.channels[user] = [(f"{_digits(user)}{n}", f"Org {n} of {user}", role) for n, role in
                                       enumerate((*fields.roles[:2], "ANALYST"), start=1)]
            elif fields is not None and fields.token:
                self.channels[user] = [(f"{_digits(user)}{n}", f"Page {n} of {user}", "")
                                       for n in range(1, 4)]
            else:
                self.channels[user] = [(f"UC{user}", f"Channel of {user}", "")]
        return self.channels[user]

    def _revoke(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> tuple[int, Any]:
        token = self._access_tokens.get(params.get(shape.credential_param or "token", "")) or self._refresh_tokens.get(
            params.get(shape.credential_param or "token", ""))
        if token is not None:
            token.grant.alive = False
        return 200, {}

    # -- helpers -------------------------------------------------------------------------------------------------
    def _bound_ok(self, grant: _Grant, params: dict[str, str]) -> bool:
        """The exchange repeats the authorization request's redirect URI and proves its PKCE challenge."""
        if grant.redirect_uri is not None and params.get("redirect_uri") != grant.redirect_uri:
            return False
        if grant.code_challenge is not None:
            try:
                proof = code_challenge(params.get("code_verifier") or "", self.profile.pkce)
            except UnicodeEncodeError:  # RFC 7636's verifier is ASCII: anything else proves nothing
                return False
            return bool(params.get("code_verifier")) and secrets.compare_digest(proof, grant.code_challenge)
        return True

    @property
    def _issues_refresh(self) -> bool:
        return self.profile.refresh_strategy in ("rotating", "standard")

    def _access_ttl(self) -> int:
        return self.quirks.access_ttl or self.profile.access_lifetime.fallback

    def _cap(self) -> int | None:
        return self.quirks.hard_cap if self.quirks.hard_cap is not None else self.profile.timing.effective_cap

    def _disused(self, grant: _Grant, now: int) -> bool:
        disuse = self.quirks.disuse_expiry if self.quirks.disuse_expiry is not None \
            else self.profile.timing.disuse_expiry
        return bool(disuse and now - grant.last_refresh > disuse)

    def _live(self, store: dict[str, _Token], value: str | None) -> _Token | None:
        token = store.get(value or "")
        now = self._now()
        cap = self._cap()
        if token is None or not token.alive or not token.grant.alive:
            return None
        if token.expires_at is not None and token.expires_at <= now:
            return None
        if cap and now >= token.grant.consented_at + cap:
            return None
        return token

    def _tokens(self, grant: _Grant, *, ttl: int, with_refresh: bool, account: bool = True) -> dict[str, Any]:
        now = self._now()
        fields = self.profile.token_fields
        access = "at-" + secrets.token_urlsafe(16)
        self._access_tokens[access] = _Token(grant, now, now + ttl)
        body: dict[str, Any] = {fields.access_token: access, fields.expires_in: ttl, fields.token_type: "bearer"}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(16)
            refresh_ttl = self.quirks.refresh_ttl or self.profile.refresh_lifetime.fallback
            cap = self._cap()
            if cap:  # a capped refresh token reports what is left of the grant
                refresh_ttl = min(refresh_ttl, grant.consented_at + cap - now)
            self._refresh_tokens[refresh] = _Token(grant, now, now + refresh_ttl if fields.refresh_expires_in else None)
            body[fields.refresh_token] = refresh
            if fields.refresh_expires_in:
                body[fields.refresh_expires_in] = refresh_ttl
        if grant.scopes:
            body[fields.scope] = self.profile.join_scopes(grant.scopes)
        if account and self.profile.account_id_source == "token_response" and fields.account_id:
            if fields.account_id.startswith("id_token."):
                claims = {fields.account_id[len("id_token."):]: grant.user}
                payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
                body["id_token"] = f"e30.{payload}.sig"
            else:
                _put(body, fields.account_id, grant.user)
        return body

    def _client_ok(self, shape: RequestShape, request: httpx.Request, params: dict[str, str]) -> bool:
        auth = shape.client_auth or self.profile.client_auth
        if auth == "client_secret_basic":
            header = request.headers.get("authorization", "")
            try:
                pair = base64.b64decode(header.removeprefix("Basic ")).decode()
            except ValueError:
                return False
            user, _, password = pair.partition(":")
            return header.startswith("Basic ") and (unquote(user), unquote(password)) == (
                self.client_id, self.client_secret)
        if auth == "client_secret_post":
            return (params.get(self.profile.client_id_param), params.get("client_secret")) == (
                self.client_id, self.client_secret)
        if auth == "client_secret_only":
            return params.get("client_secret") == self.client_secret
        return "client_secret" not in params  # none: a secret where none belongs is a bug of ours

    def _step(self, url: str, params: dict[str, str]) -> tuple[str | None, RequestShape | None]:
        for index, link in enumerate(self.profile.chain):
            if url == link.url and self.profile.link(index).credential_param in params:
                return "chain", self.profile.link(index)
        channels = self.profile.channels
        if channels is not None and url == channels.url.split("?", 1)[0]:
            return "channels", RequestShape(url=channels.url, method=channels.method, encoding="query",
                                            params=dict(channels.query))
        candidates = [(s, self.profile.request(s)) for s in ("code_exchange", "refresh", "userinfo", "revoke")]
        matching = [(s, shape) for s, shape in candidates if shape.url and url == shape.url.split("?", 1)[0]]
        if len(matching) > 1:  # one URL for several steps (the RFC 6749 token endpoint): the body tells
            matching = [(s, shape) for s, shape in matching if s != "code_exchange" or "code" in params] or matching
            matching = [(s, shape) for s, shape in matching if s != "refresh" or "code" not in params] or matching
        return matching[0] if matching else (None, None)

    @staticmethod
    def _params(request: httpx.Request) -> dict[str, str]:
        values = dict(parse_qsl(request.url.query.decode() if isinstance(request.url.query, bytes)
                                else str(request.url.query)))
        content = request.read()
        kind = request.headers.get("content-type", "")
        if "json" in kind and content:
            values.update({k: str(v) for k, v in json.loads(content).items()})
        elif "x-www-form-urlencoded" in kind:
            values.update(dict(parse_qsl(content.decode())))
        return values

    def _now(self) -> int:
        return int(self.clock())

    @staticmethod
    def _json(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, json=body)


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path, making the objects on the way."""
    *parents, last = path.split(".")
    for key in parents:
        body = body.setdefault(key, {})
    body[last] = value


GRAPH_EXPIRED = (400, {"error": {"message": "Error validating access token: Session has expired",
                                 "type": "OAuthException", "code": 190, "error_subcode": 463}})
GRAPH_WRONG_METHOD = (400, {"error": {"message": "Unsupported request - method type: post", "type": "IGApiException",
                                      "code": 100}})
INVALID_GRANT = (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
X_SPENT = (400, {"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
LINKEDIN_REVOKED = (401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN",
                          "message": "The token used in the request has been revoked by the user"})


def graph(ttl: int) -> Quirks:
    return Quirks(access_ttl=ttl, dead_grant=GRAPH_EXPIRED, too_young=GRAPH_WRONG_METHOD,
                  wrong_method=GRAPH_WRONG_METHOD)


# Each shipped network as simulated: what providers.md reports the real one does (lifetimes, error shapes).
SIMULATED = {
    "tiktok": lambda: Quirks(access_ttl=DAY, refresh_ttl=365 * DAY),
    "instagram": lambda: graph(60 * DAY),
    "threads": lambda: graph(60 * DAY),
    "facebook_pages": lambda: graph(60 * DAY),
    "youtube": lambda: Quirks(access_ttl=3600, issues_refresh_on_refresh=False, dead_grant=INVALID_GRANT),
    "linkedin": lambda: Quirks(access_ttl=60 * DAY, refresh_ttl=365 * DAY, issues_refresh_on_refresh=True,
                               dead_grant=INVALID_GRANT),
    "x_twitter": lambda: Quirks(access_ttl=7200, dead_grant=X_SPENT),
    "pinterest": lambda: Quirks(access_ttl=30 * DAY, refresh_ttl=60 * DAY, dead_grant=INVALID_GRANT),
}


def _digits(user: str) -> str:
    """Eight digits standing for a user, the same in every run (Graph and LinkedIn ids are numbers)."""
    return str(int(hashlib.sha256(user.encode()).hexdigest(), 16) % 10**8).zfill(8)
