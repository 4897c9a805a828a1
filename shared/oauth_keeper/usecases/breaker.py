"""A provider-wide circuit breaker: our credentials refused, the provider down, or the provider asking us to wait.

When the provider says invalid_client, every refresh would fail the same way and none is the user's fault.
When most calls time out or answer 5xx, the provider is down for everyone: calling it once per connection per
sweep only adds load. When it answers 429 with Retry-After, it has said how long to wait. In each case: pause
the provider's refreshes, let one caller probe now and then, close on the first answer that shows the provider
is back. The state is one item beside the connections, so every worker container sees the same breaker.

While an outage or a rate limit lasts, paused connections are parked (see `Breaker.park_at`): they leave the
due window, so the sweep stops queueing them, and the sweep brings them back for an hour after the breaker has
closed (`resume_until`, read by `usecases/sweep.py`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..domain.connection import Reason
from ..ports import MISSING, ItemStore

PROBE_INTERVAL = 300  # seconds between probes while open because our credentials were refused
OUTAGE_PROBE_INTERVAL = 60  # seconds between probes while the provider is down: at most 1 call a minute
MAX_RETRY_AFTER = 3600  # a provider's Retry-After is honoured up to this many seconds
PARK_OFFSET = 30 * 86_400  # parked connections wait this far after the episode began, in expiry order
PARK_SPREAD = 60  # seconds: more than the spread (0-30 s) the refresher adds when it parks a connection
LEGACY_PARKED_AHEAD = 2 * 86_400  # seconds: see Breaker.resuming
RESUME_WINDOW = 3600  # after closing, the sweep brings parked connections back for this long
OUTAGE_WINDOW = 10  # a container's last provider calls that decide whether the provider is down
OUTAGE_THRESHOLD = 8  # ...and how many of them must have failed transiently
_CACHE_SECONDS = 5  # a warm container re-reads the breaker at most this often


class BreakerState(StrEnum):
    CLOSED = "closed"  # refresh as usual
    OPEN = "open"  # pause this provider's refreshes until the next probe
    PROBE = "probe"  # this caller may try one request; an answer showing the provider is back closes it


CLOSED, OPEN, PROBE = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.PROBE


class Cause(StrEnum):
    """Why a breaker opened; it decides the reason connections are given and whether they are parked."""

    OPERATOR = "operator"  # our client credentials were refused (invalid_client, unauthorized_client, ...)
    OUTAGE = "outage"  # transient failures dominate across connections
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After

    @property
    def reason(self) -> Reason:
        return {Cause.OPERATOR: Reason.PROVIDER_CONFIG, Cause.OUTAGE: Reason.PROVIDER_UNAVAILABLE,
                Cause.RATE_LIMITED: Reason.RATE_LIMITED}[self]

    @property
    def parks(self) -> bool:
        """Operator errors keep today's behaviour: each paused connection returns at the next probe."""
        return self is not Cause.OPERATOR


@dataclass(frozen=True)
class Breaker:
    """One provider's breaker as read (epoch seconds). `park_base` is where this episode parks connections."""

    state: BreakerState
    open_until: int = 0
    cause: Cause = Cause.OPERATOR
    since: int = 0
    park_base: int = 0
    resume_until: int = 0  # closed, and parked connections are still being brought back until then
    probe_candidate: str | None = None  # a connection of this provider to probe with (parked in this episode)

    def parked_range(self, now: int) -> tuple[int, int] | None:
        """[low, high] (epoch seconds): where this episode has parked connections by `now`; None when it parked
        none. A connection is parked at `park_base` plus how long after `since` its token ended."""
        if not self.park_base:
            return None
        return self.park_base, self.park_base + max(PARK_OFFSET, now - self.since) + PARK_SPREAD

    def resuming(self, parked_since: int | None, moment: int | None, now: int) -> bool:
        """Closed, and the connection (parked in the episode that began at `parked_since`, next refresh at
        `moment`) waits for the end of an outage that is over: it is due now. Once refreshed it no longer
        carries `parked_since`, so a copy of its message finds nothing to do. A connection an older version
        parked carries no `parked_since`: one in the range and more than a day ahead is taken as parked (no
        plan made from a live token is that far ahead)."""
        if self.state is not CLOSED or not self.park_base:
            return False
        if parked_since is not None:
            return parked_since == self.since
        parked = self.parked_range(now)
        return moment is not None and parked is not None and parked[0] <= moment <= parked[1] \
            and moment - now > LEGACY_PARKED_AHEAD

    def park_at(self, connection_end: int | None, now: int) -> int:
        """When a paused connection should be looked at again: at its access token's end if that is still
        ahead (to be marked at risk then), else parked past the episode, ordered by when its token ended."""
        end = connection_end or now
        if end > now:
            return min(end, self.park_base)
        return self.park_base + max(0, end - self.since)


class CircuitBreakers:
    """One breaker per provider, stored as the item `_breaker#<provider>` in the Connections table."""

    def __init__(self, items: ItemStore, now: Callable[[], float]) -> None:
        self._items = items
        self._now = now
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._recent: dict[str, deque[bool]] = {}  # this container's last outcomes per provider (True: failed)
        self._lock = threading.Lock()

    @staticmethod
    def key(provider: str) -> str:
        return f"_breaker#{provider}"

    def read(self, provider: str) -> Breaker:
        """The breaker as it stands (cached for a few seconds), without claiming a probe."""
        return _breaker(self._read(provider, int(self._now())))

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
        interval = PROBE_INTERVAL if _breaker(state).cause is Cause.OPERATOR else OUTAGE_PROBE_INTERVAL
        claimed = self._items.update(self.key(provider), set={"open_until": now + interval},
                                     expect={"open_until": open_until})
        self._forget(provider)
        return (PROBE, now + interval) if claimed else (OPEN, now + interval)

    def trip(self, provider: str, error_code: str, *, cause: Cause = Cause.OPERATOR,
             open_for: int | None = None) -> int:
        """Open (or keep open) the provider's breaker; returns until when (epoch seconds). An episode already
        open keeps its start and parking base, so connections parked in it stay in one ordered range."""
        now = int(self._now())
        default = PROBE_INTERVAL if cause is Cause.OPERATOR else OUTAGE_PROBE_INTERVAL
        open_until = now + max(1, min(open_for or default, MAX_RETRY_AFTER))
        current = _breaker(self._items.get(self.key(provider)))
        # Still open, or closed but still bringing back what it parked: the same episode, so connections parked
        # before stay in the range the resume reads.
        episode = current.state is not CLOSED or current.resume_until > now
        since = current.since if episode and current.since else now
        changes: dict[str, Any] = {
            "open_until": open_until, "last_error": error_code, "tripped_at": now, "cause": cause.value,
            "since": since, "park_base": current.park_base if episode and current.park_base else since + PARK_OFFSET,
            "resume_until": None, "probe_candidate": current.probe_candidate if episode else None,
        }
        self._items.update(self.key(provider), set=changes, expect={})
        self._forget(provider)
        with self._lock:
            self._recent.pop(provider, None)
        return open_until

    def remember_probe(self, provider: str, connection_id: str) -> None:
        """Keep one parked connection of this episode for the sweep's probes (the first one wins)."""
        if self.read(provider).probe_candidate is None:
            self._items.update(self.key(provider), set={"probe_candidate": connection_id},
                               expect={"probe_candidate": MISSING})
            self._forget(provider)

    def forget_probe(self, provider: str, connection_id: str) -> None:
        """`connection_id` can no longer probe (it ended): the next parked connection will be remembered."""
        if self.read(provider).probe_candidate == connection_id:
            self._items.update(self.key(provider), set={"probe_candidate": None},
                               expect={"probe_candidate": connection_id})
            self._forget(provider)

    def close(self, provider: str) -> None:
        """The provider answered again: refresh as usual, and bring back what this episode parked."""
        now = int(self._now())
        current = _breaker(self._items.get(self.key(provider)))
        changes: dict[str, Any] = {"closed_at": now}
        if current.park_base:  # whatever the last cause: an outage earlier in the episode may have parked some
            changes["resume_until"] = now + RESUME_WINDOW
        self._items.update(self.key(provider), set=changes, remove=["open_until"], expect={})
        self._forget(provider)

    def observe(self, provider: str, *, failed_transiently: bool) -> bool:
        """Count one provider call of this container; True when transient failures now dominate (an outage)."""
        with self._lock:
            recent = self._recent.setdefault(provider, deque(maxlen=OUTAGE_WINDOW))
            recent.append(failed_transiently)
            return len(recent) == OUTAGE_WINDOW and sum(recent) >= OUTAGE_THRESHOLD

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


def _breaker(item: dict[str, Any] | None) -> Breaker:
    item = item or {}
    open_until = int(item.get("open_until") or 0)
    try:
        cause = Cause(item.get("cause") or Cause.OPERATOR)
    except ValueError:
        cause = Cause.OPERATOR
    return Breaker(state=OPEN if open_until else CLOSED, open_until=open_until, cause=cause,
                   since=int(item.get("since") or item.get("tripped_at") or 0),
                   park_base=int(item.get("park_base") or 0), resume_until=int(item.get("resume_until") or 0),
                   probe_candidate=candidate if isinstance(candidate := item.get("probe_candidate"), str) else None)
