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

    def __repr__(self) -> str:
        return f"OAuthFlow(provider={self.provider!r}, owner_id={self.owner_id!r}, expires_at={self.expires_at})"
