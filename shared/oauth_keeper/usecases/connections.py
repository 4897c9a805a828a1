"""Reading connections for the app's backend: one connection's health, an owner's list. Never a token."""

from __future__ import annotations

from typing import TypedDict

from ..audit import note
from ..domain.connection import DISCONNECTING, ENDED, NEEDS_REAUTH, Connection
from ..domain.errors import ConnectionUnavailable, InvalidInput, NotFound
from ..domain.timestamps import iso8601
from ..domain.validation import MAX_CONNECTION_ID, OWNER_ID, OWNER_ID_RULE, decode_cursor, encode_cursor, int_param
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, ConnectionRepository

PAGE_SIZE = 50


class RevokeView(TypedDict):
    failed: bool
    provider_log_id: str | None


class LastRefreshView(TypedDict):
    at: str | None
    outcome: str | None
    reason: str | None
    provider_log_id: str | None


class ConnectionView(TypedDict):
    """A connection as `GET /connections/{id}` shows it (openapi.yaml's `Connection`); times ISO 8601 UTC."""

    connection_id: str
    owner_id: str
    provider: str
    account_id: str
    display_name: str | None
    avatar_url: str | None
    status: str
    status_reason: str | None
    scopes_requested: list[str]
    scopes_granted: list[str]
    missing_scopes: list[str]
    created_at: str | None
    connected_at: str | None
    updated_at: str | None
    access_expires_at: str | None
    refresh_expires_at: str | None
    next_refresh_at: str | None
    refresh_in_doubt: bool
    revoke: RevokeView
    last_refresh: LastRefreshView


class ConnectionPage(TypedDict):
    connections: list[ConnectionView]
    next_cursor: str | None


def connection_view(connection: Connection, now: float) -> ConnectionView:
    """Metadata and health, never tokens."""
    return {
        "connection_id": connection.connection_id,
        "owner_id": connection.owner_id,
        "provider": connection.provider,
        "account_id": connection.account_id,
        "display_name": connection.display_name,
        "avatar_url": connection.avatar_url,
        "status": str(connection.status),
        "status_reason": connection.status_reason,
        "scopes_requested": list(connection.scopes_requested),
        "scopes_granted": list(connection.scopes_granted),
        "missing_scopes": [s for s in connection.scopes_requested if s not in connection.scopes_granted],
        "created_at": iso8601(connection.created_at),
        "connected_at": iso8601(connection.connected_at),
        "updated_at": iso8601(connection.updated_at),
        "access_expires_at": iso8601(connection.access_expires_at),
        "refresh_expires_at": iso8601(connection.refresh_expires_at),
        "next_refresh_at": iso8601(connection.next_refresh_at),
        "refresh_in_doubt": connection.in_doubt(now),
        "revoke": {"failed": connection.revoke_failed, "provider_log_id": connection.revoke_log_id},
        "last_refresh": {
            "at": iso8601(connection.last_refresh_at),
            "outcome": connection.last_refresh_outcome,
            "reason": connection.last_refresh_reason,
            "provider_log_id": connection.last_provider_log_id,
        },
    }


def existing(connections: ConnectionRepository, connection_id: str, owner_id: str | None = None) -> Connection:
    """The connection, or NotFound (404) for an unknown or implausible id. With `owner_id` (the owner the caller
    acts for), a connection of another owner is NotFound too, answered exactly as an unknown id: a caller that
    knows or guesses an id learns nothing about another owner's connection. Raises InvalidInput (400) for a
    malformed `owner_id`."""
    note(owner_id=owner_id)  # the owner the request asked for, when it names one (a refusal too)
    if owner_id is not None and not OWNER_ID.fullmatch(owner_id):
        raise InvalidInput(OWNER_ID_RULE, field="owner_id")
    if not connection_id or len(connection_id) > MAX_CONNECTION_ID:
        raise NotFound("No such connection.", code="connection_not_found", field="connection_id")
    connection = connections.get(connection_id)
    if connection is not None and owner_id is not None and connection.owner_id != owner_id:
        logger.warning("Connection asked for by another owner; answered as unknown",
                       extra={"connection_id": connection_id, "owner_id": owner_id})
        record_metric("ConnectionOwnerMismatches", MetricUnit.Count, 1)
        connection = None
    if connection is None:
        raise NotFound("No such connection.", code="connection_not_found", field="connection_id")
    note(owner_id=connection.owner_id)  # the audit record of the request names whose connection it reached
    return connection


def usable(connection: Connection) -> Connection:
    """The connection when it can give tokens; ConnectionUnavailable (409, with status and reason) otherwise."""
    if connection.status in ENDED:
        raise ConnectionUnavailable(
            "This connection needs the user to reconnect." if connection.status == NEEDS_REAUTH
            else "This connection is being disconnected." if connection.status == DISCONNECTING
            else "This connection was disconnected.",
            code=str(connection.status),
            extra={"status": str(connection.status), "reason": connection.status_reason, "retryable": False},
        )
    return connection


class ConnectionQueries:
    def __init__(self, connections: ConnectionRepository, clock: Clock) -> None:
        self._connections = connections
        self._clock = clock

    def get(self, connection_id: str, owner_id: str | None = None) -> ConnectionView:
        """One connection's metadata and health (only if `owner_id`'s, when given). Raises NotFound,
        InvalidInput (a malformed owner id)."""
        return connection_view(existing(self._connections, connection_id, owner_id), self._clock.now())

    def list(self, owner_id: str | None, cursor: str | None, limit: str | None) -> ConnectionPage:
        """One page (`limit` 1-100, default 50) of an owner's connections, oldest first, and the opaque cursor
        of the next page. Raises InvalidInput for a bad owner id, limit or cursor."""
        if not owner_id or not OWNER_ID.fullmatch(owner_id):
            raise InvalidInput("owner_id is required. " + OWNER_ID_RULE, field="owner_id")
        page_size = int_param(limit, "limit", default=PAGE_SIZE, low=1, high=100)
        start = decode_cursor(cursor)
        keys, last = self._connections.owned_by(owner_id, limit=page_size, start=start)
        now = self._clock.now()
        found = [self._connections.get(key) for key in keys]
        return {
            "connections": [connection_view(c, now) for c in found if c is not None and c.owner_id == owner_id],
            "next_cursor": encode_cursor(last),
        }
