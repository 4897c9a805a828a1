"""The API's answers as typed, immutable values (dataclasses). Times are timezone-aware UTC datetimes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Connection statuses (the API's `status`).
ACTIVE, AT_RISK, NEEDS_REAUTH = "active", "at_risk", "needs_reauth"
DISCONNECTING, DISCONNECTED = "disconnecting", "disconnected"
# Operation statuses: `running` until the background job is done.
RUNNING, SUCCEEDED, SUPERSEDED = "running", "succeeded", "superseded"


def _time(value: Any) -> dt.datetime | None:
    """`2027-01-15T10:00:00Z` -> an aware UTC datetime; None stays None."""
    if not isinstance(value, str) or not value:
        return None
    parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


@dataclass(frozen=True)
class ConnectSession:
    """A single-use connect link (`POST /connect-sessions`): send the user's browser to `connect_url` before
    `expires_at` (10 minutes). The URL holds a secret: do not log it."""

    connect_url: str = field(repr=False)
    expires_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConnectSession:
        return cls(connect_url=data["connect_url"], expires_at=_time(data.get("expires_at")))


@dataclass(frozen=True)
class RevokeState:
    """After a disconnect: whether revoking the grant at the provider kept failing, and the provider's log id."""

    failed: bool
    provider_log_id: str | None


@dataclass(frozen=True)
class LastRefresh:
    """The last refresh: when, `outcome` (`succeeded`, `transient_failure`, `failed`, `paused`, `operator_error`,
    or None before the first), why, and the provider's log id."""

    at: dt.datetime | None
    outcome: str | None
    reason: str | None
    provider_log_id: str | None


@dataclass(frozen=True)
class Connection:
    """A connection's metadata and health (`GET /connections/{id}`); never a token.

    `status` is one of `active`, `at_risk`, `needs_reauth`, `disconnecting`, `disconnected`; `status_reason` says
    why. Scopes are tuples of the provider's scope names. Any time may be None where the API answers null.
    """

    connection_id: str
    owner_id: str
    provider: str
    account_id: str
    display_name: str | None
    avatar_url: str | None
    status: str
    status_reason: str | None
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...]
    missing_scopes: tuple[str, ...]
    created_at: dt.datetime | None
    connected_at: dt.datetime | None
    updated_at: dt.datetime | None
    access_expires_at: dt.datetime | None
    refresh_expires_at: dt.datetime | None
    next_refresh_at: dt.datetime | None
    refresh_in_doubt: bool
    revoke: RevokeState
    last_refresh: LastRefresh

    @property
    def needs_user(self) -> bool:
        """True when no token can be had without the user connecting again."""
        return self.status in (NEEDS_REAUTH, DISCONNECTING, DISCONNECTED)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Connection:
        revoke = data.get("revoke") or {}
        last = data.get("last_refresh") or {}
        return cls(
            connection_id=data["connection_id"], owner_id=data.get("owner_id", ""), provider=data.get("provider", ""),
            account_id=data.get("account_id", ""), display_name=data.get("display_name"),
            avatar_url=data.get("avatar_url"), status=data["status"], status_reason=data.get("status_reason"),
            scopes_requested=_strings(data.get("scopes_requested")),
            scopes_granted=_strings(data.get("scopes_granted")),
            missing_scopes=_strings(data.get("missing_scopes")),
            created_at=_time(data.get("created_at")), connected_at=_time(data.get("connected_at")),
            updated_at=_time(data.get("updated_at")), access_expires_at=_time(data.get("access_expires_at")),
            refresh_expires_at=_time(data.get("refresh_expires_at")),
            next_refresh_at=_time(data.get("next_refresh_at")),
            refresh_in_doubt=bool(data.get("refresh_in_doubt")),
            revoke=RevokeState(failed=bool(revoke.get("failed")), provider_log_id=revoke.get("provider_log_id")),
            last_refresh=LastRefresh(at=_time(last.get("at")), outcome=last.get("outcome"),
                                     reason=last.get("reason"), provider_log_id=last.get("provider_log_id")),
        )


@dataclass(frozen=True)
class AccessToken:
    """A valid access token (`GET /connections/{id}/token`). Keep it in memory only; its repr never shows it.

    `expires_at` is when it stops working; `scopes` the granted scopes; `account_id` the provider's account.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_at: dt.datetime | None
    scopes: tuple[str, ...]
    account_id: str
    channel_id: str | None = None  # asked with `channel_id`: that channel
    token_source: str | None = None  # `channel` (its own token, e.g. a Page's) or `connection` (the parent's)

    @property
    def authorization(self) -> str:
        """The value of an `Authorization` header for the provider's API, e.g. `Bearer act.xyz`."""
        return f"{self.token_type or 'Bearer'} {self.access_token}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccessToken:
        return cls(access_token=data["access_token"], token_type=data.get("token_type", "Bearer"),
                   expires_at=_time(data.get("expires_at")), scopes=_strings(data.get("scopes")),
                   account_id=data.get("account_id", ""), channel_id=data.get("channel_id"),
                   token_source=data.get("token_source"))


@dataclass(frozen=True)
class Channel:
    """One channel a connection's grant can post to (`GET /connections/{id}/channels`): a Facebook Page, a
    LinkedIn organization, a YouTube channel. `has_own_token`: the provider issued it a token of its own."""

    channel_id: str
    name: str | None
    has_own_token: bool
    status: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Channel:
        return cls(channel_id=data["channel_id"], name=data.get("name"),
                   has_own_token=bool(data.get("has_own_token")), status=data.get("status", ""))


@dataclass(frozen=True)
class Page:
    """One page of an owner's connections (`GET /connections`); `next_cursor` is None on the last page."""

    connections: tuple[Connection, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Page:
        return cls(connections=tuple(Connection.from_json(c) for c in data.get("connections") or []),
                   next_cursor=data.get("next_cursor"))


@dataclass(frozen=True)
class RefreshResult:
    """`POST /connections/{id}/refresh`: `result` is `refreshed`, `not_due`, `superseded`, `retrying`, `paused`,
    `needs_reauth`, `inactive`, `unknown` or `not_started` (call again); `connection` the connection after it."""

    result: str
    connection: Connection

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RefreshResult:
        return cls(result=data["result"], connection=Connection.from_json(data["connection"]))


@dataclass(frozen=True)
class ClaimResult:
    """`POST /connections/claims`: `result` is `created` or `reconnected`; `connection` the connection claimed."""

    result: str
    connection: Connection

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimResult:
        return cls(result=data["result"], connection=Connection.from_json(data["connection"]))


@dataclass(frozen=True)
class Operation:
    """A background job the API answered 202 for: a disconnect (`kind` `disconnect`), an owner's erasure
    (`erase_owner`) or a provider account's (`erase_account`).

    `status` is `running`, `succeeded` or `superseded` (the user connected the account again first); `status_url`
    is its path on the API (`GET /operations/{operation_id}`); `remaining` counts connections not yet disconnected
    (or, for an erasure, not yet deleted; a lower bound past 500); `revoke_failed` those whose grant the provider
    never accepted to revoke (tokens erased all the same). Kept 30 days.
    """

    operation_id: str
    kind: str
    status: str
    status_url: str
    created_at: dt.datetime | None
    connection_id: str | None
    owner_id: str | None
    provider: str | None
    account_id: str | None
    remaining: int
    revoke_failed: int

    @property
    def done(self) -> bool:
        """True once the job has finished (`succeeded` or `superseded`)."""
        return self.status != RUNNING

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        return cls(
            operation_id=data["operation_id"], kind=data.get("kind", ""), status=data["status"],
            status_url=data.get("status_url") or f"/operations/{data['operation_id']}",
            created_at=_time(data.get("created_at")), connection_id=data.get("connection_id"),
            owner_id=data.get("owner_id"), provider=data.get("provider"), account_id=data.get("account_id"),
            remaining=int(data.get("remaining") or 0), revoke_failed=int(data.get("revoke_failed") or 0),
        )
