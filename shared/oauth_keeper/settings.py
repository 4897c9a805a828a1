"""Deployment configuration, read from the environment once at the edge into a typed, immutable value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PKCE_MODES = ("none", "s256", "s256-hex")
REFRESH_POLICIES = ("eager", "on_demand")


@dataclass(frozen=True)
class Settings:
    connections_table: str
    flows_table: str
    token_key_arn: str
    event_bus_name: str
    ssm_prefix: str = "/oauth-keeper"
    # Empty: the handlers fall back to the API's own domain from the request context.
    public_base_url: str = ""
    allowed_return_origins: frozenset[str] = frozenset()
    due_shards: int = 16
    sweep_interval: int = 300  # seconds between sweeps (the schedule's rate)
    expiry_warning: int = 14 * 86400  # "Connection Expiring" when the refresh token ends within this
    refresh_concurrency: int = 8  # concurrent provider calls inside one worker invocation
    refresh_queue_url: str = ""
    providers: tuple[str, ...] = ("tiktok",)  # enabled provider names
    # Per-provider overrides, e.g. {"tiktok": {"scopes": "...", "pkce": "s256-hex", "token_url": "..."}}
    provider_overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            connections_table=env.get("CONNECTIONS_TABLE", ""),
            flows_table=env.get("FLOWS_TABLE", ""),
            token_key_arn=env.get("TOKEN_KEY_ARN", ""),
            event_bus_name=env.get("EVENT_BUS_NAME", ""),
            ssm_prefix=env.get("SSM_PREFIX", "/oauth-keeper").rstrip("/"),
            public_base_url=env.get("PUBLIC_BASE_URL", "").rstrip("/"),
            allowed_return_origins=frozenset(
                normalize_origin(o) for o in env.get("ALLOWED_RETURN_ORIGINS", "").split(",") if o.strip()
            ),
            due_shards=int(env.get("DUE_SHARDS", "16")),
            sweep_interval=60 * int(env.get("SWEEP_INTERVAL_MINUTES", "5")),
            expiry_warning=86400 * int(env.get("EXPIRY_WARNING_DAYS", "14")),
            refresh_concurrency=int(env.get("REFRESH_CONCURRENCY", "8")),
            refresh_queue_url=env.get("REFRESH_QUEUE_URL", ""),
            providers=_providers(env),
            provider_overrides=_provider_overrides(env),
        )


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
                overrides.setdefault(provider, {})[key] = value
    return overrides


def normalize_origin(origin: str) -> str:
    """scheme://host[:port], lower-cased, default ports dropped: the form browsers compare."""
    parts = urlsplit(origin.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}"
