"""Provider profiles: everything provider-specific, as data (profiles/*.json, described by profile.schema.json).

A deployment enables providers by name (PROVIDERS=tiktok,acme). A name with a file in profiles/ uses it; any
other name is built on the generic RFC 6749 profile (`<NAME>_PROFILE=generic`). `<NAME>_<KEY>` settings
override endpoints, scopes, the PKCE challenge method, client authentication, issuer and discovery without code
changes. Whether PKCE is sent is the profile's alone (`pkce_support`): no setting turns it off.

Beyond RFC 6749 a profile says, per step (`requests`), which URL, HTTP method, body encoding, client
authentication and extra parameters a request takes; which `refresh_strategy` keeps a grant alive; what `chain`
of exchanges turns the code's token into the long-lived one; its `timing` rules; its `error_rules`; its
required `headers`; where the account id comes from (`account_id_source`); and how to list the `channels` one
grant can post to (Facebook Pages, LinkedIn organizations, YouTube channels). The loader checks all of it as
strictly as the JSON Schema does (tests/unit/test_profile_schema.py holds the two to each other): the layer
does not ship jsonschema (ADR 0002).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import FailureKind, NotFound

TRANSIENT, TERMINAL, OPERATOR, REJECTED = (
    FailureKind.TRANSIENT, FailureKind.TERMINAL, FailureKind.OPERATOR, FailureKind.REJECTED,
)
_PROFILES = Path(__file__).with_name("profiles")
CLIENT_AUTH = ("client_secret_post", "client_secret_basic")  # RFC 6749 section 2.3.1 (the `<NAME>_CLIENT_AUTH` choices)
# How one request authenticates the client: RFC 7591's `client_secret_basic`, `client_secret_post` and `none`, plus
# `client_secret_only`: the secret without the client id (Meta's ig_exchange_token and th_exchange_token).
STEP_CLIENT_AUTH = (*CLIENT_AUTH, "client_secret_only", "none")
HTTP_METHODS = ("GET", "POST")
# Where a request's parameters go: an x-www-form-urlencoded body, the URL query (every GET), a JSON body, or a
# multipart/form-data body.
ENCODINGS = ("form", "query", "json", "multipart")
# The steps a profile may shape (`requests`); `chain` links are shaped the same way.
STEPS = ("code_exchange", "refresh", "revoke", "userinfo")
# How a grant is kept alive (providers.md section 12.3, item 12):
#   rotating:    refresh_token grant; every answer carries a new refresh token and the old one dies (single-use);
#   standard:    refresh_token grant; the refresh token is kept until the provider sends another;
#   extend:      the access token is its own refresh credential; the answer is the same grant, extended;
#   re_exchange: a still-valid access token is exchanged (with the client's credentials) for a new long-lived one;
#   none:        nothing renews the grant: it ends with its access token (Connection Expiring, then needs_reauth).
REFRESH_STRATEGIES = ("rotating", "standard", "extend", "re_exchange", "none")
ACCESS_TOKEN_STRATEGIES = ("extend", "re_exchange")  # the stored access token is the refresh credential
# Where the account id comes from: a field of the token answer (`token_fields.account_id`), or the user-info call.
ACCOUNT_ID_SOURCES = ("token_response", "userinfo")
# What the provider does with PKCE (RFC 7636): `required` refuses an authorization without it, `supported` checks it
# when sent, `unsupported` must not be sent it. PKCE is sent unless the profile says `unsupported`: without it a
# code stolen from another user's flow could be injected into ours (RFC 9700 section 4.5).
PKCE_SUPPORT = ("required", "supported", "unsupported")
# How the challenge is written (`pkce`): RFC 7636 section 4.2 (base64url SHA-256), or TikTok's hex SHA-256, both
# sent as `S256`. There is no `none`: only a profile declaring `unsupported` sends no challenge.
PKCE_METHODS = ("s256", "s256-hex")
# The endpoints a profile calls or names; each must be https:// unless the deployment allows http:// (local mode).
ENDPOINTS = ("authorize_url", "token_url", "revoke_url", "userinfo_url", "issuer")
# eager: keep access tokens fresh; on_demand: refresh when the token route asks, plus a daily keep-alive;
# adaptive: eager for connections whose token was read recently (ADAPTIVE_READ_WINDOW), on_demand for the others
REFRESH_POLICIES = ("eager", "on_demand", "adaptive")

# What an error rule's `class` means for the connection: reconnect (the grant is gone: needs_reauth), transient
# (retried with backoff), rate_limited (retried, counted as rate limiting), operator_config (our client or app
# configuration: the provider's refreshes pause and the operator is alarmed), rejected (the request was refused).
ERROR_CLASSES: dict[str, FailureKind] = {
    "reconnect": TERMINAL, "transient": TRANSIENT, "rate_limited": TRANSIENT, "operator_config": OPERATOR,
    "rejected": REJECTED,
}
RATE_LIMITED_CODE = "rate_limit_exceeded"  # the code a `rate_limited` rule gives its error, when it names none

# RFC 6749 section 5.2 and 4.1.2.1 errors, with what each means for us.
STANDARD_ERRORS: dict[str, FailureKind] = {
    "invalid_grant": TERMINAL,
    "invalid_client": OPERATOR,
    "unauthorized_client": OPERATOR,
    "unsupported_grant_type": OPERATOR,
    "invalid_scope": OPERATOR,
    "invalid_request": REJECTED,
    "server_error": TRANSIENT,
    "temporarily_unavailable": TRANSIENT,
    "rate_limit_exceeded": TRANSIENT,
    "slow_down": TRANSIENT,
}


@dataclass(frozen=True)
class TokenFields:
    """Where a token response keeps each value. `account_id` may point into the id_token (`id_token.sub`)."""

    access_token: str = "access_token"
    refresh_token: str = "refresh_token"
    expires_in: str = "expires_in"
    refresh_expires_in: str | None = None
    scope: str = "scope"
    token_type: str = "token_type"
    account_id: str | None = None


@dataclass(frozen=True)
class UserInfoFields:
    """How to read the user-info answer: dotted paths into the JSON."""

    query: dict[str, str] = field(default_factory=dict)
    success_path: str | None = None  # e.g. "error.code"
    success_value: str = "ok"
    account_id: str = "sub"
    display_name: str = "name"
    avatar_url: str = "picture"


@dataclass(frozen=True)
class WebhookFields:
    """A provider's deauthorization webhook: signed `t=<unix>,s=<hex HMAC-SHA256(secret, t.body)>`."""

    signature_header: str
    account_field: str
    removed_events: tuple[str, ...]
    reason_field: str | None = None  # dotted; a JSON string on the way is decoded
    created_field: str | None = None  # the event's own creation time (epoch seconds); None: the signature's time


# How a provider signs its deauthorize and data-deletion callbacks (`DeauthorizationFields.format`):
# `signed_request` is a form field `signed_request=<base64url signature>.<base64url JSON payload>`, the signature an
# HMAC-SHA256 of the payload part under the app secret (domain/signatures.py `verify_signed_request`).
DEAUTHORIZATION_FORMATS = ("signed_request",)


@dataclass(frozen=True)
class DeauthorizationFields:
    """A provider's signed deauthorize and data-deletion callbacks (`POST /deauthorize/{provider}`,
    `POST /data-deletion/{provider}`), verified with the provider's own client secret.

    `account_field`: the payload field naming the provider account (the connection's `account_id`);
    `time_field`: when the provider issued the request (epoch seconds; None: when we received it);
    `algorithm`: the only `algorithm` the payload may name; `data_deletion`: the provider sends data-deletion
    requests too, answered with a status URL and a confirmation code."""

    format: str
    account_field: str = "user_id"
    time_field: str | None = "issued_at"
    algorithm: str = "HMAC-SHA256"
    data_deletion: bool = True

    def __post_init__(self) -> None:
        if self.format not in DEAUTHORIZATION_FORMATS:
            raise ValueError(f"deauthorization format must be one of {DEAUTHORIZATION_FORMATS}, got {self.format!r}")


# The most channels one listing keeps, and the most pages of it fetched (`ChannelsFields.max_items`, `max_pages`).
MAX_CHANNELS = 200
MAX_CHANNEL_PAGES = 10


@dataclass(frozen=True)
class ChannelsFields:
    """How to list the channels a grant can post to (ADR 0024): one request with the connection's access token,
    then dotted paths into its JSON answer.

    `url`, `method` (GET), fixed `query` parameters and extra `headers` (LinkedIn's `X-Restli-Protocol-Version`,
    `LinkedIn-Version`); the access token as a bearer header, or (`bearer` false) as the `credential_param`
    query parameter (Meta's Graph API). `items`: the path of the list; in each item `id` (with `id_prefix`, only
    items whose id starts with it, the id being the tail: `urn:li:organization:{id}`), `name` (None: none),
    `token` (the channel's own derived token, e.g. a Page token; None: the provider issues none), `role_path` and
    `roles` (only items whose role is one of them). `next`: the path of the next page's URL (same host only),
    followed for at most `max_pages` pages; at most `max_items` channels are kept."""

    url: str
    method: str = "GET"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    bearer: bool = True
    credential_param: str = "access_token"
    items: str = "data"
    id: str = "id"
    id_prefix: str | None = None
    name: str | None = "name"
    token: str | None = None
    role_path: str | None = None
    roles: tuple[str, ...] = ()
    next: str | None = None
    max_items: int = 100
    max_pages: int = 1


@dataclass(frozen=True)
class LifetimeBounds:
    """What a provider's `expires_in`-style value may plausibly be, in seconds.

    A value that is missing, not a number, or outside [minimum, maximum] is not trusted: the token is taken to
    live `fallback` seconds, the provider's shortest documented lifetime (a token thought to die sooner than it
    does costs one early refresh; the other way round, a failed post)."""

    minimum: int
    maximum: int
    fallback: int

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.fallback <= self.maximum:
            raise ValueError(f"lifetime bounds need 0 < minimum <= fallback <= maximum, got {self}")


@dataclass(frozen=True)
class RequestShape:
    """How one request to the provider is made: a code exchange, a refresh, a revoke, user info, or a chain link.

    `url` None: the profile's endpoint for the step (`token_url`, `revoke_url`, `userinfo_url`). `client_auth` None:
    the profile's `client_auth`. `params` are fixed extra parameters (e.g. `grant_type`, `continuous_refresh`);
    `credential_param` names the parameter the token travels in (a refresh: `refresh_token`, or `access_token`
    for an extension; a revoke: `token`; user info with `bearer` false: the access token's query parameter)."""

    url: str | None = None
    method: str = "POST"
    encoding: str = "form"
    client_auth: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    credential_param: str | None = None
    bearer: bool = True  # user info: the access token in `Authorization: Bearer` (RFC 6750 section 2.1)
    # A token step's own bounds for the access token it answers (None: the profile's `access_lifetime`): a chain's
    # long-lived token, or its extension, has another documented lifetime than the code's short-lived one.
    access_lifetime: LifetimeBounds | None = None


@dataclass(frozen=True)
class Timing:
    """When a grant may and must be renewed, in seconds.

    `min_token_age`: a token younger than this is never sent to be extended (Meta: 24 h). `hard_cap`: the grant
    ends this long after consent whatever refreshing does (LinkedIn's 365 days). `disuse_expiry`: the refresh
    credential dies after this long without a refresh (Google: 6 months unused; Pinterest: 60 days), so each
    refresh moves its end and the schedule keeps it used. `app_status_caps`: hard caps an app status imposes
    (Google's Testing mode: 7 days), chosen by the deployment's `<NAME>_APP_STATUS` (`app_status`)."""

    min_token_age: int = 0
    hard_cap: int | None = None
    disuse_expiry: int | None = None
    app_status_caps: dict[str, int] = field(default_factory=dict)
    app_status: str | None = None

    @property
    def effective_cap(self) -> int | None:
        """The hard cap in force: the profile's, or the app status's when shorter."""
        caps = [c for c in (self.hard_cap, self.app_status_caps.get(self.app_status or "")) if c]
        return min(caps) if caps else None


@dataclass(frozen=True)
class ErrorRule:
    """An answer matched by HTTP status (any of `status`; empty: any) and the value at a dotted JSON `path` (any
    of `equals`; empty: any value present), limited to `steps` (empty: every step). The first matching rule
    classifies the error (`error_class`, one of ERROR_CLASSES) under `code` (None: the answer's own code)."""

    error_class: str
    status: tuple[int, ...] = ()
    path: str | None = None
    equals: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    code: str | None = None

    def matches(self, body: Any, status: int | None, step: str | None) -> bool:
        if self.steps and step not in self.steps:
            return False
        if self.status and status not in self.status:
            return False
        if self.path is None:
            return True
        value: Any = body
        for key in self.path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or isinstance(value, dict | list):
            return False
        return not self.equals or str(value) in self.equals


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    display_name: str
    authorize_url: str
    token_url: str
    revoke_url: str | None
    userinfo_url: str | None
    client_id_param: str = "client_id"
    client_auth: str = "client_secret_post"
    scope_separator: str = " "
    granted_scopes_param: str | None = None  # callback query parameter listing granted scopes
    pkce: str = "s256"  # the challenge method, one of PKCE_METHODS
    pkce_support: str = "supported"  # what the provider does with PKCE, one of PKCE_SUPPORT
    default_scopes: tuple[str, ...] = ()
    always_granted_scopes: tuple[str, ...] = ()
    token_fields: TokenFields = TokenFields()
    userinfo: UserInfoFields = UserInfoFields()
    error_classes: dict[str, str] = field(default_factory=lambda: dict(STANDARD_ERRORS))
    rotates_refresh_tokens: bool = True
    # The provider issues refresh tokens with the code exchange: without one, a connect cannot stay connected.
    issues_refresh_tokens: bool = True
    access_lifetime: LifetimeBounds = LifetimeBounds(minimum=30, maximum=366 * 86_400, fallback=600)
    refresh_lifetime: LifetimeBounds = LifetimeBounds(minimum=60, maximum=10 * 366 * 86_400, fallback=86_400)
    refresh_policy: str = "eager"  # one of REFRESH_POLICIES (domain/schedule.py effective_policy)
    issuer: str | None = None  # RFC 9207: the `iss` the authorization response must carry, when it carries one
    require_iss: bool = False  # the server promised `iss` (discovery said so): its absence is a mix-up
    discovery: bool = False  # fill endpoints from <issuer>/.well-known/openid-configuration
    webhook: WebhookFields | None = None
    deauthorization: DeauthorizationFields | None = None  # signed deauthorize and data-deletion callbacks
    # Fixed extra parameters of the authorization request, e.g. TikTok's `disable_auto_auth=1`: the consent
    # screen is always shown, so a user finishing someone else's connect link sees which app asks for what.
    authorize_params: dict[str, str] = field(default_factory=dict)
    # -- the growing format (see the module docstring); each default is what a profile without it always meant --
    refresh_strategy: str = "rotating"  # one of REFRESH_STRATEGIES (legacy profiles: derived from the two flags)
    requests: dict[str, RequestShape] = field(default_factory=dict)  # by step (STEPS); absent: RFC 6749's shape
    chain: tuple[RequestShape, ...] = ()  # exchanges after the code's, each for the previous access token
    timing: Timing = Timing()
    error_rules: tuple[ErrorRule, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request to the provider
    account_id_source: str = "token_response"
    # Choices a deployment may make where the provider's facts are uncertain (`<NAME>_<KEY>` settings), e.g. a
    # LinkedIn app without partner refresh tokens: {"refresh_strategy": ("standard", "none")}.
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    channels: ChannelsFields | None = None  # how to list the channels one grant can post to (None: it has none)

    def __post_init__(self) -> None:
        if self.pkce_support not in PKCE_SUPPORT:
            raise ValueError(f"{self.name}: pkce_support must be one of {PKCE_SUPPORT}, got {self.pkce_support!r}")
        if self.pkce not in PKCE_METHODS:
            hint = " (PKCE can no longer be switched off: a provider that cannot take it declares pkce_support " \
                   "'unsupported' in its profile)" if self.pkce == "none" else ""
            raise ValueError(f"{self.name}: pkce must be one of {PKCE_METHODS}, got {self.pkce!r}{hint}")

    @property
    def refreshes_with_access_token(self) -> bool:
        """Whether the stored access token (not a refresh token) renews the grant: it must be renewed before it
        expires, and the grant ends when it does."""
        return self.refresh_strategy in ACCESS_TOKEN_STRATEGIES

    def request(self, step: str) -> RequestShape:
        """The shape of `step`'s request (STEPS), its URL and client authentication filled from the profile."""
        shape = self.requests.get(step) or RequestShape()
        default_url = {"code_exchange": self.token_url, "refresh": self.token_url, "revoke": self.revoke_url,
                       "userinfo": self.userinfo_url}[step]
        credential = shape.credential_param or {
            "refresh": "access_token" if self.refreshes_with_access_token else "refresh_token",
            "revoke": "token", "userinfo": "access_token", "code_exchange": "code"}[step]
        method = shape.method if step in self.requests else ("GET" if step == "userinfo" else "POST")
        encoding = shape.encoding if step in self.requests else ("query" if step == "userinfo" else "form")
        return replace(shape, url=shape.url or default_url, client_auth=shape.client_auth or self.client_auth,
                       credential_param=credential, method=method, encoding=encoding)

    def link(self, index: int) -> RequestShape:
        """The shape of chain link `index`, its client authentication filled from the profile."""
        shape = self.chain[index]
        return replace(shape, client_auth=shape.client_auth or self.client_auth,
                       credential_param=shape.credential_param or "access_token")

    @property
    def sends_pkce(self) -> bool:
        """Whether authorizations carry a PKCE challenge: always, unless the provider cannot take one."""
        return self.pkce_support != "unsupported"

    def insecure_endpoints(self) -> list[str]:
        """The names of the endpoints set to anything but an absolute https:// URL, in order: ENDPOINTS, then
        `refresh_url` (a refresh step's own URL), `chain_url` (a chain link's) and `channels_url` (the channel
        listing's)."""
        insecure = []
        for name in ENDPOINTS:
            value = getattr(self, name)
            if value and not _is_https(value):
                insecure.append(name)
        own = [("refresh_url", (self.requests.get("refresh") or RequestShape()).url),
               *(("chain_url", link.url) for link in self.chain),
               ("channels_url", self.channels.url if self.channels else None)]
        for name, value in own:
            if value and not _is_https(value) and name not in insecure:
                insecure.append(name)
        return insecure

    def classify(self, error_code: str | None, http_status: int | None) -> FailureKind:
        """Whose problem an error is. HTTP 429 and 5xx are transient whatever the body says."""
        if http_status == 429 or (http_status is not None and http_status >= 500):
            return TRANSIENT
        return FailureKind(self.error_classes.get(error_code or "", REJECTED))

    def classify_answer(self, body: Any, http_status: int | None, step: str | None,
                        error_code: str | None) -> tuple[str | None, FailureKind]:
        """The code and kind of an error answer: HTTP 429 and 5xx are transient whatever the body says; else the
        first matching `error_rules` entry; else `error_classes` by the answer's code (`error_code`).

        `step` is one of STEPS or `chain`. Returns (code, kind): a rule may rename the code (a `rate_limited` rule
        without one gives RATE_LIMITED_CODE, so the refresh is counted as rate limited)."""
        if http_status == 429 or (http_status is not None and http_status >= 500):
            return error_code, TRANSIENT
        for rule in self.error_rules:
            if rule.matches(body, http_status, step):
                # A rate limit keeps one code, so refreshes count it as such (usecases/refresh.failure_reason).
                code = RATE_LIMITED_CODE if rule.error_class == "rate_limited" else (rule.code or error_code)
                return code, ERROR_CLASSES[rule.error_class]
        return error_code, self.classify(error_code, http_status)

    def join_scopes(self, scopes: tuple[str, ...] | list[str]) -> str:
        return self.scope_separator.join(scopes)

    def split_scopes(self, value: str | None) -> tuple[str, ...]:
        if not value:
            return ()
        parts = re.split(r"[,\s]+", value) if self.scope_separator.strip() == "," else value.split()
        return tuple(dict.fromkeys(p for p in (s.strip() for s in parts) if p))


def _is_https(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme == "https" and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


SCOPE_PATTERN = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


@cache
def _profile_file(name: str) -> dict[str, Any] | None:
    path = _PROFILES / f"{name}.json"
    if not re.fullmatch(r"[a-z0-9_-]{1,32}", name) or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


REQUIRED_KEYS = ("name", "display_name", "authorize_url", "token_url", "revoke_url", "userinfo_url")
_SHAPE_KEYS = {f.name for f in fields(RequestShape)}
_TIMING_KEYS = {"min_token_age", "hard_cap", "disuse_expiry", "app_status_caps"}
_RULE_KEYS = {"class", "status", "path", "equals", "steps", "code"}
_PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")


def profile_from_data(data: dict[str, Any]) -> ProviderProfile:
    """A profile from its JSON form (profiles/profile.schema.json), checked as strictly as the schema checks it:
    unknown keys, wrong types and values outside their enums raise ValueError, so a typo never passes silently.

    Profiles written before `refresh_strategy` keep their meaning: `issues_refresh_tokens` false is `none`,
    `rotates_refresh_tokens` true (the default) is `rotating`, false is `standard`. A profile giving both the
    strategy and a flag that contradicts it is refused."""
    if not isinstance(data, dict):
        raise ValueError("a profile is a JSON object")
    if not isinstance(data.get("name"), str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", data["name"]):
        raise ValueError("name must be 1 to 32 of a-z, 0-9, _ and -")
    known = {f.name for f in fields(ProviderProfile)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown profile keys: {sorted(unknown)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"missing profile keys: {missing}")
    _check_top(data)
    values = dict(data)
    token_fields = _object(data, "token_fields", {f.name for f in fields(TokenFields)})
    if not all(isinstance(v, str) or v is None and k in ("refresh_expires_in", "account_id")
               for k, v in token_fields.items()):
        raise ValueError("token_fields values must be strings")
    values["token_fields"] = TokenFields(**token_fields)
    userinfo = _object(data, "userinfo", {f.name for f in fields(UserInfoFields)})
    if not all(isinstance(v, str) or v is None and k == "success_path" for k, v in userinfo.items() if k != "query"):
        raise ValueError("userinfo values must be strings")
    values["userinfo"] = UserInfoFields(**{**userinfo, "query": _string_map(userinfo.get("query", {}),
                                                                            "userinfo.query")})
    classes = _string_map(data.get("error_classes", {}), "error_classes")
    if any(v not in {k.value for k in FailureKind} for v in classes.values()):
        raise ValueError(f"error_classes values must be one of {[k.value for k in FailureKind]}")
    values["error_classes"] = {**STANDARD_ERRORS, **classes}
    for name in ("access_lifetime", "refresh_lifetime"):
        if data.get(name) is not None:
            values[name] = _bounds(data, name)
    webhook = data.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, dict):
            raise ValueError("webhook must be an object or null")
        webhook = _object(data, "webhook", {f.name for f in fields(WebhookFields)})
        if not all(isinstance(webhook.get(k), str) for k in ("signature_header", "account_field")) or not all(
                isinstance(webhook.get(k), str | None) for k in ("reason_field", "created_field")):
            raise ValueError("webhook needs signature_header and account_field, and its fields are strings")
        if not isinstance(webhook.get("removed_events"), list) or not all(
                isinstance(e, str) for e in webhook["removed_events"]):
            raise ValueError("webhook.removed_events must be a list of strings")
    values["webhook"] = WebhookFields(**{**webhook, "removed_events": tuple(webhook["removed_events"])}) \
        if webhook else None
    deauthorization = data.get("deauthorization")
    if deauthorization is not None:
        if not isinstance(deauthorization, dict):
            raise ValueError("deauthorization must be an object or null")
        deauthorization = _object(data, "deauthorization", {f.name for f in fields(DeauthorizationFields)})
        if "format" not in deauthorization or not all(
                isinstance(deauthorization.get(k, "x"), str) and deauthorization.get(k, "x")
                for k in ("account_field", "algorithm")) \
                or not isinstance(deauthorization.get("time_field"), str | None) \
                or not isinstance(deauthorization.get("data_deletion", True), bool):
            raise ValueError("deauthorization needs a format; account_field and algorithm are non-empty strings, "
                             "time_field a string or null, data_deletion a boolean")
    values["deauthorization"] = DeauthorizationFields(**deauthorization) if deauthorization else None
    for name in ("default_scopes", "always_granted_scopes"):
        scopes = data.get(name, [])
        if not isinstance(scopes, list) or not all(isinstance(x, str) and SCOPE_PATTERN.match(x) for x in scopes):
            raise ValueError(f"{name} must be a list of scopes")
        values[name] = tuple(scopes)
    values["authorize_params"] = _string_map(data.get("authorize_params", {}), "authorize_params")
    values["headers"] = _string_map(data.get("headers", {}), "headers")
    requests = _object(data, "requests", set(STEPS))
    values["requests"] = {step: _shape(shape, f"requests.{step}") for step, shape in requests.items()}
    chain = data.get("chain", [])
    if not isinstance(chain, list):
        raise ValueError("chain must be a list of requests")
    values["chain"] = tuple(_shape(link, f"chain[{i}]", needs_url=True) for i, link in enumerate(chain))
    values["timing"] = _timing(data.get("timing", {}))
    rules = data.get("error_rules", [])
    if not isinstance(rules, list):
        raise ValueError("error_rules must be a list")
    values["error_rules"] = tuple(_rule(rule, i) for i, rule in enumerate(rules))
    values.update(_strategy(data))
    choices = _object(data, "choices", {"refresh_strategy"})
    if any(not isinstance(v, list) or not v or any(c not in REFRESH_STRATEGIES for c in v) for v in choices.values()):
        raise ValueError(f"choices.refresh_strategy must list strategies of {REFRESH_STRATEGIES}")
    values["choices"] = {k: tuple(v) for k, v in choices.items()}
    values["channels"] = _channels(data["channels"]) if data.get("channels") is not None else None
    return ProviderProfile(**values)


def _check_top(data: dict[str, Any]) -> None:
    """The scalar keys' types and enums (the nested sections are checked where they are built)."""
    text = ("name", "display_name", "authorize_url", "token_url", "client_id_param", "scope_separator", "pkce",
            "pkce_support", "refresh_policy",
            "refresh_strategy", "account_id_source")
    optional_text = ("revoke_url", "userinfo_url", "granted_scopes_param", "issuer")
    flags = ("rotates_refresh_tokens", "issues_refresh_tokens", "require_iss", "discovery")
    for key in text:
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{key} must be a string")
    for key in optional_text:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"{key} must be a string or null")
    for key in flags:
        if key in data and not isinstance(data[key], bool):
            raise ValueError(f"{key} must be true or false")
    if "scope_separator" in data and not data["scope_separator"]:
        raise ValueError("scope_separator must not be empty")
    for key, allowed in (("client_auth", CLIENT_AUTH), ("refresh_policy", REFRESH_POLICIES),
                         ("refresh_strategy", REFRESH_STRATEGIES), ("account_id_source", ACCOUNT_ID_SOURCES)):
        if key in data and data[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {data[key]!r}")


def _strategy(data: dict[str, Any]) -> dict[str, Any]:
    """`refresh_strategy` and the two flags older code reads, each derived from the other (see profile_from_data)."""
    issues, rotates = data.get("issues_refresh_tokens", True), data.get("rotates_refresh_tokens", True)
    legacy = "none" if not issues else "rotating" if rotates else "standard"
    strategy = data.get("refresh_strategy", legacy)
    derived = {"issues_refresh_tokens": strategy in ("rotating", "standard"),
               "rotates_refresh_tokens": strategy == "rotating"}
    for flag, value in derived.items():
        if flag in data and data[flag] != value and "refresh_strategy" in data:
            raise ValueError(f"{flag}={str(data[flag]).lower()} contradicts refresh_strategy {strategy!r}")
    return {"refresh_strategy": strategy, **derived}


def _object(data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    """`data[name]`, an object with keys from `allowed` only ({} when absent)."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object")
    unknown = set(value) - allowed
    if unknown:
        raise ValueError(f"unknown {name} keys: {sorted(unknown)}")
    return value


def _string_map(value: Any, name: str) -> dict[str, str]:
    """An object of strings (the caller passes {} for an absent key)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{name} must map strings to strings")
    return dict(value)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _bounds(data: dict[str, Any], name: str) -> LifetimeBounds:
    """`data[name]` as LifetimeBounds. Raises ValueError as the schema refuses (and for an order it cannot say)."""
    if not isinstance(data[name], dict):
        raise ValueError(f"{name} must be an object")
    bounds = _object(data, name, {"minimum", "maximum", "fallback"})
    if set(bounds) != {"minimum", "maximum", "fallback"} or not all(_is_count(v) for v in bounds.values()):
        raise ValueError(f"{name} needs integer minimum, maximum and fallback")
    return LifetimeBounds(**bounds)


def _shape(value: Any, where: str, *, needs_url: bool = False) -> RequestShape:
    shape = _object({where: value}, where, _SHAPE_KEYS)
    for key in ("url", "client_auth", "credential_param"):
        if shape.get(key) is not None and not isinstance(shape[key], str):
            raise ValueError(f"{where}.{key} must be a string")
    if needs_url and not shape.get("url"):
        raise ValueError(f"{where} needs a url")
    method, encoding = shape.get("method", "POST"), shape.get("encoding", "form")
    if method not in HTTP_METHODS or encoding not in ENCODINGS:
        raise ValueError(f"{where}: method must be one of {HTTP_METHODS}, encoding one of {ENCODINGS}")
    if method == "GET" and encoding != "query":
        raise ValueError(f"{where}: a GET request carries its parameters in the query (encoding 'query')")
    if shape.get("client_auth") is not None and shape["client_auth"] not in STEP_CLIENT_AUTH:
        raise ValueError(f"{where}.client_auth must be one of {STEP_CLIENT_AUTH}")
    if "bearer" in shape and not isinstance(shape["bearer"], bool):
        raise ValueError(f"{where}.bearer must be true or false")
    name = f"{where}.access_lifetime"
    lifetime = _bounds({name: shape["access_lifetime"]}, name) if shape.get("access_lifetime") is not None else None
    return RequestShape(**{**shape, "params": _string_map(shape.get("params", {}), f"{where}.params"),
                           "access_lifetime": lifetime})


_CHANNEL_KEYS = {f.name for f in fields(ChannelsFields)}


def _channels(value: Any) -> ChannelsFields:
    """The `channels` section (see ChannelsFields). Raises ValueError as the schema refuses."""
    where = "channels"
    section = _object({where: value}, where, _CHANNEL_KEYS)
    if not isinstance(section.get("url"), str) or not section["url"]:
        raise ValueError("channels needs a url")
    if section.get("method", "GET") != "GET":
        raise ValueError("channels.method must be GET")
    for key in ("items", "id"):
        if key in section and not (isinstance(section[key], str) and _PATH.match(section[key])):
            raise ValueError(f"channels.{key} must be a dotted JSON path")
    for key in ("name", "token", "role_path", "next"):
        if section.get(key) is not None and not (isinstance(section[key], str) and _PATH.match(section[key])):
            raise ValueError(f"channels.{key} must be a dotted JSON path or null")
    for key in ("id_prefix",):
        if section.get(key) is not None and not (isinstance(section[key], str) and section[key]):
            raise ValueError(f"channels.{key} must be a non-empty string or null")
    if "credential_param" in section and not (isinstance(section["credential_param"], str)
                                              and section["credential_param"]):
        raise ValueError("channels.credential_param must be a non-empty string")
    if "bearer" in section and not isinstance(section["bearer"], bool):
        raise ValueError("channels.bearer must be true or false")
    roles = section.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise ValueError("channels.roles must be a list of strings")
    if bool(roles) != (section.get("role_path") is not None):
        raise ValueError("channels.roles and channels.role_path go together")
    for key, high in (("max_items", MAX_CHANNELS), ("max_pages", MAX_CHANNEL_PAGES)):
        if key in section and not (_is_count(section[key]) and 1 <= section[key] <= high):
            raise ValueError(f"channels.{key} must be an integer from 1 to {high}")
    return ChannelsFields(**{**section, "query": _string_map(section.get("query", {}), "channels.query"),
                             "headers": _string_map(section.get("headers", {}), "channels.headers"),
                             "roles": tuple(roles)})


def _timing(value: Any) -> Timing:
    timing = _object({"timing": value}, "timing", _TIMING_KEYS)
    if "min_token_age" in timing and not _is_count(timing["min_token_age"]):
        raise ValueError("timing.min_token_age must be a number of seconds")
    for key in ("min_token_age", "hard_cap", "disuse_expiry"):
        if timing.get(key) is not None and not (_is_count(timing[key]) and timing[key] > 0 or
                                                key == "min_token_age" and timing[key] == 0):
            raise ValueError(f"timing.{key} must be a positive number of seconds")
    caps = timing.get("app_status_caps", {})
    if not isinstance(caps, dict) or not all(isinstance(k, str) and _is_count(v) and v > 0 for k, v in caps.items()):
        raise ValueError("timing.app_status_caps must map app statuses to positive seconds")
    return Timing(min_token_age=timing.get("min_token_age") or 0, hard_cap=timing.get("hard_cap"),
                  disuse_expiry=timing.get("disuse_expiry"), app_status_caps=dict(caps))


def _rule(value: Any, index: int) -> ErrorRule:
    where = f"error_rules[{index}]"
    rule = _object({where: value}, where, _RULE_KEYS)
    if not isinstance(value, dict) or rule.get("class") not in tuple(ERROR_CLASSES):
        raise ValueError(f"{where}.class must be one of {tuple(ERROR_CLASSES)}")
    status = rule.get("status", [])
    if not isinstance(status, list) or not all(type(s) is int and 100 <= s <= 599 for s in status):
        raise ValueError(f"{where}.status must be a list of HTTP statuses")
    path = rule.get("path")
    if path is not None and not (isinstance(path, str) and _PATH.match(path)):
        raise ValueError(f"{where}.path must be a dotted JSON path")
    equals = rule.get("equals", [])
    if not isinstance(equals, list) or not all(isinstance(v, str) or type(v) is int for v in equals):
        raise ValueError(f"{where}.equals must be a list of strings and integers")
    if equals and path is None:
        raise ValueError(f"{where}.equals needs a path")
    steps = rule.get("steps", [])
    if not isinstance(steps, list) or not all(s in (*STEPS, "chain") for s in steps):
        raise ValueError(f"{where}.steps must list steps of {(*STEPS, 'chain')}")
    if rule.get("code") is not None and not (isinstance(rule["code"], str) and 0 < len(rule["code"]) <= 64):
        raise ValueError(f"{where}.code must be a short string")
    if not (status or path):
        raise ValueError(f"{where} must match on a status or a path")
    return ErrorRule(error_class=rule["class"], status=tuple(status), path=path,
                     equals=tuple(str(v) for v in equals), steps=tuple(steps), code=rule.get("code"))


def profile_for(name: str, enabled: tuple[str, ...],
                overrides_by_provider: Mapping[str, Mapping[str, str]]) -> ProviderProfile:
    """The named profile with the deployment's overrides (`<NAME>_<KEY>` settings) applied.

    Raises NotFound for a provider not enabled (or without a profile), ValueError for an override outside
    its allowed values (PKCE method, refresh policy, client authentication) or a PKCE method given to a
    profile that sends no PKCE."""
    if name not in enabled:
        raise NotFound("Unknown provider.", code="unknown_provider", field="provider")
    overrides = overrides_by_provider.get(name, {})
    data = _profile_file(overrides.get("profile", name)) or (
        _profile_file("generic") if overrides.get("profile") == "generic" else None
    )
    if data is None:
        raise NotFound("Unknown provider.", code="unknown_provider", field="provider")
    return with_overrides(profile_from_data({**data, "name": name}), overrides)


def with_overrides(base: ProviderProfile, overrides: Mapping[str, str]) -> ProviderProfile:
    """`base` with a deployment's `<NAME>_<KEY>` settings applied (see profile_for; ValueError as there)."""
    name = base.name
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if k in ENDPOINTS}
    if "refresh_url" in overrides:  # a refresh endpoint of its own (e.g. on another host than the token endpoint)
        shape = base.requests.get("refresh") or RequestShape()
        changes["requests"] = {**base.requests, "refresh": replace(shape, url=overrides["refresh_url"])}
    if "channels_url" in overrides:
        if base.channels is None:
            raise ValueError(f"{name}: its profile lists no channels, so no channels URL applies")
        changes["channels"] = replace(base.channels, url=overrides["channels_url"])
    if "chain_url" in overrides:
        if not base.chain:
            raise ValueError(f"{name}: its profile has no chain, so no chain URL applies")
        changes["chain"] = tuple(replace(link, url=overrides["chain_url"]) for link in base.chain)
    if "refresh_strategy" in overrides:
        allowed = base.choices.get("refresh_strategy", (base.refresh_strategy,))
        if overrides["refresh_strategy"] not in allowed:
            raise ValueError(f"{name}: refresh_strategy must be one of {allowed}")
        strategy = overrides["refresh_strategy"]
        changes.update(refresh_strategy=strategy, issues_refresh_tokens=strategy in ("rotating", "standard"),
                       rotates_refresh_tokens=strategy == "rotating")
    if "app_status" in overrides:
        allowed = ("production", *base.timing.app_status_caps)
        if overrides["app_status"] not in allowed:
            raise ValueError(f"{name}: app_status must be one of {allowed}")
        changes["timing"] = replace(base.timing, app_status=overrides["app_status"])
    if "display_name" in overrides:
        changes["display_name"] = overrides["display_name"]
    if "scopes" in overrides:
        changes["default_scopes"] = base.split_scopes(overrides["scopes"].replace(",", base.scope_separator))
    for key, allowed in (("pkce", PKCE_METHODS), ("refresh_policy", REFRESH_POLICIES), ("client_auth", CLIENT_AUTH)):
        if key in overrides:
            if overrides[key] not in allowed:
                raise ValueError(f"{name}: {key} must be one of {allowed}")
            changes[key] = overrides[key]
    if "pkce" in changes and not base.sends_pkce:
        raise ValueError(f"{name}: its profile declares PKCE unsupported, so no PKCE method applies")
    if "discovery" in overrides:
        changes["discovery"] = overrides["discovery"].lower() in ("1", "true", "yes")
    return replace(base, **changes) if changes else base
