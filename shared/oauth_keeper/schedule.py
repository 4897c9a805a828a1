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


def due_shard(connection_id: str, shards: int) -> int:
    """A stable shard so the sweep can read the due index in parallel partitions."""
    return int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:4], "big") % max(1, shards)
