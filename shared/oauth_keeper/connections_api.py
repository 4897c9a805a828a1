"""What the app's backend asks of its connections (design.md flows 5-6): a valid token, health, refresh,
disconnect, erasure. Never returns a token except from `token_for`, the one place the design allows."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from . import events
from .clock import iso8601
from .connections import DISCONNECTED, NEEDS_REAUTH, Connection
from .errors import (
    ConnectionUnavailable,
    InvalidInput,
    NotFound,
    ProviderError,
    TemporarilyUnavailable,
    TokenDecryptionError,
)
from .observability import MetricUnit, logger, metrics
from .refresh import BUSY, INACTIVE, NEEDS_USER, REFRESHED, SUPERSEDED, UNKNOWN, RefreshOutcome
from .runtime import services
from .validation import OWNER_ID, OWNER_ID_RULE

DEFAULT_MIN_VALID = 300
MAX_MIN_VALID = 3600
WAIT_STEP = 0.25
WAIT_LIMIT = 22.0  # a sibling's lease lasts at most 20 s; API Gateway gives up at 30 s
REVOKE_ATTEMPTS = 3
PAGE_SIZE = 50
MAX_ID = 64


# -- reading -----------------------------------------------------------------------------------------------
def connection_view(connection: Connection, now: float) -> dict[str, Any]:
    """Metadata and health, never tokens."""
    return {
        "connection_id": connection.connection_id,
        "owner_id": connection.owner_id,
        "provider": connection.provider,
        "account_id": connection.account_id,
        "display_name": connection.display_name,
        "avatar_url": connection.avatar_url,
        "status": connection.status,
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


def get_connection(connection_id: str) -> dict[str, Any]:
    svc = services()
    return connection_view(_existing(connection_id), svc.now())


def list_connections(owner_id: str | None, cursor: str | None, limit: str | None) -> dict[str, Any]:
    if not owner_id or not OWNER_ID.match(owner_id):
        raise InvalidInput("owner_id is required. " + OWNER_ID_RULE, field="owner_id")
    page_size = _int_param(limit, "limit", default=PAGE_SIZE, low=1, high=100)
    start = _decode_cursor(cursor)
    svc = services()
    keys, last = svc.connections.items.query("ByOwner", owner_id, limit=page_size, start=start)
    now = svc.now()
    found = [svc.connections.get(key) for key in keys]
    return {
        "connections": [connection_view(c, now) for c in found if c is not None and c.owner_id == owner_id],
        "next_cursor": _encode_cursor(last),
    }


# -- the token route ---------------------------------------------------------------------------------------
def token_for(connection_id: str, min_valid_seconds: str | None, caller: str | None) -> dict[str, Any]:
    """A valid access token, refreshed first through the worker's single-flight when it expires soon."""
    svc = services()
    min_valid = _int_param(min_valid_seconds, "min_valid_seconds", default=DEFAULT_MIN_VALID, low=0,
                           high=MAX_MIN_VALID)
    connection = _usable(_existing(connection_id))
    now = svc.now()
    if not _valid_for(connection, now, min_valid):
        connection = _refreshed(connection, now, min_valid)
    try:
        tokens = svc.connections.open_tokens(connection)
    except TokenDecryptionError:
        logger.error("Stored tokens failed authentication; not served", extra={"connection_id": connection_id})
        metrics.add_metric("TokenUnreadable", MetricUnit.Count, 1)
        raise
    # The audit trail of token reads: who, which connection, when. Never the token.
    logger.info("Token read", extra={"audit": "token_read", "caller": caller, "connection_id": connection_id,
                                     "owner_id": connection.owner_id, "at": iso8601(svc.now())})
    metrics.add_metric("TokenReads", MetricUnit.Count, 1)
    return {
        "access_token": tokens["access_token"],
        "token_type": tokens.get("token_type") or "Bearer",
        "expires_at": iso8601(connection.access_expires_at),
        "scopes": list(connection.scopes_granted),
        "account_id": connection.account_id,
    }


def force_refresh(connection_id: str) -> dict[str, Any]:
    svc = services()
    connection = _usable(_existing(connection_id))
    outcome = svc.refresher.refresh(connection.connection_id, force=True)
    if outcome.result == BUSY:
        outcome = RefreshOutcome(connection_id, REFRESHED, connection=_wait_for_sibling(connection))
    current = outcome.connection or _existing(connection_id)
    if outcome.result in (NEEDS_USER, INACTIVE):
        _usable(current)
    return {"result": outcome.result, "connection": connection_view(current, svc.now())}


def _refreshed(connection: Connection, now: float, min_valid: int) -> Connection:
    svc = services()
    outcome = svc.refresher.refresh(connection.connection_id, force=True)
    if outcome.result == REFRESHED and outcome.connection:
        return outcome.connection
    if outcome.result in (BUSY, SUPERSEDED):
        current = _wait_for_sibling(connection)
    elif outcome.result in (NEEDS_USER, INACTIVE, UNKNOWN):
        current = _existing(connection.connection_id)
        _usable(current)
    else:  # retrying or paused: provider trouble
        current = outcome.connection or _existing(connection.connection_id)
    current = _usable(current)
    if _valid_for(current, svc.now(), 0):
        return current  # still valid, if for less than asked: better than failing the post
    raise TemporarilyUnavailable(
        f"{current.provider} could not refresh this connection just now; try again in a minute.",
        extra={"retryable": True, "status": current.status, "reason": current.last_refresh_reason},
    )


def _wait_for_sibling(connection: Connection) -> Connection:
    """Another refresher holds the lease: wait (bounded) for its result instead of refreshing again."""
    svc = services()
    waited = 0.0
    while waited < WAIT_LIMIT:
        svc.pause(WAIT_STEP)
        waited += WAIT_STEP
        current = _existing(connection.connection_id)
        settled = current.token_version != connection.token_version or current.status in (NEEDS_REAUTH,
                                                                                          DISCONNECTED)
        if settled or not current.lease_owner or (current.lease_expires_at or 0) <= svc.now():
            return current
    return _existing(connection.connection_id)


# -- disconnecting -----------------------------------------------------------------------------------------
def disconnect(connection_id: str, *, reason: str = "app_disconnected") -> dict[str, Any]:
    """Revoke at the provider (best effort, retried), then erase the tokens whatever happened. Idempotent."""
    svc = services()
    connection = _existing(connection_id)
    if connection.status != DISCONNECTED:
        revoke_log_id, revoke_failed = _revoke(connection)
        connection = mark_disconnected(connection_id, reason, provider_log_id=revoke_log_id,
                                       revoke_failed=revoke_failed) or _existing(connection_id)
    return connection_view(connection, svc.now())


def mark_disconnected(connection_id: str, reason: str, *, provider_log_id: str | None = None,
                      revoke_failed: bool = False, extra: dict[str, Any] | None = None) -> Connection | None:
    """Erase the tokens, leave the due index, publish Connection Disconnected. None if already disconnected."""
    svc = services()
    store = svc.connections
    for _ in range(5):
        connection = store.get(connection_id)
        if connection is None or connection.status == DISCONNECTED:
            return None
        changes: dict[str, Any] = {
            "status": DISCONNECTED, "status_reason": reason, "tokens": None, "updated_at": int(svc.now()),
            "revoke_failed": True if revoke_failed else None, "revoke_log_id": provider_log_id,
            **store.schedule_attributes(connection_id, None),
        }
        event = events.connection_event(
            events.DISCONNECTED, _as(connection, status=DISCONNECTED, status_reason=reason), reason=reason,
            occurred_at=svc.now(), provider_log_id=provider_log_id,
            extra={"revoke_failed": revoke_failed, **(extra or {})},
        )
        written = store.apply(connection, changes, remove=("lease_owner", "lease_expires_at"), events=[event])
        if written:
            svc.refresher.flush_events(written)
            metrics.add_metric("ConnectionsDisconnected", MetricUnit.Count, 1)
            logger.info("Connection disconnected", extra={"connection_id": connection_id, "reason": reason,
                                                          "revoke_failed": revoke_failed})
            return written
    raise RuntimeError("Connection kept changing while disconnecting.")


def erase_owner(owner_id: str) -> dict[str, Any]:
    """Data-protection erasure: disconnect (revoke, event) and delete every connection of one owner."""
    if not OWNER_ID.match(owner_id):
        raise InvalidInput(OWNER_ID_RULE, field="owner_id")
    svc = services()
    erased, pending = 0, 0
    start = None
    while True:
        keys, start = svc.connections.items.query("ByOwner", owner_id, limit=100, start=start)
        for key in keys:
            disconnect(key)
            if svc.connections.erase(key):
                erased += 1
                continue
            # Its Disconnected event still waits (EventBridge down): the sweep publishes it, then erases.
            current = svc.connections.get(key)
            if current and svc.connections.apply(current, {"erase_requested": True}):
                pending += 1
            elif svc.connections.erase(key):
                erased += 1
        if not start:
            break
    logger.info("Owner erased", extra={"owner_id": owner_id, "erased": erased, "pending": pending})
    return {"owner_id": owner_id, "erased": erased, "pending": pending}


def _revoke(connection: Connection) -> tuple[str | None, bool]:
    svc = services()
    try:
        access_token = svc.connections.open_tokens(connection).get("access_token")
    except TokenDecryptionError:
        return None, True
    if not access_token:
        return None, False
    profile = svc.profile(connection.provider)
    log_id = None
    for attempt in range(REVOKE_ATTEMPTS):
        try:
            return svc.token_endpoint.revoke(profile, svc.credentials(profile), access_token), False
        except ProviderError as exc:
            log_id = exc.log_id
            logger.warning("Revoke failed", extra={"connection_id": connection.connection_id,
                                                   "provider_error": exc.code, "attempt": attempt + 1})
            if exc.kind != ProviderError.TRANSIENT:
                break
            svc.pause(0.2 * (attempt + 1))
        except Exception:  # noqa: BLE001 - revoking is best effort; erasing the tokens is not
            logger.exception("Revoke failed")
            break
    metrics.add_metric("RevokeFailed", MetricUnit.Count, 1)
    return log_id, True


# -- helpers -------------------------------------------------------------------------------------------------
def _existing(connection_id: str) -> Connection:
    if not connection_id or len(connection_id) > MAX_ID:
        raise NotFound("No such connection.", code="connection_not_found", field="connection_id")
    connection = services().connections.get(connection_id)
    if connection is None:
        raise NotFound("No such connection.", code="connection_not_found", field="connection_id")
    return connection


def _usable(connection: Connection) -> Connection:
    if connection.status in (NEEDS_REAUTH, DISCONNECTED):
        raise ConnectionUnavailable(
            "This connection needs the user to reconnect." if connection.status == NEEDS_REAUTH
            else "This connection was disconnected.",
            code=connection.status,
            extra={"status": connection.status, "reason": connection.status_reason, "retryable": False},
        )
    return connection


def _valid_for(connection: Connection, now: float, seconds: int) -> bool:
    return bool(connection.access_expires_at and connection.access_expires_at - now > seconds)


def _as(connection: Connection, **state: Any) -> Connection:
    from dataclasses import replace

    return replace(connection, **state)


def _int_param(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:  # ASCII digits only: not "²"
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(value)


def _encode_cursor(last: dict[str, Any] | None) -> str | None:
    if not last:
        return None
    return base64.urlsafe_b64encode(json.dumps(last, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or set(data) != {"connection_id", "owner_id", "created_at"}:
            raise ValueError
        if not (isinstance(data["connection_id"], str) and len(data["connection_id"]) <= MAX_ID
                and isinstance(data["owner_id"], str) and OWNER_ID.match(data["owner_id"])
                and type(data["created_at"]) is int and 0 <= data["created_at"] < 2**53):
            raise ValueError
    except (ValueError, UnicodeError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API returned.", code="invalid_cursor", field="cursor") from exc
    return data
