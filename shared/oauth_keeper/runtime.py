"""Wires the layer's parts together once per warm container, lazily; tests swap any part at this seam."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import aws
from .breaker import CircuitBreakers
from .clock import Clock, SystemClock
from .connections import ConnectionStore
from .credentials import client_credentials
from .crypto import DataKeys, TokenCipher
from .events import EventPublisher
from .flows import FlowStore
from .items import DynamoItemStore, ItemStore
from .oauth import HTTP_TIMEOUT, ClientCredentials, TokenEndpoint
from .providers import ProviderProfile, profile_for
from .settings import Settings


@dataclass
class Services:
    settings: Settings = field(default_factory=Settings.from_env)
    clock: Clock = field(default_factory=SystemClock)
    http: Any = None  # an httpx.Client; created on first use
    # Optional stand-ins for long in-memory simulations (tests, benchmarks); None means the real AWS service.
    items: ItemStore | None = None
    kms: Any = None
    publisher_override: Any = None
    credentials_override: Any = None
    pauser: Any = time.sleep
    _profiles: dict[str, ProviderProfile] = field(default_factory=dict, repr=False)

    def now(self) -> float:
        return self.clock.now()

    def pause(self, seconds: float) -> None:
        """Wait a little for another refresher (never used to wait for an expiry); tests make it instant."""
        self.pauser(seconds)

    def profile(self, provider: str) -> ProviderProfile:
        if provider not in self._profiles:  # settings never change in a container: build each profile once
            profile = profile_for(provider, self.settings)
            if profile.discovery:
                from .discovery import discovered

                self.token_endpoint  # noqa: B018 - makes sure the HTTP client exists
                profile = discovered(profile, self.http)
            self._profiles[provider] = profile
        return self._profiles[provider]

    def credentials(self, profile: ProviderProfile, *, with_id: bool = True, with_secret: bool = True,
                    fresh: bool = False) -> ClientCredentials:
        if self.credentials_override is not None:
            return self.credentials_override(profile)
        return client_credentials(self.settings.ssm_prefix, profile.name, profile.client_id_param,
                                  with_id=with_id, with_secret=with_secret, fresh=fresh)

    @cached_property
    def flows(self) -> FlowStore:
        return FlowStore(aws.client("dynamodb"), self.settings.flows_table)

    @cached_property
    def data_keys(self) -> DataKeys:
        kms = self.kms
        return DataKeys((lambda: kms) if kms is not None else (lambda: aws.client("kms")),
                        self.settings.token_key_arn, self.now)

    @cached_property
    def connection_items(self) -> ItemStore:
        return self.items or DynamoItemStore(aws.client("dynamodb"), self.settings.connections_table)

    @cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self.connection_items, TokenCipher(self.data_keys), self.settings.due_shards)

    @cached_property
    def breakers(self) -> CircuitBreakers:
        return CircuitBreakers(self.connection_items, self.now)

    @cached_property
    def token_endpoint(self) -> TokenEndpoint:
        if self.http is None:
            import httpx

            self.http = httpx.Client(timeout=HTTP_TIMEOUT, verify=True, follow_redirects=False,
                                     limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
        return TokenEndpoint(self.http, self.now)

    @cached_property
    def publisher(self) -> EventPublisher:
        return self.publisher_override or EventPublisher(aws.client("events"), self.settings.event_bus_name)

    @cached_property
    def refresher(self) -> Any:
        from .refresh import Refresher

        return Refresher(self)


_current: Services | None = None


def services() -> Services:
    global _current
    if _current is None:
        _current = Services()
    return _current


def use(**parts: Any) -> Services:
    """Replace parts (settings, clock, http client, stand-ins) for tests and the local stack; the rest is
    rebuilt lazily. Parts not named keep their current value."""
    global _current
    old = _current
    keep = {name: getattr(old, name) for name in Services.__dataclass_fields__ if name != "_profiles"} if old else {}
    keep.update({k: v for k, v in parts.items() if v is not None})
    _current = Services(**keep)
    return _current


def reset() -> None:
    global _current
    _current = None
    aws.reset()
