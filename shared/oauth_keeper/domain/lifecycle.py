"""Lifecycle transitions that need no I/O: what a completed authorization makes of a connection, and its event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .connection import ACTIVE, Connection, Grant, Reason, Status
from .events import CREATED, RECONNECTED, PendingEvent, connection_event


@dataclass(frozen=True)
class GrantPlan:
    """A grant ready to store: the connection as it will be, its tokens in clear (sealed by the repository,
    never printed), the event that goes into its outbox in the same write, and the revision the plan was made
    from (None: the connection must not exist yet)."""

    connection: Connection
    tokens: dict[str, Any] = field(repr=False)
    event: PendingEvent
    expected_revision: int | None
    previous_status: Status | None

    @property
    def created(self) -> bool:
        return self.expected_revision is None


def plan_grant(
    existing: Connection | None,
    grant: Grant,
    *,
    connection_id: str,
    stored_refresh_token: str | None,
    next_refresh_at: int | None,
    missing_scopes: list[str],
    now: int,
) -> GrantPlan:
    """A new connection, or the existing one brought back to `active` with the new tokens.

    `stored_refresh_token` is the refresh token `existing` holds: a response without a refresh token never
    overwrites a stored one (its expiry is kept too). `next_refresh_at` (epoch seconds) is the schedule
    planned for the new tokens; it applies only when a refresh token is held. The event is Connection Created
    or Connection Reconnected (reason `connected` / `reconnected`), with the granted and missing scopes.
    """
    tokens = grant.tokens
    refresh_token, refresh_expires_at = tokens.refresh_token, tokens.refresh_expires_at
    if not refresh_token and existing:
        refresh_token, refresh_expires_at = stored_refresh_token, existing.refresh_expires_at
    connection = Connection(
        connection_id=connection_id, owner_id=grant.owner_id, provider=grant.provider,
        account_id=grant.account_id, status=ACTIVE,
        revision=(existing.revision if existing else 0) + 1,
        token_version=(existing.token_version if existing else 0) + 1,
        created_at=existing.created_at if existing else now, updated_at=now, connected_at=now,
        scopes_requested=grant.scopes_requested, scopes_granted=grant.scopes_granted,
        access_expires_at=tokens.access_expires_at, refresh_expires_at=refresh_expires_at,
        next_refresh_at=next_refresh_at if refresh_token else None,
        display_name=existing.display_name if existing else None,
        avatar_url=existing.avatar_url if existing else None,
        outbox_seq=existing.outbox_seq if existing else 0,
        outbox=dict(existing.outbox) if existing else {},
    )
    previous = existing.status if existing else None
    event = connection_event(
        RECONNECTED if existing else CREATED, connection,
        reason=Reason.RECONNECTED if existing else Reason.CONNECTED, occurred_at=now,
        extra={"scopes_granted": list(connection.scopes_granted), "missing_scopes": missing_scopes,
               "previous_status": previous},
    )
    return GrantPlan(
        connection=connection,
        tokens={"access_token": tokens.access_token, "refresh_token": refresh_token, "token_type": tokens.token_type},
        event=event, expected_revision=existing.revision if existing else None, previous_status=previous,
    )
