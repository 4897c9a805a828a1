"""Owner erasure tombstones: when an owner was erased, so the links and flows issued before it are refused.

A tombstone names the owner by a keyed hash (`owner_key`, an HMAC under a KMS key), never by the id, and holds
the erasure time (epoch seconds). Anything issued at or before that second is refused: the same second counts as
before, as the two times come from different functions and are truncated to the second.
"""

from __future__ import annotations

from .flows import SESSION_TTL

TOMBSTONE_PREFIX = "erased#"  # a tombstone's key in the Flows table: erased#<owner_key>

# Seconds a tombstone is kept after the erasure (then DynamoDB's TTL removes it). It must outlive everything
# issued before the erasure that could still be used: a connect session lives SESSION_TTL (600 s) and the OAuth
# flow made from it another SESSION_TTL, so 1200 s at most. A day leaves room for later steps with longer
# lives (claims) and for clock skew, and costs one small item per erased owner.
TOMBSTONE_KEPT = 86_400
assert TOMBSTONE_KEPT >= 2 * SESSION_TTL  # noqa: S101 - a guard on the constants themselves


def tombstone_key(owner_key: str) -> str:
    return TOMBSTONE_PREFIX + owner_key


def issued_before_erasure(issued_at: int, erased_at: int | None) -> bool:
    """Whether something issued at `issued_at` (epoch seconds) belongs to before an erasure at `erased_at`
    (None: the owner was never erased, or its tombstone is gone)."""
    return erased_at is not None and int(issued_at) <= int(erased_at)
