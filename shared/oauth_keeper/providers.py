"""Provider profiles: everything provider-specific, as data. TikTok is one profile, not code branches."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .errors import NotFound, ProviderError
from .settings import PKCE_MODES, REFRESH_POLICIES, Settings

TRANSIENT, TERMINAL, OPERATOR, REJECTED = (
    ProviderError.TRANSIENT, ProviderError.TERMINAL, ProviderError.OPERATOR, ProviderError.REJECTED,
)

# RFC 6749 section 5.2 and 4.1.2.1 errors, with what each means for us.
STANDARD_ERRORS: dict[str, str] = {
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
    """Where a token response keeps each value."""

    access_token: str = "access_token"
    refresh_token: str = "refresh_token"
    expires_in: str = "expires_in"
    refresh_expires_in: str | None = None
    scope: str = "scope"
    token_type: str = "token_type"
    account_id: str | None = None  # when the token response names the account (TikTok: open_id)


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
class ProviderProfile:
    name: str
    display_name: str
    authorize_url: str
    token_url: str
    revoke_url: str | None
    userinfo_url: str | None
    client_id_param: str = "client_id"
    scope_separator: str = " "
    granted_scopes_param: str | None = None  # callback query parameter listing granted scopes
    pkce: str = "s256"
    default_scopes: tuple[str, ...] = ()
    always_granted_scopes: tuple[str, ...] = ()
    token_fields: TokenFields = TokenFields()
    userinfo: UserInfoFields = UserInfoFields()
    error_classes: dict[str, str] = field(default_factory=lambda: dict(STANDARD_ERRORS))
    rotates_refresh_tokens: bool = True
    refresh_policy: str = "eager"  # eager: keep access tokens fresh; on_demand: refresh when asked, keep-alive sweep

    def classify(self, error_code: str | None, http_status: int | None) -> str:
        """Whose problem an error is. HTTP 429 and 5xx are transient whatever the body says."""
        if http_status == 429 or (http_status is not None and http_status >= 500):
            return TRANSIENT
        return self.error_classes.get(error_code or "", REJECTED)

    def join_scopes(self, scopes: tuple[str, ...] | list[str]) -> str:
        return self.scope_separator.join(scopes)

    def split_scopes(self, value: str | None) -> tuple[str, ...]:
        if not value:
            return ()
        parts = re.split(r"[,\s]+", value) if self.scope_separator.strip() == "," else value.split()
        return tuple(dict.fromkeys(p for p in (s.strip() for s in parts) if p))


TIKTOK = ProviderProfile(
    name="tiktok",
    display_name="TikTok",
    authorize_url="https://www.tiktok.com/v2/auth/authorize/",
    token_url="https://open.tiktokapis.com/v2/oauth/token/",
    revoke_url="https://open.tiktokapis.com/v2/oauth/revoke/",
    userinfo_url="https://open.tiktokapis.com/v2/user/info/",
    client_id_param="client_key",
    scope_separator=",",
    granted_scopes_param="scopes",
    pkce="s256-hex",
    default_scopes=("user.info.basic",),
    always_granted_scopes=("user.info.basic",),
    token_fields=TokenFields(refresh_expires_in="refresh_expires_in", account_id="open_id"),
    userinfo=UserInfoFields(
        query={"fields": "open_id,union_id,avatar_url,display_name"},
        success_path="error.code",
        success_value="ok",
        account_id="data.user.open_id",
        display_name="data.user.display_name",
        avatar_url="data.user.avatar_url",
    ),
    error_classes={**STANDARD_ERRORS, "access_token_invalid": TERMINAL},
    rotates_refresh_tokens=True,
)

_BUILTIN = {p.name: p for p in (TIKTOK,)}

SCOPE_PATTERN = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


def known_providers() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def profile_for(name: str, settings: Settings) -> ProviderProfile:
    """The profile with the deployment's overrides (scopes, PKCE mode, endpoint URLs) applied."""
    base = _BUILTIN.get(name)
    if base is None:
        raise NotFound("Unknown provider.", code="unknown_provider", field="provider")
    overrides = settings.provider_overrides.get(name, {})
    changes: dict[str, object] = {k: v for k, v in overrides.items() if k.endswith("_url")}
    if "scopes" in overrides:
        changes["default_scopes"] = base.split_scopes(overrides["scopes"])
    if "refresh_policy" in overrides:
        if overrides["refresh_policy"] not in REFRESH_POLICIES:
            raise ValueError(f"refresh policy must be one of {REFRESH_POLICIES}")
        changes["refresh_policy"] = overrides["refresh_policy"]
    if "pkce" in overrides:
        if overrides["pkce"] not in PKCE_MODES:
            raise ValueError(f"PKCE mode must be one of {PKCE_MODES}")
        changes["pkce"] = overrides["pkce"]
    return replace(base, **changes) if changes else base
