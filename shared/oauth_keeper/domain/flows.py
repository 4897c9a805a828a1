"""Connect sessions and OAuth flows: short-lived, single-use records known only by a hash of their secret."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SESSION_TTL = 600  # seconds: 10 minutes, for both the connect session and the OAuth flow


def secret_hash(kind: str, secret: str) -> str:
    """The key a secret is stored under. The raw value never reaches the table."""
    return kind + "#" + hashlib.sha256(f"{kind}:{secret}".encode()).hexdigest()


@dataclass(frozen=True)
class ConnectSession:
    owner_id: str
    provider: str
    return_to: str
    scopes: tuple[str, ...]
    expires_at: int
    mode: str = "redirect"
    connection_id: str | None = None
    # Since the erasure tombstones (issue 12); older records lack them (see `issued`, `Erasures.check`).
    issued_at: int | None = None  # epoch seconds
    owner_key: str | None = None  # keyed hash of owner_id (domain/erasure.py), for the ByOwnerKey index

    @property
    def issued(self) -> int:
        """When the session was issued (epoch seconds); for an older record, derived from its expiry."""
        return self.issued_at if self.issued_at is not None else self.expires_at - SESSION_TTL


@dataclass(frozen=True)
class OAuthFlow:
    provider: str
    owner_id: str
    return_to: str
    scopes: tuple[str, ...]
    redirect_uri: str
    code_verifier: str | None
    nonce_hash: str
    expires_at: int
    mode: str = "redirect"
    connection_id: str | None = None
    # When the connect session this flow came from was issued (epoch seconds): an erasure after it refuses the
    # flow. None on older records (see `issued`).
    issued_at: int | None = None
    owner_key: str | None = None  # keyed hash of owner_id (domain/erasure.py), for the ByOwnerKey index

    @property
    def issued(self) -> int:
        """When the connect that made this flow was issued (epoch seconds); for an older record, when the flow
        was (derived from its expiry): such a record predates every tombstone, so every erasure comes after it."""
        return self.issued_at if self.issued_at is not None else self.expires_at - SESSION_TTL

    def __repr__(self) -> str:
        return f"OAuthFlow(provider={self.provider!r}, owner_id={self.owner_id!r}, expires_at={self.expires_at})"
