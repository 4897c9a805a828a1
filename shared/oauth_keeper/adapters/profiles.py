"""The `ProviderProfiles` port: each enabled provider's profile from the deployment's settings, built once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..domain.providers import ProviderProfile, profile_for


class Profiles:
    """The `ProviderProfiles` port: each enabled provider's profile, built once (discovery fetched once)."""

    def __init__(self, enabled: tuple[str, ...], overrides: Mapping[str, Mapping[str, str]],
                 http: Callable[[], Any]) -> None:
        """`enabled`: provider names (PROVIDERS); `overrides`: their `<NAME>_<KEY>` settings; `http` gives the
        HTTP client discovery uses."""
        self._enabled = enabled
        self._overrides = overrides
        self._http = http  # a callable giving the HTTP client: discovery is the only use here
        self._built: dict[str, ProviderProfile] = {}
        self._lock = threading.Lock()

    def profile(self, provider: str) -> ProviderProfile:
        """The profile with overrides applied and, when configured, endpoints from discovery (fetched once).

        Raises NotFound for a provider not enabled, ConfigurationError when discovery fails."""
        with self._lock:
            if provider in self._built:
                return self._built[provider]
        profile = profile_for(provider, self._enabled, self._overrides)
        if profile.discovery:
            from .discovery import discovered

            profile = discovered(profile, self._http())
        with self._lock:
            return self._built.setdefault(provider, profile)
