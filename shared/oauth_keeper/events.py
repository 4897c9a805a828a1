"""Connection events on EventBridge: their one shape, and publishing them from a connection's outbox."""

from __future__ import annotations

import json
import uuid
from typing import Any

from .clock import iso8601
from .connections import Connection
from .observability import logger

SOURCE = "oauth-keeper"
SCHEMA_VERSION = "1"

CREATED = "Connection Created"
RECONNECTED = "Connection Reconnected"
AT_RISK = "Connection At Risk"
RECOVERED = "Connection Recovered"
NEEDS_REAUTH = "Connection Needs Reauthorization"
EXPIRING = "Connection Expiring"
DISCONNECTED = "Connection Disconnected"

# The closed list of reasons an event may carry.
REASONS = frozenset({
    "connected", "reconnected", "invalid_grant", "rotation_lost", "refresh_token_expired",
    "provider_unavailable", "rate_limited", "provider_config", "user_revoked", "app_disconnected",
    "refreshed", "refresh_token_expiring", "revoke_failed", "token_unreadable",
})


def connection_event(
    detail_type: str,
    connection: Connection,
    *,
    reason: str,
    occurred_at: float,
    retryable: bool = False,
    provider_log_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event as it waits in the outbox: detail-type plus detail. Never a token."""
    if reason not in REASONS:
        raise ValueError(f"unknown event reason {reason!r}")
    detail = {
        "event_id": str(uuid.uuid4()),
        "schema_version": SCHEMA_VERSION,
        "connection_id": connection.connection_id,
        "owner_id": connection.owner_id,
        "provider": connection.provider,
        "account_id": connection.account_id,
        "status": connection.status,
        "reason": reason,
        "retryable": retryable,
        "provider_log_id": provider_log_id,
        "access_expires_at": iso8601(connection.access_expires_at),
        "refresh_expires_at": iso8601(connection.refresh_expires_at),
        "occurred_at": iso8601(occurred_at),
        **(extra or {}),
    }
    return {"event_id": detail["event_id"], "detail_type": detail_type, "detail": detail}


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str) -> None:
        self._events = events_client
        self._bus = bus_name

    def publish(self, pending: list[dict[str, Any]]) -> list[str]:
        """Send events; return the ids EventBridge accepted (the rest stay in the outbox for a retry)."""
        sent: list[str] = []
        for start in range(0, len(pending), 10):  # PutEvents takes at most 10 entries
            batch = pending[start : start + 10]
            try:
                answer = self._events.put_events(Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": event["detail_type"],
                        "Detail": json.dumps(event["detail"], separators=(",", ":")),
                        "EventBusName": self._bus,
                    }
                    for event in batch
                ])
            except Exception:
                logger.exception("Publishing connection events failed; they stay in the outbox")
                continue
            for event, result in zip(batch, answer.get("Entries", []), strict=False):
                if result.get("EventId") and not result.get("ErrorCode"):
                    sent.append(event["event_id"])
                else:
                    logger.warning("EventBridge refused an event", extra={
                        "event_id": event["event_id"], "error_code": result.get("ErrorCode"),
                    })
        return sent
