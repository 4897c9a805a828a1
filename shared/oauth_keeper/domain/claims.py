"""Connect confirmation: a grant the callback holds until the app's backend claims it for the logged-in owner.

Nothing in an OAuth flow proves that the browser finishing it belongs to the owner who started it: a connect
link forwarded to someone else would attach their account to the first owner. So the callback keeps the grant
pending under a one-time claim code, and only `POST /connections/claims` with the owner of the app's session
makes it a connection. The code is 256-bit, stored only as a hash, single-use and lives CLAIM_TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

from .tokens import TokenSet

PENDING_PREFIX = "pending#"
CLAIM_TTL = 600  # seconds a claim code can be used
PENDING_KEPT = 86_400  # seconds a settled pending item stays (a repeated claim gets the same answer), then TTL
MAX_CLAIM_LENGTH = 128
CONFIRMATION_MODES = ("required", "off")

# States of a pending item. `pending`: claimable. `claimed`: a connection holds the grant. `refused`: claimed by
# another owner (or for an erased owner); `expired`: never claimed. Only `pending` ever changes.
PENDING, CLAIMED, REFUSED, EXPIRED = "pending", "claimed", "refused", "expired"


def is_pending_key(key: str) -> bool:
    return key.startswith(PENDING_PREFIX)


def pending_key(claim: str) -> str:
    """The item key a claim code is stored under: a hash, never the code (192 bits of it: the key fits the
    refresh queue's 64-character ids)."""
    return PENDING_PREFIX + hashlib.sha256(f"claim:{claim}".encode()).hexdigest()[:48]


def tokens_to_data(tokens: TokenSet) -> dict[str, Any]:
    """A token response as JSON data, to be sealed with the pending grant."""
    return asdict(tokens)


def tokens_from_data(data: dict[str, Any]) -> TokenSet:
    values = dict(data)
    for name in ("scopes", "anomalies"):
        values[name] = tuple(values.get(name) or ())
    return TokenSet(**values)
