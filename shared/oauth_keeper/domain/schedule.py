"""When a connection should next be refreshed, and which shard of the due index it lives in."""

from __future__ import annotations

import hashlib
import random

MIN_MARGIN = 15 * 60  # refresh at least 15 minutes before the access token ends
MARGIN_SHARE = 0.20  # ...or 20% of its lifetime before, whichever is earlier
MAX_JITTER = 120  # spread refreshes so a burst of connects does not become a burst of refreshes


def next_refresh_at(issued_at: int, access_expires_at: int | None, rng: random.Random | None = None) -> int | None:
    """access_expires_at - max(15 min, 20% of lifetime) - jitter; never before issued_at."""
    if access_expires_at is None:
        return None
    lifetime = max(0, access_expires_at - issued_at)
    margin = max(MIN_MARGIN, int(lifetime * MARGIN_SHARE))
    jitter = (rng or random).randint(0, min(MAX_JITTER, lifetime // 20 or 1))
    return max(issued_at, access_expires_at - margin - jitter)


KEEPALIVE_INTERVAL = 86_400  # on_demand: one keep-alive refresh a day detects revoked grants
KEEPALIVE_BEFORE_END = 3 * 86_400  # ...and one well before the refresh token ends


def plan_next_refresh(
    policy: str,
    *,
    issued_at: int,
    access_expires_at: int | None,
    refresh_expires_at: int | None,
    rng: random.Random | None = None,
) -> int:
    """When the sweep should next look at a connection, under the provider's refresh policy.

    Never later than the refresh token's end: the sweep must see that moment to say "needs reauth".
    """
    if policy == "on_demand":
        planned = issued_at + KEEPALIVE_INTERVAL - (rng or random).randint(0, MAX_JITTER)
        if refresh_expires_at and refresh_expires_at - KEEPALIVE_BEFORE_END > issued_at:
            planned = min(planned, refresh_expires_at - KEEPALIVE_BEFORE_END)
    else:
        planned = next_refresh_at(issued_at, access_expires_at, rng) or issued_at + KEEPALIVE_INTERVAL
    if refresh_expires_at:
        planned = min(planned, refresh_expires_at)
    return planned


def backoff_delay(failures: int, *, cap: int, base: int = 30, rng: random.Random | None = None) -> int:
    """Capped exponential backoff with full jitter: uniform between 0 and min(cap, base * 2^(n-1))."""
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return int((rng or random).uniform(0, ceiling))


def due_shard(connection_id: str, shards: int) -> int:
    """A stable shard so the sweep can read the due index in parallel partitions."""
    return int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:4], "big") % max(1, shards)


# No plan is ever this far ahead (refresh tokens live at most ~a year): a stored plan beyond it came from an
# absurd provider answer that an older version trusted, and is looked at as due.
PLAUSIBLE_HORIZON = 400 * 86_400


def implausible(moment: int | None, now: float, limit: int = PLAUSIBLE_HORIZON) -> bool:
    """`moment` (epoch seconds) lies further than `limit` seconds ahead of `now`."""
    return moment is not None and moment - now > limit
