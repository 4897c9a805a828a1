"""A provider-wide circuit breaker for operator errors (our client credentials refused).

When the provider says invalid_client, every refresh would fail the same way and none is the user's
fault: pause that provider's refreshes, let one refresher probe now and then, close on the first success.
The state is one item beside the connections, so every worker container sees the same breaker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ..ports import ItemStore

PROBE_INTERVAL = 300  # seconds between probes while open
_CACHE_SECONDS = 5  # a warm container re-reads the breaker at most this often


class BreakerState(StrEnum):
    CLOSED = "closed"  # refresh as usual
    OPEN = "open"  # our credentials were refused: pause this provider's refreshes until the next probe
    PROBE = "probe"  # this caller may try one request; its success closes the breaker


CLOSED, OPEN, PROBE = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.PROBE


class CircuitBreakers:
    """One breaker per provider, stored as the item `_breaker#<provider>` in the Connections table."""

    def __init__(self, items: ItemStore, now: Callable[[], float]) -> None:
        self._items = items
        self._now = now
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(provider: str) -> str:
        return f"_breaker#{provider}"

    def check(self, provider: str) -> tuple[BreakerState, int]:
        """CLOSED, OPEN (with when to look again) or PROBE (this caller may try one request)."""
        now = int(self._now())
        state = self._read(provider, now)
        open_until = int((state or {}).get("open_until", 0))
        if not open_until:
            return CLOSED, 0
        if open_until > now:
            return OPEN, open_until
        # Time to probe: exactly one caller wins the right to, by moving open_until forward.
        claimed = self._items.update(self.key(provider), set={"open_until": now + PROBE_INTERVAL},
                                     expect={"open_until": open_until})
        self._forget(provider)
        return (PROBE, now + PROBE_INTERVAL) if claimed else (OPEN, now + PROBE_INTERVAL)

    def trip(self, provider: str, error_code: str) -> int:
        now = int(self._now())
        open_until = now + PROBE_INTERVAL
        self._items.update(self.key(provider), set={"open_until": open_until, "last_error": error_code,
                                                    "tripped_at": now}, expect={})
        self._forget(provider)
        return open_until

    def close(self, provider: str) -> None:
        self._items.update(self.key(provider), set={}, remove=["open_until"], expect={})
        self._forget(provider)

    def _read(self, provider: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            cached = self._cache.get(provider)
            if cached and now - cached[0] < _CACHE_SECONDS:
                return cached[1]
        state = self._items.get(self.key(provider))
        with self._lock:
            self._cache[provider] = (now, state)
        return state

    def _forget(self, provider: str) -> None:
        with self._lock:
            self._cache.pop(provider, None)
