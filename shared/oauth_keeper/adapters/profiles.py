"""The `ProviderProfiles` port: each enabled provider's profile from the deployment's settings, built once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..domain.errors import ConfigurationError
from ..domain.providers import ProviderProfile, profile_for


class Profiles:
    """The `ProviderProfiles` port: each enabled provider's profile, built once (discovery fetched once)."""

    def __init__(self, enabled: tuple[str, ...], overrides: Mapping[str, Mapping[str, str]],
                 http: Callable[[], Any], *, allow_http: bool = False) -> None:
        """`enabled`: provider names (PROVIDERS); `overrides`: their `<NAME>_<KEY>` settings; `http` gives the
        HTTP client discovery uses; `allow_http` lets endpoints be http:// (local mode only)."""
        self._allow_http = allow_http
        self._enabled = enabled
        self._overrides = overrides
        self._http = http  # a callable giving the HTTP client: discovery is the only use here
        self._built: dict[str, ProviderProfile] = {}
        self._lock = threading.Lock()

    def profile(self, provider: str) -> ProviderProfile:
        """The profile with overrides applied and, when configured, endpoints from discovery (fetched once).

        Raises NotFound for a provider not enabled, ConfigurationError when discovery fails or an endpoint,
        configured or discovered, is not https:// (without `allow_http`)."""
        with self._lock:
            if provider in self._built:
                return self._built[provider]
        profile = self._secure(profile_for(provider, self._enabled, self._overrides))
        if profile.discovery:
            from .discovery import discovered

            # A discovery document can name http:// endpoints too: checked again before anything is sent there.
            profile = self._secure(discovered(profile, self._http()))
        with self._lock:
            return self._built.setdefault(provider, profile)

    def _secure(self, profile: ProviderProfile) -> ProviderProfile:
        insecure = [] if self._allow_http else profile.insecure_endpoints()
        if insecure:
            raise ConfigurationError(
                f"{profile.name}: endpoints must be https://, these are not: {', '.join(insecure)}.")
        return profile
