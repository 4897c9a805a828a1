"""Lifecycle transitions that need no I/O: what a completed authorization makes of a connection, and its event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .connection import ACTIVE, ENDED, Connection, Grant, Reason, Status
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
    kept_refresh_token: bool = False  # the answer had none: the stored one is kept (with any lease spending it)

    @property
    def created(self) -> bool:
        return self.expected_revision is None


class NoUsableRefreshToken(Exception):
    """The answer carried no refresh token and none usable is stored, for a provider that issues them: such a
    connection could not stay connected, so it must not be stored as `active`."""


def plan_grant(
    existing: Connection | None,
    grant: Grant,
    *,
    connection_id: str,
    stored_refresh_token: str | None,
    next_refresh_at: int | None,
    missing_scopes: list[str],
    now: int,
    requires_refresh_token: bool = True,
    connected_at: int | None = None,
    renews_with_access_token: bool = False,
    chain_next: int | None = None,
) -> GrantPlan:
    """A new connection, or the existing one brought back to `active` with the new tokens.

    `stored_refresh_token` is the refresh token `existing` holds: a response without a refresh token never
    overwrites a stored one (its expiry is kept too). `next_refresh_at` (epoch seconds) is the schedule
    planned for the new tokens; it applies only when a refresh token is held. The event is Connection Created
    or Connection Reconnected (reason `connected` / `reconnected`), with the granted and missing scopes.

    A stored refresh token is usable only while its connection is live (not needs_reauth or disconnected)
    and it has not ended. Raises NoUsableRefreshToken when `requires_refresh_token` and none is held. Without
    refresh tokens at all (`requires_refresh_token` false), the sweep looks at the connection at once to plan
    its end (Expiring, then needs_reauth when the access token ends). With `renews_with_access_token` (the
    `extend` and `re_exchange` strategies) the access token is the refresh credential: `next_refresh_at` applies
    without a refresh token, and the sealed tokens record `issued_at` (the refresher never sends a token younger
    than the profile's minimum age).

    `chain_next`: the index of the profile's connect-chain link still to run (ADR 0025): the tokens are the
    short-lived ones an earlier link (or the code) gave. The connection is `active` with reason
    `connect_finishing`, due at `now` whatever `next_refresh_at` says (the worker runs the link instead of a
    refresh), and its event says `connect_finishing: true`.

    `connected_at` (epoch seconds, default `now`): when the user consented to this grant. A claimed grant
    (connect confirmation) was consented at the callback, before the claim stores it: a provider's removal or an
    account erasure between the two must still reach it (`provider_events.removal_applies`).
    """
    tokens = grant.tokens
    # What the connection was is carried over, unless an erasure is deleting it: nothing from before an erasure
    # reaches a connection made after it (the item is reused only for its write guard and its outbox).
    kept = existing if existing is not None and not existing.erase_requested else None
    refresh_token, refresh_expires_at = tokens.refresh_token, tokens.refresh_expires_at
    consented_at = now if connected_at is None else connected_at
    grant_consented_at = None  # a new refresh token: consented now (`connected_at`)
    if not refresh_token and existing and _still_usable(existing, now):
        refresh_token, refresh_expires_at = stored_refresh_token, existing.refresh_expires_at
        grant_consented_at = existing.cap_counts_from  # the kept token's hard cap still counts from its consent
    if not refresh_token and requires_refresh_token and chain_next is None:
        raise NoUsableRefreshToken(connection_id)
    if chain_next is not None:  # the rest of the chain is due at once: the short-lived token lasts about an hour
        next_refresh_at = now
    connection = Connection(
        connection_id=connection_id, owner_id=grant.owner_id, provider=grant.provider,
        account_id=grant.account_id, status=ACTIVE,
        revision=(existing.revision if existing else 0) + 1,
        token_version=(existing.token_version if existing else 0) + 1,
        created_at=kept.created_at if kept else now, updated_at=now,
        connected_at=consented_at, grant_consented_at=grant_consented_at,
        scopes_requested=grant.scopes_requested, scopes_granted=grant.scopes_granted,
        access_expires_at=tokens.access_expires_at, refresh_expires_at=refresh_expires_at,
        next_refresh_at=next_refresh_at if refresh_token or renews_with_access_token or chain_next is not None
        else (None if requires_refresh_token else now),
        status_reason=Reason.CONNECT_FINISHING if chain_next is not None else None, chain_next=chain_next,
        # A kept refresh token keeps what is known of it: it may already have been rotated away, or be at the
        # provider right now under a refresh's lease (if that refresh dies, nobody saved what it was given).
        refresh_in_doubt=bool(existing and refresh_token == stored_refresh_token
                              and (existing.in_doubt(now) or existing.lease_owner)),
        display_name=kept.display_name if kept else None,
        avatar_url=kept.avatar_url if kept else None,
        outbox_seq=existing.outbox_seq if existing else 0,
        outbox=dict(existing.outbox) if existing else {},
    )
    previous = kept.status if kept else None
    event = connection_event(
        RECONNECTED if kept else CREATED, connection,
        reason=Reason.RECONNECTED if kept else Reason.CONNECTED, occurred_at=now,
        extra={"scopes_granted": list(connection.scopes_granted), "missing_scopes": missing_scopes,
               "previous_status": previous,
               **({"connect_finishing": True} if chain_next is not None else {})},
    )
    return GrantPlan(
        connection=connection,
        tokens={"access_token": tokens.access_token, "refresh_token": refresh_token, "token_type": tokens.token_type,
                **({"issued_at": tokens.issued_at} if renews_with_access_token else {})},
        event=event, expected_revision=existing.revision if existing else None, previous_status=previous,
        kept_refresh_token=bool(existing and not tokens.refresh_token and refresh_token),
    )


def _still_usable(connection: Connection, now: int) -> bool:
    """A stored refresh token can still be used: the grant was never refused or ended and has not expired."""
    return connection.status not in ENDED and not (
        connection.refresh_expires_at and connection.refresh_expires_at <= now)
