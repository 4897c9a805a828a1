"""Wires the layer's parts together once per warm container, lazily; tests swap any part at this seam."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import aws
from .clock import Clock, SystemClock
from .connections import ConnectionStore
from .credentials import client_credentials
from .crypto import DataKeys, TokenCipher
from .events import EventPublisher
from .flows import FlowStore
from .oauth import HTTP_TIMEOUT, ClientCredentials, TokenEndpoint
from .providers import ProviderProfile, profile_for
from .settings import Settings


@dataclass
class Services:
    settings: Settings = field(default_factory=Settings.from_env)
    clock: Clock = field(default_factory=SystemClock)
    http: Any = None  # an httpx.Client; created on first use

    def now(self) -> float:
        return self.clock.now()

    def profile(self, provider: str) -> ProviderProfile:
        return profile_for(provider, self.settings)

    def credentials(self, profile: ProviderProfile, *, with_secret: bool = True) -> ClientCredentials:
        return client_credentials(
            self.settings.ssm_prefix, profile.name, profile.client_id_param, with_secret=with_secret
        )

    @cached_property
    def flows(self) -> FlowStore:
        return FlowStore(aws.client("dynamodb"), self.settings.flows_table)

    @cached_property
    def data_keys(self) -> DataKeys:
        return DataKeys(lambda: aws.client("kms"), self.settings.token_key_arn, self.now)

    @cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(
            aws.client("dynamodb"), self.settings.connections_table, TokenCipher(self.data_keys),
            self.settings.due_shards,
        )

    @cached_property
    def token_endpoint(self) -> TokenEndpoint:
        if self.http is None:
            import httpx

            self.http = httpx.Client(timeout=HTTP_TIMEOUT, verify=True, follow_redirects=False)
        return TokenEndpoint(self.http, self.now)

    @cached_property
    def publisher(self) -> EventPublisher:
        return EventPublisher(aws.client("events"), self.settings.event_bus_name)


_current: Services | None = None


def services() -> Services:
    global _current
    if _current is None:
        _current = Services()
    return _current


def use(*, settings: Settings | None = None, clock: Clock | None = None, http: Any = None) -> Services:
    """Replace parts (settings, clock, http client) for tests and the local stack; the rest is rebuilt lazily."""
    global _current
    old = _current
    _current = Services(
        settings=settings or (old.settings if old else Settings.from_env()),
        clock=clock or (old.clock if old else SystemClock()),
        http=http or (old.http if old else None),
    )
    return _current


def reset() -> None:
    global _current
    _current = None
    aws.reset()
