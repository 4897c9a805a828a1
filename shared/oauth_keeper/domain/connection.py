"""A connection: one owner's link to one provider account, its status, reasons and the refresh state it carries."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .tokens import TokenSet

if TYPE_CHECKING:
    from .events import PendingEvent


class Status(StrEnum):
    """The closed list of statuses the API and events show."""

    ACTIVE = "active"  # the service holds a way to a valid access token
    AT_RISK = "at_risk"  # refreshes keep failing for reasons that are not the user's
    NEEDS_REAUTH = "needs_reauth"  # the grant is gone: only the user can bring it back
    DISCONNECTING = "disconnecting"  # the app asked to end it: no token is served; revoking in the background
    DISCONNECTED = "disconnected"  # the app or the user ended it; tokens erased


ACTIVE, AT_RISK, NEEDS_REAUTH, DISCONNECTED = Status.ACTIVE, Status.AT_RISK, Status.NEEDS_REAUTH, Status.DISCONNECTED
DISCONNECTING = Status.DISCONNECTING
ENDED = (NEEDS_REAUTH, DISCONNECTING, DISCONNECTED)  # statuses that never serve a token or refresh


class Reason(StrEnum):
    """The closed list of reasons a status or an event may carry."""

    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    REFRESHED = "refreshed"
    INVALID_GRANT = "invalid_grant"  # the provider refused the refresh token (RFC 6749 section 5.2)
    ROTATION_LOST = "rotation_lost"  # refused after a refresh whose answer we may never have saved
    REFRESH_TOKEN_EXPIRED = "refresh_token_expired"
    REFRESH_TOKEN_EXPIRING = "refresh_token_expiring"
    ACCESS_TOKEN_EXPIRING = "access_token_expiring"  # a provider without refresh tokens: the grant's end is near
    ACCESS_TOKEN_EXPIRED = "access_token_expired"  # ...and it has come: only the user can connect again
    NO_REFRESH_TOKEN = "no_refresh_token"  # stored without the refresh token the provider should have issued
    TOKEN_UNREADABLE = "token_unreadable"  # the stored ciphertext failed authentication
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # timeouts, network errors, 5xx
    RATE_LIMITED = "rate_limited"
    REQUEST_REJECTED = "request_rejected"  # the provider refused the request as malformed (invalid_request, 4xx)
    INVALID_ANSWER = "invalid_answer"  # the provider answered success with something we cannot use
    PROVIDER_CONFIG = "provider_config"  # our client credentials were refused: an operator must act
    # The connect chain (code, short-lived, long-lived token; ADR 0025): `active` on the short-lived token while a
    # later link runs as background work, and why the connect failed when that link was refused or never finished.
    CONNECT_FINISHING = "connect_finishing"
    CONNECT_INCOMPLETE = "connect_incomplete"
    USER_REVOKED = "user_revoked"
    APP_DISCONNECTED = "app_disconnected"
    REVOKE_FAILED = "revoke_failed"
    # Connect confirmation (domain/claims.py): why a pending grant never became a connection.
    OWNER_MISMATCH = "owner_mismatch"  # claimed for another owner than the one who began the connect
    CLAIM_EXPIRED = "claim_expired"  # never claimed in time
    OWNER_ERASED = "owner_erased"  # the owner was erased before the claim
    ACCOUNT_ERASED = "account_erased"  # the provider account was erased before the claim


GUARD_PREFIX = "guard#"


# How new connections get their ids (template parameter ConnectionIds): `random` (ADR 0018), or `derived` for the
# first deploy over a stack from before it, so instances of the older version never duplicate a connection.
CONNECTION_ID_SCHEMES = ("random", "derived")


def new_connection_id() -> str:
    """A new connection's id: `con_` and 32 lower-case base32 characters (160 random bits). Nothing about the
    connection can compute it (ADR 0018): its owner's app learns it from the claim or the callback."""
    return "con_" + base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()


def derived_connection_id(owner_id: str, provider: str, account_id: str) -> str:
    """The id versions before ADR 0018 gave the connection of (owner, provider, account), in the same format.
    Such a connection keeps it; it is looked up only to find one written before its guard (never given anew)."""
    # JSON keeps the three parts apart whatever characters they hold.
    digest = hashlib.sha256(json.dumps([owner_id, provider, account_id]).encode()).digest()
    return "con_" + base64.b32encode(digest[:20]).decode("ascii").lower()


def guard_key(owner_id: str, provider: str, account_id: str) -> str:
    """The key of the guard item: the one connection of (owner, provider, account) is the one it names, so two
    connects of the same account never make two connections (`guard#` and 64 hex digits)."""
    digest = hashlib.sha256(json.dumps(["guard", owner_id, provider, account_id]).encode()).hexdigest()
    return GUARD_PREFIX + digest


@dataclass
class Connection:
    """One connection as stored (times in epoch seconds). `sealed_tokens` is ciphertext; `outbox` holds events
    written with the state they describe and not yet published, by event id."""

    connection_id: str
    owner_id: str
    provider: str
    account_id: str
    status: Status
    revision: int  # bumped by every decision write; each such write is guarded on the value it read
    token_version: int  # bumped only when tokens change
    created_at: int
    updated_at: int
    scopes_requested: tuple[str, ...] = ()
    scopes_granted: tuple[str, ...] = ()
    status_reason: str | None = None
    connected_at: int | None = None
    # When the user consented to the refresh token held (a reconnect that kept it does not move it): hard caps count
    # from it. None (stored before it was kept): `connected_at`.
    grant_consented_at: int | None = None
    access_expires_at: int | None = None
    refresh_expires_at: int | None = None
    next_refresh_at: int | None = None
    display_name: str | None = None
    avatar_url: str | None = None
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    refresh_in_doubt: bool = False
    failures: int = 0
    last_refresh_at: int | None = None
    last_refresh_outcome: str | None = None
    last_refresh_reason: str | None = None
    last_provider_log_id: str | None = None
    expiring_notified: bool = False
    outbox_seq: int = 0
    revoke_failed: bool = False  # disconnected, but the provider's revoke kept failing
    revoke_log_id: str | None = None
    erase_requested: bool = False  # data-protection erasure waiting for its last event to be published
    operation_id: str | None = None  # the disconnect or erasure operation that is ending (or ended) it
    disconnect_requested_at: int | None = None  # when the operation began: revokes are retried for a day
    revoke_attempts: int = 0  # failed revoke attempts so far (the backoff's count)
    parked_since: int | None = None  # parked by the provider-wide breaker's episode that began then
    profile_pending: bool = False  # display name and avatar not fetched yet (no time at connect): the next refresh
    # The connect chain's link still to run (its index in the profile's `chain`) on the short-lived token stored:
    # the worker runs it instead of a refresh (ADR 0025). None: the chain is done (or the profile has none).
    chain_next: int | None = None
    # When the token route last recorded a read of the token (at most once a window: the `adaptive` policy's
    # input, ADR 0026). None: never recorded (or stored before reads were), which `adaptive` treats as idle.
    last_read_at: int | None = None
    # The Cadence index entry (ADR 0023): the family "<period>#<shard>" and the phase (seconds into the period) of
    # an eager connection refreshed every period; None: scheduled through the Due index (or not at all).
    cadence_shard: str | None = None
    cadence_phase: int | None = None
    sealed_tokens: bytes | None = field(default=None, repr=False)

    @property
    def cap_counts_from(self) -> int | None:
        """When the refresh token held was consented to (epoch seconds): what a hard cap counts from."""
        return self.grant_consented_at if self.grant_consented_at is not None else self.connected_at
    outbox: dict[str, PendingEvent] = field(default_factory=dict, repr=False)

    @property
    def account_key(self) -> str:
        return f"{self.provider}#{self.account_id}"

    def in_doubt(self, now: float) -> bool:
        """The provider may hold a rotated token we never saved: flagged, or a lease expired uncommitted."""
        return self.refresh_in_doubt or bool(self.lease_owner and (self.lease_expires_at or 0) <= now)

    def binding(self, token_version: int | None = None) -> TokenBinding:
        """What this connection's tokens are sealed to: its id, provider, owner, account, and `token_version`
        (default: the stored one; when sealing, the version the same write stores)."""
        return TokenBinding(self.connection_id, self.provider, self.owner_id, self.account_id,
                            self.token_version if token_version is None else token_version)


@dataclass(frozen=True)
class TokenBinding:
    """The item a sealed blob belongs to, bound in as the AEAD associated data: the blob opens only where all five
    still hold. A blob written back over newer tokens (an older `token_version`), or an item moved to another
    owner or account, fails authentication. Orphaned grants have no owner or account (empty) and version 0."""

    connection_id: str
    provider: str
    owner_id: str
    account_id: str
    token_version: int


@dataclass(frozen=True)
class Grant:
    """What a completed authorization gives us, before it is stored."""

    owner_id: str
    provider: str
    account_id: str
    tokens: TokenSet
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...]


