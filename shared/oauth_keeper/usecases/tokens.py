"""Tokens on demand for the app's backend: a valid access token (refreshed first when needed), or a forced refresh.

`TokenAccess.token_for` is the one place the service hands out a token (the design allows no other).
"""

from __future__ import annotations

import random
import time
from typing import NotRequired, TypedDict

from ..domain.channels import CHANNEL_ID_RULE, valid_channel_id
from ..domain.connection import ACTIVE, ENDED, Connection
from ..domain.deadlines import LEASE_SECONDS, budget
from ..domain.errors import InvalidInput, NotFound, TemporarilyUnavailable, TokenDecryptionError
from ..domain.renewal import plan
from ..domain.schedule import DEFAULT_READ_WINDOW, implausible, read_mark_due
from ..domain.timestamps import iso8601
from ..domain.validation import int_param
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, ConnectionRepository, ProviderProfiles, Sleep
from .channels import Channels
from .connections import ConnectionView, connection_view, existing, usable
from .refresh import (
    BUSY,
    INACTIVE,
    NEEDS_USER,
    NO_TIME,
    REFRESHED,
    RETRYING,
    SUPERSEDED,
    UNKNOWN,
    Refresher,
    RefreshOutcome,
)

NOT_STARTED = "not_started"  # a forced refresh found too little time left to call the provider and commit

DEFAULT_MIN_VALID = 300
MAX_MIN_VALID = 3600
WAIT_STEP = 0.25
WAIT_LIMIT = float(LEASE_SECONDS)  # a sibling's lease lasts no longer; the deadline bounds the wait too


class TokenAnswer(TypedDict):
    """`GET /connections/{id}/token`'s answer (RFC 6750 bearer token); `expires_at` ISO 8601 UTC. With
    `channel_id`: that channel, and `token_source` says whose token it is: `channel` (its own derived token, e.g.
    a Facebook Page token, no expiry known: `expires_at` null) or `connection` (the parent's, which the provider
    takes for that channel)."""

    access_token: str
    token_type: str
    expires_at: str | None
    scopes: list[str]
    account_id: str
    channel_id: NotRequired[str]
    token_source: NotRequired[str]


class RefreshAnswer(TypedDict):
    result: str
    connection: ConnectionView


class TokenAccess:
    def __init__(self, *, connections: ConnectionRepository, refresher: Refresher, profiles: ProviderProfiles,
                 clock: Clock, sleep: Sleep = time.sleep, read_window: int = DEFAULT_READ_WINDOW,
                 expiry_warning: int = 14 * 86_400, channels: Channels | None = None) -> None:
        """`read_window` (seconds, ADAPTIVE_READ_WINDOW): under the `adaptive` policy a read is recorded at most
        once per window, and keeps the connection eager for at least that long; `expiry_warning` (seconds) as
        the refresher's, for the plan a read of an idle connection writes; `channels` serves a channel's token
        (`channel_id`; None: no channels)."""
        self._channels = channels
        self._read_window = read_window
        self._expiry_warning = expiry_warning
        self._connections = connections
        self._profiles = profiles
        self._refresher = refresher
        self._clock = clock
        self._sleep = sleep

    def token_for(self, connection_id: str, min_valid_seconds: str | None, *, owner_id: str | None = None,
                  deadline: float | None = None, channel_id: str | None = None) -> TokenAnswer:
        """A valid access token for at least `min_valid_seconds` (0-3600, default 300). When it would end
        sooner it is refreshed first through the refresher's single-flight; a refresh already in flight is
        waited for (at most ~22 s) instead of started again. The route audits every read, served or refused
        (oauth_keeper/audit.py; the connection's owner comes from `existing`), never the token.

        With `owner_id`, only a connection of that owner: another owner's is NotFound, as an unknown id.
        Raises NotFound, InvalidInput, ConnectionUnavailable (409: needs_reauth or disconnected),
        TemporarilyUnavailable (503: the provider could not refresh and no valid token is left),
        TokenDecryptionError (the stored tokens failed authentication; never served). `deadline` (epoch
        seconds): when the invocation must be over; refreshing and waiting for a sibling end before it.

        With `channel_id` (one of the connection's channels, ADR 0024): the parent is checked and kept valid the
        same way, then the channel's own token is served when the provider issued one, else the parent's, with
        `channel_id` and `token_source` in the answer. Raises InvalidInput (a malformed channel id), NotFound
        (`channel_not_found`) besides the above."""
        if channel_id is not None and not valid_channel_id(channel_id):  # before anything is refreshed
            raise InvalidInput(CHANNEL_ID_RULE, field="channel_id")
        if channel_id is not None and self._channels is None:
            raise NotFound("No such channel for this connection.", code="channel_not_found", field="channel_id")
        min_valid = int_param(min_valid_seconds, "min_valid_seconds", default=DEFAULT_MIN_VALID, low=0,
                              high=MAX_MIN_VALID)
        connection = usable(existing(self._connections, connection_id, owner_id))
        if channel_id is not None and self._channels is not None:
            self._channels.require(connection, channel_id)  # an unknown channel costs no refresh
        now = self._clock.now()
        # An expiry further ahead than the provider's tokens ever live was stored from an absurd answer by an
        # older version: the token may be dead already, so it is refreshed first.
        profile = self._profiles.profile(connection.provider)
        trusted = not implausible(connection.access_expires_at, now, profile.access_lifetime.maximum)
        fresh = trusted and _valid_for(connection, now, _satisfiable(connection, min_valid))
        if profile.refresh_policy == "adaptive":
            # Before any refresh: the refresh then plans with this read (eager) when it commits.
            self._record_read(connection, int(now), replan=fresh)
        if not fresh:
            connection = self._refreshed(connection, deadline)
        try:
            tokens = self._connections.open_tokens(connection)
        except TokenDecryptionError:
            logger.error("Stored tokens failed authentication; not served", extra={"connection_id": connection_id})
            record_metric("TokenUnreadable", MetricUnit.Count, 1)
            raise
        answer: TokenAnswer = {
            "access_token": tokens["access_token"],
            "token_type": tokens.get("token_type") or "Bearer",
            "expires_at": iso8601(connection.access_expires_at),
            "scopes": list(connection.scopes_granted),
            "account_id": connection.account_id,
        }
        if channel_id is not None and self._channels is not None:
            own = self._channels.token(connection, channel_id)
            answer["channel_id"] = channel_id
            answer["token_source"] = "channel" if own else "connection"
            if own:  # a derived token: no expiry is known for it (Page tokens from a long-lived user token)
                answer.update(access_token=own, token_type="Bearer", expires_at=None)  # noqa: S106 - RFC 6750
        record_metric("TokenReads", MetricUnit.Count, 1)
        return answer

    def _record_read(self, connection: Connection, now: int, *, replan: bool) -> None:
        """`adaptive` (ADR 0026): record this read (at most one write per connection per window) and, when the
        token is still valid (`replan`; otherwise the refresh about to run plans anew) and the connection was
        planned as an idle one, put it back on the eager schedule in the same write. Best effort: a failure is
        logged and counted (`TokenReadsNotRecorded`), never the answer's; the token is served all the same."""
        try:
            mark = read_mark_due(connection.last_read_at, now, self._read_window)
            eager_at = self._eager_plan(connection, now) if replan else None
            if not mark and eager_at is None:
                return  # read within the window and already planned eagerly: no write
            self._connections.record_read(connection, now, window=self._read_window, next_refresh_at=eager_at)
        except Exception as exc:  # noqa: BLE001 - a read is served whether or not it could be recorded
            logger.warning("Token read not recorded", extra={"connection_id": connection.connection_id,
                                                             "error_type": type(exc).__name__})
            record_metric("TokenReadsNotRecorded", MetricUnit.Count, 1)

    def _eager_plan(self, connection: Connection, now: int) -> int | None:
        """The plan a read connection gets (epoch seconds) when it is earlier than the stored one; None when the
        stored plan is already as early (eager), or the connection is not for the schedule to move: not active,
        failing, held, parked or leased, or a grant nothing renews (those plans are the refresher's decisions)."""
        profile = self._profiles.profile(connection.provider)
        if (connection.status != ACTIVE or connection.failures or connection.parked_since is not None
                or connection.lease_owner or connection.next_refresh_at is None
                # On a cadence (ADR 0023): planned eagerly already, at a phase that may lie up to a sweep interval
                # past "issued + period"; rewriting it would move it to the Due index for nothing.
                or connection.cadence_shard is not None
                or connection.last_refresh_outcome not in (None, "succeeded")
                or not (profile.issues_refresh_tokens or profile.refreshes_with_access_token)):
            return None
        # Without jitter (the latest eager moment), from the last refresh or (re)connect, whichever is later (no
        # earlier than the tokens' issue): a stored eager plan is never later, so an eager one is never rewritten.
        issued = _tokens_issued_at(connection) or now
        planned = plan(profile, issued_at=issued,
                       access_expires_at=connection.access_expires_at, refresh_expires_at=connection.refresh_expires_at,
                       expiry_warning=self._expiry_warning, rng=_LATEST, last_read_at=now, now=now,
                       read_window=self._read_window)
        return planned if planned < connection.next_refresh_at else None

    def force_refresh(self, connection_id: str, *, owner_id: str | None = None,
                      deadline: float | None = None) -> RefreshAnswer:
        """Refresh now, whatever the schedule says (same single-flight); with `owner_id`, only a connection of that
        owner. Raises NotFound (also another owner's), InvalidInput (a malformed owner id),
        ConnectionUnavailable."""
        connection = usable(existing(self._connections, connection_id, owner_id))
        outcome = self._refresher.refresh(connection.connection_id, force=True, deadline=deadline)
        if outcome.result == BUSY and outcome.reason == NO_TIME:  # nothing was sent: say so, not "refreshed"
            current = outcome.connection or connection
            return {"result": NOT_STARTED, "connection": connection_view(current, self._clock.now())}
        if outcome.result == BUSY:
            waited = self._wait_for_sibling(connection, deadline)
            # Only a sibling that committed new tokens refreshed it; one still at it (or that failed) did not.
            outcome = RefreshOutcome(connection_id, REFRESHED if waited.token_version != connection.token_version
                                     else RETRYING, connection=waited)
        current = outcome.connection or existing(self._connections, connection_id)
        if outcome.result in (NEEDS_USER, INACTIVE):
            usable(current)
        return {"result": str(outcome.result), "connection": connection_view(current, self._clock.now())}

    def _refreshed(self, connection: Connection, deadline: float | None) -> Connection:
        outcome = self._refresher.refresh(connection.connection_id, force=True, deadline=deadline)
        if outcome.result == REFRESHED and outcome.connection:
            return outcome.connection
        if outcome.result in (BUSY, SUPERSEDED):
            current = self._wait_for_sibling(connection, deadline)
        elif outcome.result in (NEEDS_USER, INACTIVE, UNKNOWN):
            current = existing(self._connections, connection.connection_id)
            usable(current)
        else:  # retrying or paused: provider trouble
            current = outcome.connection or existing(self._connections, connection.connection_id)
        current = usable(current)
        if _valid_for(current, self._clock.now(), 0):
            return current  # still valid, if for less than asked: better than failing the post
        raise TemporarilyUnavailable(
            f"{current.provider} could not refresh this connection just now; try again in a minute.",
            extra={"retryable": True, "status": str(current.status), "reason": current.last_refresh_reason},
        )

    def _wait_for_sibling(self, connection: Connection, deadline: float | None) -> Connection:
        """Another refresher holds the lease: wait (bounded) for its result instead of refreshing again."""
        waited = 0.0
        limit = min(WAIT_LIMIT, budget(deadline, self._clock.now()) - 1.0)  # a second left to answer
        while waited < limit:
            self._sleep(WAIT_STEP)
            waited += WAIT_STEP
            current = existing(self._connections, connection.connection_id)
            settled = current.token_version != connection.token_version or current.status in ENDED
            if settled or not current.lease_owner or (current.lease_expires_at or 0) <= self._clock.now():
                return current
        return existing(self._connections, connection.connection_id)


class _Latest(random.Random):
    """An rng for `plan` that draws no jitter: the latest moment the plan allows."""

    def randint(self, a: int, b: int) -> int:
        return a


_LATEST = _Latest()


# A read asking more validity than the provider's tokens live is capped at what a fresh token gives, less this:
# otherwise no refresh could ever satisfy it, and every such read would refresh at the provider again.
FRESH_MARGIN = 300


def _satisfiable(connection: Connection, min_valid: int) -> int:
    """`min_valid` (seconds), capped at the lifetime the current token was issued with less FRESH_MARGIN (never
    below 0): at most one refresh per FRESH_MARGIN however often a caller asks for more than a token lives."""
    issued = _tokens_issued_at(connection)
    if not (issued and connection.access_expires_at):
        return min_valid
    return min(min_valid, max(0, connection.access_expires_at - issued - FRESH_MARGIN))


def _tokens_issued_at(connection: Connection) -> int | None:
    """When the stored tokens were issued (epoch seconds): the later of the last refresh and the (re)connect (a
    reconnect after a refresh brought newer ones); None when neither is known."""
    return max(connection.last_refresh_at or 0, connection.connected_at or 0) or None


def _valid_for(connection: Connection, now: float, seconds: int) -> bool:
    return bool(connection.access_expires_at and connection.access_expires_at - now > seconds)
