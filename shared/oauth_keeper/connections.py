"""The Connections table: one item per connected account, tokens sealed in one ciphertext."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .crypto import TokenCipher
from .dynamo import from_item, is_conditional_failure, to_item, to_values
from .oauth import TokenSet
from .schedule import due_shard, next_refresh_at

ACTIVE, AT_RISK, NEEDS_REAUTH, DISCONNECTED = "active", "at_risk", "needs_reauth", "disconnected"
OUTBOX_PREFIX = "ob_"  # one top-level attribute per pending event: writers never overlap
_SAVE_ATTEMPTS = 5


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
    token_version: int
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
    sealed_tokens: bytes | None = field(default=None, repr=False)
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def account_key(self) -> str:
        return f"{self.provider}#{self.account_id}"

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Connection:
        return cls(
            connection_id=item["connection_id"], owner_id=item["owner_id"], provider=item["provider"],
            account_id=item["account_id"], status=item["status"], token_version=int(item.get("token_version", 0)),
            created_at=item["created_at"], updated_at=item["updated_at"],
            scopes_requested=_split(item.get("scopes_requested")), scopes_granted=_split(item.get("scopes_granted")),
            status_reason=item.get("status_reason"), connected_at=item.get("connected_at"),
            access_expires_at=item.get("access_expires_at"), refresh_expires_at=item.get("refresh_expires_at"),
            next_refresh_at=item.get("next_refresh_at"), display_name=item.get("display_name"),
            avatar_url=item.get("avatar_url"), sealed_tokens=item.get("tokens"),
            outbox={k[len(OUTBOX_PREFIX):]: json.loads(v) for k, v in item.items() if k.startswith(OUTBOX_PREFIX)},
        )


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


class ConnectionStore:
    def __init__(self, dynamodb: Any, table: str, cipher: TokenCipher, due_shards: int) -> None:
        self._db = dynamodb
        self._table = table
        self._cipher = cipher
        self._shards = due_shards

    def get(self, connection_id: str) -> Connection | None:
        answer = self._db.get_item(
            TableName=self._table, Key={"connection_id": {"S": connection_id}}, ConsistentRead=True
        )
        item = from_item(answer.get("Item"))
        return Connection.from_item(item) if item else None

    def open_tokens(self, connection: Connection) -> dict[str, Any]:
        if not connection.sealed_tokens:
            return {}
        return self._cipher.open(
            connection.sealed_tokens, connection_id=connection.connection_id, provider=connection.provider
        )

    def save_grant(self, grant: Grant, now: float, event_for: EventBuilder) -> SavedGrant:
        """Create the connection, or bring the existing one back to active with the new tokens.

        Optimistic: conditional on the token version read, retried on a concurrent writer, so two
        callbacks for the same account never make two connections or lose a write. The event goes into
        the item's outbox in the same write, so a crash after this commit cannot lose it.
        """
        connection_id = connection_id_for(grant.owner_id, grant.provider, grant.account_id)
        for _ in range(_SAVE_ATTEMPTS):
            existing = self.get(connection_id)
            try:
                return self._write_grant(connection_id, grant, existing, int(now), event_for)
            except Exception as exc:
                if not is_conditional_failure(exc):
                    raise
        raise RuntimeError("Connection kept changing while saving a grant.")

    def _write_grant(
        self, connection_id: str, grant: Grant, existing: Connection | None, now: int, event_for: EventBuilder
    ) -> SavedGrant:
        tokens = grant.tokens
        refresh_token, refresh_expires_at = tokens.refresh_token, tokens.refresh_expires_at
        if not refresh_token and existing:  # an empty refresh token never overwrites a stored one
            refresh_token = self.open_tokens(existing).get("refresh_token")
            refresh_expires_at = existing.refresh_expires_at
        sealed = self._cipher.seal(
            {"access_token": tokens.access_token, "refresh_token": refresh_token, "token_type": tokens.token_type},
            connection_id=connection_id, provider=grant.provider,
        )
        connection = Connection(
            connection_id=connection_id, owner_id=grant.owner_id, provider=grant.provider,
            account_id=grant.account_id, status=ACTIVE,
            token_version=(existing.token_version if existing else 0) + 1,
            created_at=existing.created_at if existing else now, updated_at=now, connected_at=now,
            scopes_requested=grant.scopes_requested, scopes_granted=grant.scopes_granted,
            access_expires_at=tokens.access_expires_at, refresh_expires_at=refresh_expires_at,
            next_refresh_at=next_refresh_at(tokens.issued_at, tokens.access_expires_at) if refresh_token else None,
            display_name=existing.display_name if existing else None,
            avatar_url=existing.avatar_url if existing else None,
            sealed_tokens=sealed,
        )
        event = event_for(connection, existing is None, existing.status if existing else None)
        connection.outbox = {event["event_id"]: event}
        item = self._item(connection)
        if existing is None:
            self._db.put_item(
                TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(connection_id)"
            )
        else:
            # Replace the whole item (it is small) but keep events still waiting in the old outbox.
            for event_id, pending in existing.outbox.items():
                item[OUTBOX_PREFIX + event_id] = json.dumps(pending, separators=(",", ":"))
                connection.outbox[event_id] = pending
            self._db.put_item(
                TableName=self._table, Item=to_item(item),
                ConditionExpression="token_version = :version",
                ExpressionAttributeValues=to_values({":version": existing.token_version}),
            )
        return SavedGrant(connection, existing is None, existing.status if existing else None)

    def set_profile(self, connection_id: str, display_name: str | None, avatar_url: str | None) -> None:
        """Enrichment after the commit: never touches tokens or status, so it cannot clobber a refresh."""
        values = {k: v for k, v in ((":d", display_name), (":a", avatar_url)) if v is not None}
        if not values:
            return
        sets = [f"{name} = {ph}" for name, ph in (("display_name", ":d"), ("avatar_url", ":a")) if ph in values]
        self._db.update_item(
            TableName=self._table, Key={"connection_id": {"S": connection_id}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(connection_id)",
            ExpressionAttributeValues=to_values(values),
        )

    def clear_outbox(self, connection_id: str, event_ids: list[str]) -> None:
        if not event_ids:
            return
        names = {f"#e{i}": OUTBOX_PREFIX + event_id for i, event_id in enumerate(event_ids)}
        self._db.update_item(
            TableName=self._table, Key={"connection_id": {"S": connection_id}},
            UpdateExpression="REMOVE " + ", ".join(names), ExpressionAttributeNames=names,
        )

    def owners_of_account(self, provider: str, account_id: str) -> set[str]:
        """Owners with a connection to this account (the account index is KEYS_ONLY: read each item)."""
        answer = self._db.query(
            TableName=self._table, IndexName="ByAccount",
            KeyConditionExpression="account_key = :k",
            ExpressionAttributeValues=to_values({":k": f"{provider}#{account_id}"}),
        )
        owners = set()
        for key in answer.get("Items", []):
            connection = self.get(key["connection_id"]["S"])
            if connection and connection.status != DISCONNECTED:
                owners.add(connection.owner_id)
        return owners

    def _item(self, c: Connection) -> dict[str, Any]:
        item: dict[str, Any] = {
            "connection_id": c.connection_id, "owner_id": c.owner_id, "provider": c.provider,
            "account_id": c.account_id, "account_key": c.account_key, "status": c.status,
            "status_reason": c.status_reason, "token_version": c.token_version,
            "created_at": c.created_at, "updated_at": c.updated_at, "connected_at": c.connected_at,
            "scopes_requested": ",".join(c.scopes_requested), "scopes_granted": ",".join(c.scopes_granted),
            "access_expires_at": c.access_expires_at, "refresh_expires_at": c.refresh_expires_at,
            "display_name": c.display_name, "avatar_url": c.avatar_url, "tokens": c.sealed_tokens,
        }
        if c.next_refresh_at is not None:  # sparse due index: only connections that need refreshing
            item["next_refresh_at"] = c.next_refresh_at
            item["due_shard"] = due_shard(c.connection_id, self._shards)
        for event_id, event in c.outbox.items():
            item[OUTBOX_PREFIX + event_id] = json.dumps(event, separators=(",", ":"))
        return item


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)
