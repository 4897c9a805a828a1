"""Connections as the domain sees them, stored one item each with tokens sealed in one ciphertext."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .crypto import TokenCipher
from .items import MISSING, ItemStore
from .oauth import TokenSet
from .schedule import due_shard

ACTIVE, AT_RISK, NEEDS_REAUTH, DISCONNECTED = "active", "at_risk", "needs_reauth", "disconnected"
OUTBOX_PREFIX = "ob_"  # one top-level attribute per pending event: writers never overlap
_SAVE_ATTEMPTS = 12

# Attributes a reconnect clears: whatever the old grant's refresh history said no longer applies.
_GRANT_RESETS = (
    "status_reason", "lease_owner", "lease_expires_at", "refresh_in_doubt", "failures", "expiring_notified",
    "last_refresh_outcome", "last_refresh_reason", "last_provider_log_id", "retry_at",
)


def connection_id_for(owner_id: str, provider: str, account_id: str) -> str:
    """One connection per (owner, provider, account): concurrent callbacks for it land on the same item."""
    # JSON keeps the three parts apart whatever characters they hold.
    digest = hashlib.sha256(json.dumps([owner_id, provider, account_id]).encode()).digest()
    return "con_" + base64.b32encode(digest[:20]).decode("ascii").lower()


@dataclass
class Connection:
    connection_id: str
    owner_id: str
    provider: str
    account_id: str
    status: str
    revision: int  # bumped by every decision write; each such write is guarded on the value it read
    token_version: int  # bumped only when tokens change
    created_at: int
    updated_at: int
    scopes_requested: tuple[str, ...] = ()
    scopes_granted: tuple[str, ...] = ()
    status_reason: str | None = None
    connected_at: int | None = None
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
    sealed_tokens: bytes | None = field(default=None, repr=False)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def account_key(self) -> str:
        return f"{self.provider}#{self.account_id}"

    def in_doubt(self, now: float) -> bool:
        """The provider may hold a rotated token we never saved: flagged, or a lease expired uncommitted."""
        return self.refresh_in_doubt or bool(self.lease_owner and (self.lease_expires_at or 0) <= now)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Connection:
        return cls(
            connection_id=item["connection_id"], owner_id=item["owner_id"], provider=item["provider"],
            account_id=item["account_id"], status=item["status"], revision=int(item.get("revision", 0)),
            token_version=int(item.get("token_version", 0)),
            created_at=item["created_at"], updated_at=item["updated_at"],
            scopes_requested=_split(item.get("scopes_requested")), scopes_granted=_split(item.get("scopes_granted")),
            status_reason=item.get("status_reason"), connected_at=item.get("connected_at"),
            access_expires_at=item.get("access_expires_at"), refresh_expires_at=item.get("refresh_expires_at"),
            next_refresh_at=item.get("next_refresh_at"), display_name=item.get("display_name"),
            avatar_url=item.get("avatar_url"), lease_owner=item.get("lease_owner"),
            lease_expires_at=item.get("lease_expires_at"), refresh_in_doubt=bool(item.get("refresh_in_doubt")),
            failures=int(item.get("failures", 0)), last_refresh_at=item.get("last_refresh_at"),
            last_refresh_outcome=item.get("last_refresh_outcome"),
            last_refresh_reason=item.get("last_refresh_reason"),
            last_provider_log_id=item.get("last_provider_log_id"),
            expiring_notified=bool(item.get("expiring_notified")), outbox_seq=int(item.get("outbox_seq", 0)),
            erase_requested=bool(item.get("erase_requested")), revoke_failed=bool(item.get("revoke_failed")),
            revoke_log_id=item.get("revoke_log_id"),
            sealed_tokens=item.get("tokens"),
            outbox={k[len(OUTBOX_PREFIX):]: json.loads(v) for k, v in item.items() if k.startswith(OUTBOX_PREFIX)},
        )


_FIELDS = {f.name: f.default for f in fields(Connection) if f.name not in ("outbox", "sealed_tokens")}


@dataclass(frozen=True)
class Grant:
    """What a completed authorization gives us, before it is stored."""

    owner_id: str
    provider: str
    account_id: str
    tokens: TokenSet
    scopes_requested: tuple[str, ...]
    scopes_granted: tuple[str, ...]


@dataclass(frozen=True)
class SavedGrant:
    connection: Connection
    created: bool
    previous_status: str | None


EventBuilder = Callable[[Connection, bool, str | None], dict[str, Any]]
Scheduler = Callable[[str, TokenSet, int], int | None]  # (provider, tokens, now) -> next_refresh_at


class ConnectionStore:
    def __init__(self, items: ItemStore, cipher: TokenCipher, due_shards: int) -> None:
        self.items = items
        self._cipher = cipher
        self._shards = due_shards

    # -- reads -------------------------------------------------------------------------------------------
    def get(self, connection_id: str) -> Connection | None:
        item = self.items.get(connection_id)
        return Connection.from_item(item) if item and "owner_id" in item else None

    def open_tokens(self, connection: Connection) -> dict[str, Any]:
        if not connection.sealed_tokens:
            return {}
        return self._cipher.open(
            connection.sealed_tokens, connection_id=connection.connection_id, provider=connection.provider
        )

    def seal_tokens(self, connection_id: str, provider: str, tokens: dict[str, Any]) -> bytes:
        return self._cipher.seal(tokens, connection_id=connection_id, provider=provider)

    def shard_of(self, connection_id: str) -> int:
        return due_shard(connection_id, self._shards)

    @property
    def shards(self) -> int:
        return self._shards

    def due(self, shard: int, horizon: int, page_size: int = 500) -> Iterator[str]:
        """Ids in one shard of the sparse due index with next_refresh_at <= horizon, every page."""
        yield from self._pages("Due", shard, range_max=horizon, page_size=page_size)

    def with_pending_events(self, shard: int) -> Iterator[str]:
        yield from self._pages("Outbox", shard, page_size=500)

    def owners_of_account(self, provider: str, account_id: str) -> set[str]:
        """Owners with a live connection to this account (the account index is KEYS_ONLY: read each item)."""
        owners = set()
        for connection_id in self._pages("ByAccount", f"{provider}#{account_id}", page_size=100):
            connection = self.get(connection_id)
            if connection and connection.status != DISCONNECTED:
                owners.add(connection.owner_id)
        return owners

    def _pages(self, index: str, hash_value: Any, *, range_max: Any = None, page_size: int) -> Iterator[str]:
        cursor = None
        while True:
            keys, cursor = self.items.query(index, hash_value, range_max=range_max, limit=page_size, start=cursor)
            yield from keys
            if not cursor:
                return

    # -- writes ------------------------------------------------------------------------------------------
    def save_grant(self, grant: Grant, now: float, event_for: EventBuilder, schedule: Scheduler) -> SavedGrant:
        """Create the connection, or bring the existing one back to active with the new tokens.

        Guarded on the revision read and retried on a concurrent writer, so two callbacks for the same
        account never make two connections or lose a write. The event goes into the item's outbox in the
        same write, so a crash after this commit cannot lose it.
        """
        connection_id = connection_id_for(grant.owner_id, grant.provider, grant.account_id)
        for attempt in range(_SAVE_ATTEMPTS):
            existing = self.get(connection_id)
            saved = self._write_grant(connection_id, grant, existing, int(now), event_for, schedule)
            if saved:
                return saved
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - de-synchronise contenders
        raise RuntimeError("Connection kept changing while saving a grant.")

    def _write_grant(self, connection_id: str, grant: Grant, existing: Connection | None, now: int,
                     event_for: EventBuilder, schedule: Scheduler) -> SavedGrant | None:
        tokens = grant.tokens
        refresh_token, refresh_expires_at = tokens.refresh_token, tokens.refresh_expires_at
        if not refresh_token and existing:  # an empty refresh token never overwrites a stored one
            refresh_token = self.open_tokens(existing).get("refresh_token")
            refresh_expires_at = existing.refresh_expires_at
        sealed = self.seal_tokens(connection_id, grant.provider, {
            "access_token": tokens.access_token, "refresh_token": refresh_token, "token_type": tokens.token_type,
        })
        connection = Connection(
            connection_id=connection_id, owner_id=grant.owner_id, provider=grant.provider,
            account_id=grant.account_id, status=ACTIVE,
            revision=(existing.revision if existing else 0) + 1,
            token_version=(existing.token_version if existing else 0) + 1,
            created_at=existing.created_at if existing else now, updated_at=now, connected_at=now,
            scopes_requested=grant.scopes_requested, scopes_granted=grant.scopes_granted,
            access_expires_at=tokens.access_expires_at, refresh_expires_at=refresh_expires_at,
            next_refresh_at=schedule(grant.provider, tokens, now) if refresh_token else None,
            display_name=existing.display_name if existing else None,
            avatar_url=existing.avatar_url if existing else None,
            sealed_tokens=sealed, outbox_seq=existing.outbox_seq if existing else 0,
            outbox=dict(existing.outbox) if existing else {},
        )
        event = event_for(connection, existing is None, existing.status if existing else None)
        attributes = {
            "owner_id": connection.owner_id, "provider": connection.provider, "account_id": connection.account_id,
            "account_key": connection.account_key, "status": connection.status,
            "revision": connection.revision, "token_version": connection.token_version,
            "created_at": connection.created_at, "updated_at": now, "connected_at": now,
            "scopes_requested": ",".join(connection.scopes_requested),
            "scopes_granted": ",".join(connection.scopes_granted),
            "access_expires_at": connection.access_expires_at, "refresh_expires_at": refresh_expires_at,
            "tokens": sealed, **self.schedule_attributes(connection_id, connection.next_refresh_at),
        }
        attributes.update(self._outbox_attributes(connection, [event]))
        connection.outbox_seq = attributes["outbox_seq"]
        connection.outbox[event["event_id"]] = event
        expect = {"revision": existing.revision} if existing else {"connection_id": MISSING}
        stale = [a for a in _GRANT_RESETS if a not in attributes]
        if not self.items.update(connection_id, set=attributes, remove=stale, expect=expect):
            return None
        return SavedGrant(connection, existing is None, existing.status if existing else None)

    def apply(self, connection: Connection, changes: dict[str, Any], *, remove: Iterable[str] = (),
              events: Iterable[dict[str, Any]] = ()) -> Connection | None:
        """One decision write: guarded on the revision `connection` was read at; None if it moved since."""
        attributes = dict(changes)
        attributes["revision"] = connection.revision + 1
        event_list = list(events)
        if event_list:
            attributes.update(self._outbox_attributes(connection, event_list))
        remove = list(remove)
        if not self.items.update(connection.connection_id, set=attributes, remove=remove,
                                 expect={"revision": connection.revision}):
            return None
        # What was written, applied to a copy: no read-back on the refresh path.
        updated = replace(connection, outbox=dict(connection.outbox))
        for name, value in attributes.items():
            if name == "tokens":
                updated.sealed_tokens = value
            elif name in _FIELDS:
                setattr(updated, name, value if value is not None else _FIELDS[name])
        for name in remove:
            if name in _FIELDS:
                setattr(updated, name, _FIELDS[name])
        for event in event_list:
            updated.outbox[event["event_id"]] = event
        return updated

    def schedule_attributes(self, connection_id: str, next_refresh_at: int | None) -> dict[str, Any]:
        """The sparse due index: only connections that need refreshing carry its attributes (None removes)."""
        if next_refresh_at is None:
            return {"next_refresh_at": None, "due_shard": None}
        return {"next_refresh_at": int(next_refresh_at), "due_shard": self.shard_of(connection_id)}

    def erase(self, connection_id: str) -> bool:
        """Delete a disconnected connection for good, once no event of it waits in the outbox."""
        connection = self.get(connection_id)
        if connection is None:
            return True
        if connection.status != DISCONNECTED or connection.outbox:
            return False
        return self.items.delete(connection_id, expect={"revision": connection.revision})

    def set_profile(self, connection_id: str, display_name: str | None, avatar_url: str | None) -> None:
        """Enrichment after the commit: never touches tokens or status, so it cannot clobber a refresh."""
        values = {"display_name": display_name, "avatar_url": avatar_url}
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self.items.update(connection_id, set=values, expect={"connection_id": connection_id})

    def clear_outbox(self, connection: Connection, sent: list[str]) -> None:
        """Drop published events; leave the Outbox index only if nothing new arrived meanwhile."""
        if not sent:
            return
        attributes = [OUTBOX_PREFIX + event_id for event_id in sent]
        if set(sent) >= set(connection.outbox) and self.items.update(
            connection.connection_id, set={}, remove=[*attributes, "outbox_shard"],
            expect={"outbox_seq": connection.outbox_seq},
        ):
            return
        self.items.update(connection.connection_id, set={}, remove=attributes, expect={})

    def _outbox_attributes(self, connection: Connection, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Pending events, and the sparse Outbox index entry the sweep uses to find ones left behind."""
        attributes: dict[str, Any] = {
            OUTBOX_PREFIX + e["event_id"]: json.dumps(e, separators=(",", ":")) for e in events
        }
        attributes["outbox_seq"] = connection.outbox_seq + 1
        attributes["outbox_shard"] = self.shard_of(connection.connection_id)
        return attributes


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)
