"""Deployment configuration, read from the environment once per cold start into a typed, immutable value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .domain.claims import CONFIRMATION_MODES
from .domain.connection import CONNECTION_ID_SCHEMES
from .domain.errors import ConfigurationError, NotFound
from .domain.providers import CLIENT_AUTH, PKCE_METHODS, REFRESH_POLICIES, profile_for
from .domain.schedule import (
    DEFAULT_READ_WINDOW,
    MAX_DUE_SHARDS,
    MAX_READ_WINDOW,
    MIN_READ_WINDOW,
    SCHEDULE_INDEXES,
)
from .domain.validation import normalize_origin

# What every function needs; template.yaml's Globals set each. Missing or empty: the cold start fails.
REQUIRED = ("CONNECTIONS_TABLE", "FLOWS_TABLE", "TOKEN_KEY_ARN", "OWNER_KEY_ARN", "EVENT_BUS_NAME",
            "REFRESH_QUEUE_URL", "STACK_NAME")


@dataclass(frozen=True)
class Settings:
    """One deployment's configuration (template.yaml's Globals). Times are seconds; names are AWS resource names."""

    connections_table: str
    flows_table: str
    token_key_arn: str
    event_bus_name: str
    owner_key_arn: str = ""  # the KMS HMAC key naming erased owners by a keyed hash (usecases/erasure.py)
    # The CloudFormation stack: the `stack` of the token data keys' KMS encryption context (adapters/kms.py).
    # Every function must see the same value, and it must never change: data keys made under it need it to open.
    stack_name: str = "oauth-keeper"
    ssm_prefix: str = "/oauth-keeper"
    # Empty: the handlers fall back to the API's own domain from the request context.
    public_base_url: str = ""
    allowed_return_origins: frozenset[str] = frozenset()
    due_shards: int = 16
    sweep_interval: int = 300  # seconds between sweeps (the schedule's rate)
    expiry_warning: int = 14 * 86400  # "Connection Expiring" when the refresh token ends within this
    refresh_concurrency: int = 8  # concurrent provider calls inside one worker invocation
    # The `adaptive` refresh policy (ADR 0026): a connection whose token was read within this many seconds is
    # kept fresh eagerly; one unread for twice as long gets the on_demand keep-alive.
    adaptive_read_window: int = DEFAULT_READ_WINDOW
    refresh_queue_url: str = ""
    # The queue only the webhook's role may send to, and the one source the worker takes removals from (its ARN:
    # a Lambda SQS record names its queue in `eventSourceARN`). Empty: removals are neither sent nor applied.
    removal_queue_url: str = ""
    removal_queue_arn: str = ""
    providers: tuple[str, ...] = ("tiktok",)  # enabled provider names
    # Per-provider overrides, e.g. {"tiktok": {"scopes": "...", "pkce": "s256-hex", "token_url": "..."}}
    provider_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # Connect confirmation (domain/claims.py): `required` holds each grant until the app's backend claims it
    # for its logged-in owner; `off` stores it at the callback (the contract before confirmation).
    connect_confirmation: str = "required"
    # How new connections get their ids (domain/connection.py CONNECTION_ID_SCHEMES): `random`, or `derived` for
    # the transition deploy over a stack from before random ids (README, upgrade notes).
    connection_ids: str = "random"
    # Where eager refreshes are scheduled (template parameter ScheduleIndex, ADR 0023): `cadence` puts an ordinary
    # eager refresh in the Cadence index (2 write units instead of 4); `due` moves each connection back to the Due
    # index at its next refresh (before a rollback to a version that reads only Due). The sweep reads both always.
    schedule_index: str = "cadence"
    # Local mode only (the simulator, the tests): provider endpoints may be http://. template.yaml never sets it.
    allow_http_endpoints: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from `env` (default: the process environment).

        Raises ConfigurationError naming every required variable that is missing or empty, any number or
        provider option outside its allowed values, and any provider endpoint that is not https:// (unless
        ALLOW_HTTP_ENDPOINTS=true), so a broken deployment fails at cold start, loudly."""
        env = dict(os.environ if env is None else env)
        missing = [name for name in REQUIRED if not env.get(name, "").strip()]
        if missing:
            raise ConfigurationError(f"Missing configuration: {', '.join(missing)} (set by template.yaml).")
        settings = cls(
            connections_table=env["CONNECTIONS_TABLE"].strip(),
            flows_table=env["FLOWS_TABLE"].strip(),
            token_key_arn=env["TOKEN_KEY_ARN"].strip(),
            event_bus_name=env["EVENT_BUS_NAME"].strip(),
            owner_key_arn=env["OWNER_KEY_ARN"].strip(),
            stack_name=env["STACK_NAME"].strip(),
            ssm_prefix=env.get("SSM_PREFIX", "/oauth-keeper").rstrip("/"),
            public_base_url=env.get("PUBLIC_BASE_URL", "").rstrip("/"),
            allowed_return_origins=frozenset(
                normalize_origin(o) for o in env.get("ALLOWED_RETURN_ORIGINS", "").split(",") if o.strip()
            ),
            due_shards=_number(env, "DUE_SHARDS", 16, low=1, high=MAX_DUE_SHARDS),
            sweep_interval=60 * _number(env, "SWEEP_INTERVAL_MINUTES", 5, low=1, high=60),
            expiry_warning=86400 * _number(env, "EXPIRY_WARNING_DAYS", 14, low=0, high=365),
            refresh_concurrency=_number(env, "REFRESH_CONCURRENCY", 8, low=1, high=64),
            adaptive_read_window=_number(env, "ADAPTIVE_READ_WINDOW", DEFAULT_READ_WINDOW, low=MIN_READ_WINDOW,
                                         high=MAX_READ_WINDOW),
            refresh_queue_url=env["REFRESH_QUEUE_URL"].strip(),
            removal_queue_url=env.get("REMOVAL_QUEUE_URL", "").strip(),
            removal_queue_arn=env.get("REMOVAL_QUEUE_ARN", "").strip(),
            providers=_providers(env),
            provider_overrides=_provider_overrides(env),
            connect_confirmation=_choice(env, "CONNECT_CONFIRMATION", CONFIRMATION_MODES, "required"),
            connection_ids=_choice(env, "CONNECTION_IDS", CONNECTION_ID_SCHEMES, "random"),
            schedule_index=_choice(env, "SCHEDULE_INDEX", SCHEDULE_INDEXES, "cadence"),
            allow_http_endpoints=_flag(env, "ALLOW_HTTP_ENDPOINTS"),
        )
        _check_origins(env.get("ALLOWED_RETURN_ORIGINS", ""))
        for provider in settings.providers:
            _check_profile(provider, settings)
        return settings


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}.")
    return raw


def _number(env: dict[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigurationError(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigurationError(f"{name} must be true or false.")
    return raw == "true"


# Provider settings come as <PROVIDER>_<KEY>, e.g. TIKTOK_SCOPES, TIKTOK_PKCE_MODE, TIKTOK_TOKEN_URL.
_PROVIDER_KEYS = {
    "SCOPES": "scopes",
    "PKCE_MODE": "pkce",
    "AUTHORIZE_URL": "authorize_url",
    "TOKEN_URL": "token_url",
    "REVOKE_URL": "revoke_url",
    "USERINFO_URL": "userinfo_url",
    "REFRESH_POLICY": "refresh_policy",
    "PROFILE": "profile",
    "ISSUER": "issuer",
    "DISCOVERY": "discovery",
    "CLIENT_AUTH": "client_auth",
    "DISPLAY_NAME": "display_name",
    "REFRESH_URL": "refresh_url",
    "CHAIN_URL": "chain_url",
    "CHANNELS_URL": "channels_url",
    "APP_STATUS": "app_status",
    "REFRESH_STRATEGY": "refresh_strategy",
}


def _providers(env: dict[str, str]) -> tuple[str, ...]:
    names = [n.strip().lower() for n in env.get("PROVIDERS", "tiktok").split(",") if n.strip()]
    return tuple(dict.fromkeys(names)) or ("tiktok",)


def _provider_overrides(env: dict[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for provider in _providers(env):
        prefix = provider.upper().replace("-", "_")
        for suffix, key in _PROVIDER_KEYS.items():
            value = env.get(f"{prefix}_{suffix}", "").strip()
            if value:
                allowed = _CHOICES.get(key)
                if allowed and value not in allowed:
                    raise ConfigurationError(f"{prefix}_{suffix} must be one of {', '.join(allowed)}."
                                             + (_PKCE_OFF if key == "pkce" and value == "none" else ""))
                overrides.setdefault(provider, {})[key] = value
    return overrides


_CHOICES = {"pkce": PKCE_METHODS, "refresh_policy": REFRESH_POLICIES, "client_auth": CLIENT_AUTH}
_PKCE_OFF = (" PKCE can no longer be turned off: without it a code stolen from one user's sign-in can be injected "
             "into another's (see the README's upgrade notes).")
# The setting behind each endpoint of a profile (ProviderProfile.insecure_endpoints names the fields).
_ENDPOINT_SETTINGS = {"authorize_url": "AUTHORIZE_URL", "token_url": "TOKEN_URL", "revoke_url": "REVOKE_URL",
                      "userinfo_url": "USERINFO_URL", "issuer": "ISSUER", "refresh_url": "REFRESH_URL",
                      "chain_url": "CHAIN_URL", "channels_url": "CHANNELS_URL"}


def _check_origins(raw: str) -> None:
    for origin in (o.strip() for o in raw.split(",") if o.strip()):
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigurationError(
                f"ALLOWED_RETURN_ORIGINS holds {origin!r}: each must be like https://app.example.com.")


def _check_profile(provider: str, settings: Settings) -> None:
    """The provider can be used: it has a profile, options in range and (generic) its endpoints."""
    prefix = provider.upper().replace("-", "_")
    try:
        profile = profile_for(provider, settings.providers, settings.provider_overrides)
    except NotFound:
        raise ConfigurationError(f"{provider} has no profile: add profiles/{provider}.json or set "
                                 f"{prefix}_PROFILE=generic.") from None
    except ValueError as exc:
        raise ConfigurationError(f"{prefix}: {exc}") from None
    if profile.discovery and not profile.issuer:
        raise ConfigurationError(f"{prefix}_DISCOVERY needs {prefix}_ISSUER.")
    if not profile.discovery and not (profile.authorize_url and profile.token_url):
        raise ConfigurationError(f"{provider} needs {prefix}_AUTHORIZE_URL and {prefix}_TOKEN_URL, or discovery.")
    insecure = [] if settings.allow_http_endpoints else profile.insecure_endpoints()
    if insecure:
        names = ", ".join(f"{prefix}_{_ENDPOINT_SETTINGS[name]}" for name in insecure)
        raise ConfigurationError(f"{names} must be https:// (http:// is allowed only in local mode, "
                                 "ALLOW_HTTP_ENDPOINTS=true, which template.yaml never sets).")
