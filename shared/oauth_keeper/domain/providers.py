"""Provider profiles: everything provider-specific, as data (profiles/*.json). TikTok is one profile.

A deployment enables providers by name (PROVIDERS=tiktok,acme). A name with a file in profiles/ uses it; any
other name is built on the generic RFC 6749 profile (`<NAME>_PROFILE=generic`). `<NAME>_<KEY>` settings
override endpoints, scopes, the PKCE challenge method, client authentication, issuer and discovery without code
changes. Whether PKCE is sent is the profile's alone (`pkce_support`): no setting turns it off.
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
CLIENT_AUTH = ("client_secret_post", "client_secret_basic")  # RFC 6749 section 2.3.1
# What the provider does with PKCE (RFC 7636): `required` refuses an authorization without it, `supported` checks it
# when sent, `unsupported` must not be sent it. PKCE is sent unless the profile says `unsupported`: without it a
# code stolen from another user's flow could be injected into ours (RFC 9700 section 4.5).
PKCE_SUPPORT = ("required", "supported", "unsupported")
# How the challenge is written (`pkce`): RFC 7636 section 4.2 (base64url SHA-256), or TikTok's hex SHA-256, both
# sent as `S256`. There is no `none`: only a profile declaring `unsupported` sends no challenge.
PKCE_METHODS = ("s256", "s256-hex")
# The endpoints a profile calls or names; each must be https:// unless the deployment allows http:// (local mode).
ENDPOINTS = ("authorize_url", "token_url", "revoke_url", "userinfo_url", "issuer")
# eager: keep access tokens fresh; on_demand: refresh when the token route asks, plus a daily keep-alive
REFRESH_POLICIES = ("eager", "on_demand")

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
    refresh_policy: str = "eager"  # eager: keep access tokens fresh; on_demand: refresh when asked, keep-alive
    issuer: str | None = None  # RFC 9207: the `iss` the authorization response must carry, when it carries one
    require_iss: bool = False  # the server promised `iss` (discovery said so): its absence is a mix-up
    discovery: bool = False  # fill endpoints from <issuer>/.well-known/openid-configuration
    webhook: WebhookFields | None = None
    deauthorization: DeauthorizationFields | None = None  # signed deauthorize and data-deletion callbacks
    # Fixed extra parameters of the authorization request, e.g. TikTok's `disable_auto_auth=1`: the consent
    # screen is always shown, so a user finishing someone else's connect link sees which app asks for what.
    authorize_params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pkce_support not in PKCE_SUPPORT:
            raise ValueError(f"{self.name}: pkce_support must be one of {PKCE_SUPPORT}, got {self.pkce_support!r}")
        if self.pkce not in PKCE_METHODS:
            hint = " (PKCE can no longer be switched off: a provider that cannot take it declares pkce_support " \
                   "'unsupported' in its profile)" if self.pkce == "none" else ""
            raise ValueError(f"{self.name}: pkce must be one of {PKCE_METHODS}, got {self.pkce!r}{hint}")

    @property
    def sends_pkce(self) -> bool:
        """Whether authorizations carry a PKCE challenge: always, unless the provider cannot take one."""
        return self.pkce_support != "unsupported"

    def insecure_endpoints(self) -> list[str]:
        """The names (ENDPOINTS) of the endpoints set to anything but an absolute https:// URL, in order."""
        insecure = []
        for name in ENDPOINTS:
            value = getattr(self, name)
            if value and not _is_https(value):
                insecure.append(name)
        return insecure

    def classify(self, error_code: str | None, http_status: int | None) -> FailureKind:
        """Whose problem an error is. HTTP 429 and 5xx are transient whatever the body says."""
        if http_status == 429 or (http_status is not None and http_status >= 500):
            return TRANSIENT
        return FailureKind(self.error_classes.get(error_code or "", REJECTED))

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


def profile_from_data(data: dict[str, Any]) -> ProviderProfile:
    """A profile from its JSON form; unknown keys are an error, so a typo never passes silently."""
    known = {f.name for f in fields(ProviderProfile)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown profile keys: {sorted(unknown)}")
    values = dict(data)
    values["token_fields"] = TokenFields(**(data.get("token_fields") or {}))
    values["userinfo"] = UserInfoFields(**(data.get("userinfo") or {}))
    values["error_classes"] = {**STANDARD_ERRORS, **(data.get("error_classes") or {})}
    for name in ("access_lifetime", "refresh_lifetime"):
        if data.get(name) is not None:
            values[name] = LifetimeBounds(**data[name])
    webhook = data.get("webhook")
    values["webhook"] = WebhookFields(**{**webhook, "removed_events": tuple(webhook["removed_events"])}) \
        if webhook else None
    deauthorization = data.get("deauthorization")
    values["deauthorization"] = DeauthorizationFields(**deauthorization) if deauthorization else None
    for name in ("default_scopes", "always_granted_scopes"):
        values[name] = tuple(data.get(name) or ())
    return ProviderProfile(**values)


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
    base = profile_from_data({**data, "name": name})
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if k.endswith("_url") or k in ("issuer",)}
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
