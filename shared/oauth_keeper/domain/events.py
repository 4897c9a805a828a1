"""Connection events: their one shape (EventBridge detail-type plus detail), built from a connection's state.

Events never carry a token. Each is written into the connection's outbox together with the state it describes,
then published by `usecases/outbox.py`; consumers deduplicate on `event_id` (delivery is at least once).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from .connection import Connection, Reason
from .timestamps import iso8601

SOURCE = "oauth-keeper"
SCHEMA_VERSION = "1"


class DetailType(StrEnum):
    CREATED = "Connection Created"
    RECONNECTED = "Connection Reconnected"
    AT_RISK = "Connection At Risk"
    RECOVERED = "Connection Recovered"
    NEEDS_REAUTH = "Connection Needs Reauthorization"
    EXPIRING = "Connection Expiring"
    DISCONNECTED = "Connection Disconnected"
    CONFIRMATION_FAILED = "Connection Confirmation Failed"


CREATED, RECONNECTED, AT_RISK, RECOVERED, NEEDS_REAUTH, EXPIRING, DISCONNECTED = (
    DetailType.CREATED, DetailType.RECONNECTED, DetailType.AT_RISK, DetailType.RECOVERED, DetailType.NEEDS_REAUTH,
    DetailType.EXPIRING, DetailType.DISCONNECTED,
)

# The closed list of reasons an event may carry.
REASONS = frozenset(Reason)


class ConnectionEventDetail(TypedDict):
    """An event's `detail` (schema_version 1). Times are ISO 8601 UTC; `extra` fields depend on the type."""

    event_id: str
    schema_version: str
    connection_id: str
    owner_id: str
    provider: str
    account_id: str
    status: str
    reason: str
    retryable: bool
    provider_log_id: str | None
    access_expires_at: str | None
    refresh_expires_at: str | None
    occurred_at: str | None
    scopes_granted: NotRequired[list[str]]  # Created / Reconnected
    missing_scopes: NotRequired[list[str]]  # Created / Reconnected
    previous_status: NotRequired[str | None]  # Created / Reconnected
    revoke_failed: NotRequired[bool]  # Disconnected
    provider_reason: NotRequired[int | None]  # Disconnected by the provider's webhook
    channels_affected: NotRequired[list[str]]  # Needs Reauthorization / Disconnected of a grant with channels


class PendingEvent(TypedDict):
    """An event as it waits in the outbox."""

    event_id: str
    detail_type: str
    detail: ConnectionEventDetail


def connection_event(
    detail_type: str,
    connection: Connection,
    *,
    reason: str,
    occurred_at: float,
    retryable: bool = False,
    provider_log_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> PendingEvent:
    """An event describing `connection` (as it will be once the write carrying the event lands).

    Raises ValueError for a reason outside the closed list. Never includes a token."""
    if reason not in REASONS:
        raise ValueError(f"unknown event reason {reason!r}")
    detail: ConnectionEventDetail = {  # type: ignore[typeddict-item]
        "event_id": str(uuid.uuid4()),
        "schema_version": SCHEMA_VERSION,
        "connection_id": connection.connection_id,
        "owner_id": connection.owner_id,
        "provider": connection.provider,
        "account_id": connection.account_id,
        "status": str(connection.status),
        "reason": str(reason),
        "retryable": retryable,
        "provider_log_id": provider_log_id,
        "access_expires_at": iso8601(connection.access_expires_at),
        "refresh_expires_at": iso8601(connection.refresh_expires_at),
        "occurred_at": iso8601(occurred_at),
        **(extra or {}),
    }
    return {"event_id": detail["event_id"], "detail_type": str(detail_type), "detail": detail}


class ConfirmationFailedDetail(TypedDict):
    """`Connection Confirmation Failed` (schema_version 1): a connect's grant was never claimed by its owner.
    `account_id` is left out: the account may be a stranger's (a forwarded connect link)."""

    event_id: str
    schema_version: str
    connection_id: str | None  # the connection a reconnect or scope upgrade would have updated, else None
    owner_id: str  # who began the connect
    provider: str
    status: str  # always "not_connected"
    reason: str  # owner_mismatch | claim_expired | owner_erased | account_erased | token_unreadable | user_revoked
    retryable: bool  # false for owner_mismatch and user_revoked (the user removed the app after consenting)
    occurred_at: str | None


def confirmation_failed_event(*, owner_id: str, provider: str, connection_id: str | None, reason: str,
                              occurred_at: float) -> dict[str, Any]:
    """The event for a pending grant discarded unclaimed. Raises ValueError for a reason outside the list."""
    if reason not in (Reason.OWNER_MISMATCH, Reason.CLAIM_EXPIRED, Reason.OWNER_ERASED, Reason.ACCOUNT_ERASED,
                      Reason.TOKEN_UNREADABLE, Reason.USER_REVOKED):
        raise ValueError(f"unknown confirmation reason {reason!r}")
    detail: ConfirmationFailedDetail = {
        "event_id": str(uuid.uuid4()), "schema_version": SCHEMA_VERSION, "connection_id": connection_id,
        "owner_id": owner_id, "provider": provider, "status": "not_connected", "reason": str(reason),
        "retryable": reason not in (Reason.OWNER_MISMATCH, Reason.USER_REVOKED), "occurred_at": iso8601(occurred_at),
    }
    return {"event_id": detail["event_id"], "detail_type": str(DetailType.CONFIRMATION_FAILED), "detail": detail}
