"""The `ConnectionRepository` port over any `ItemStore`: one item per connection, tokens sealed in one attribute.

This module owns the item layout: attribute names, the sparse Due and Outbox index entries, one attribute
per pending event, and the guard items (`guard#<hash>`, in no index) naming the one connection of each owner,
provider and account (ADR 0018). It runs unchanged on DynamoDB (`adapters/dynamodb.py`) and in memory
(`local/memory.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields, replace
from enum import Enum
from typing import Any

from ..domain.claims import is_pending_key
from ..domain.connection import (
    DISCONNECTED,
    Connection,
    Status,
    TokenBinding,
    derived_connection_id,
    guard_key,
    new_connection_id,
)
from ..domain.events import PendingEvent
from ..domain.lifecycle import GrantPlan
from ..domain.schedule import CadenceRecord, ShardSpan, due_shard
from ..ports import MISSING, PRESENT, AtMost, ChannelStore, ItemStore, NotAfter, OneOf, TokenCipher, TransactWrite

OUTBOX_PREFIX = "ob_"  # one top-level attribute per pending event: writers never overlap
SHARD_SPAN_KEY = "_due_shards"  # the sweep's record of which shards may hold items (in no index)
CADENCE_PREFIX = "cadence_"  # on the SHARD_SPAN_KEY item: one attribute per Cadence period in use (ADR 0023)
SWEPT_TO = "swept_to"  # ...and the horizon up to which the sweep queued every Cadence moment
GUARDED = "guarded_connection"  # a guard item's one attribute: the id of the connection it names
_FIND_ATTEMPTS = 5
_SPAN_FIELDS = ("shards", "found", "probed_at", "audit_at")

# Attributes a reconnect clears: whatever the old grant's refresh history said no longer applies.
_GRANT_RESETS = (
    "status_reason", "lease_owner", "lease_expires_at", "refresh_in_doubt", "failures", "expiring_notified",
    "last_refresh_outcome", "last_refresh_reason", "last_provider_log_id", "retry_at",
    "disconnect_requested_at", "revoke_attempts", "parked_since", "operation_id", "erase_requested",
    "revoke_failed", "revoke_log_id", "taken_over_operation", "superseded_pending", "chain_next",
)
_LEASE_ATTRIBUTES = ("lease_owner", "lease_expires_at")
_FIELDS = {f.name: f.default for f in fields(Connection) if f.name not in ("outbox", "sealed_tokens")}
_LISTS = ("scopes_requested", "scopes_granted")


def connection_from_item(item: dict[str, Any]) -> Connection:
    """A stored item (plain Python values) as a Connection. Attributes a newer writer added are ignored."""
    return Connection(
        connection_id=item["connection_id"], owner_id=item["owner_id"], provider=item["provider"],
        account_id=item["account_id"], status=Status(item["status"]), revision=int(item.get("revision", 0)),
        token_version=int(item.get("token_version", 0)),
        created_at=item["created_at"], updated_at=item["updated_at"],
        scopes_requested=_split(item.get("scopes_requested")), scopes_granted=_split(item.get("scopes_granted")),
        status_reason=item.get("status_reason"), connected_at=item.get("connected_at"),
        grant_consented_at=item.get("grant_consented_at"),
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
        profile_pending=bool(item.get("profile_pending")),
        chain_next=int(item["chain_next"]) if item.get("chain_next") is not None else None,
        revoke_log_id=item.get("revoke_log_id"), operation_id=item.get("operation_id"),
        disconnect_requested_at=item.get("disconnect_requested_at"),
        revoke_attempts=int(item.get("revoke_attempts", 0)), parked_since=item.get("parked_since"),
        last_read_at=item.get("last_read_at"),
        cadence_shard=item.get("cadence_shard"),
        cadence_phase=int(item["cadence_phase"]) if item.get("cadence_phase") is not None else None,
        sealed_tokens=item.get("tokens"),
        outbox={k[len(OUTBOX_PREFIX):]: json.loads(v) for k, v in item.items() if k.startswith(OUTBOX_PREFIX)},
    )


class ConnectionStore:
    def __init__(self, items: ItemStore, cipher: TokenCipher, due_shards: int, *, id_scheme: str = "random",
                 channels: ChannelStore | None = None) -> None:
        """`channels`: the connections' channel items, deleted with a connection when it is erased."""
        self._channels = channels
        self.items = items
        self._cipher = cipher
        self._shards = due_shards
        self._derived_ids = id_scheme == "derived"
        self._periods_recorded: set[int] = set()  # Cadence periods this process has seen recorded

    def new_id(self, owner_id: str, provider: str, account_id: str) -> str:
        """The id of a new connection of (owner, provider, account): random (`new_connection_id`), or with the
        `derived` scheme the id versions before ADR 0018 computed, which they look up (the transition deploy: see
        the README's upgrade notes). Either way its guard item is written with it."""
        if self._derived_ids:
            return derived_connection_id(owner_id, provider, account_id)
        return new_connection_id()

    # -- reads -------------------------------------------------------------------------------------------
    def get(self, connection_id: str) -> Connection | None:
        """The connection, read strongly consistent; None when unknown (or the id names a non-connection item)."""
        if is_pending_key(connection_id):  # a grant waiting for its claim is never a connection
            return None
        item = self.items.get(connection_id)
        return connection_from_item(item) if item and "owner_id" in item else None

    def find(self, owner_id: str, provider: str, account_id: str) -> Connection | None:
        """The one connection of (owner, provider, account): the one its guard item names. None when there is
        none, or the guard names a deleted connection (stale: the next new connection replaces it).

        A connection written before guards existed has the id derived from the three (ADR 0010) and no guard:
        it is looked for there, and its guard written now (first touch), so it keeps its id and is never
        duplicated. Raises RuntimeError when the guard keeps changing under five attempts."""
        key, legacy = guard_key(owner_id, provider, account_id), derived_connection_id(owner_id, provider, account_id)
        for _ in range(_FIND_ATTEMPTS):
            named = self._guarded(key)
            if named is not None:
                connection = self.get(named)
                if connection is not None:
                    return connection if _holds(connection, owner_id, provider, account_id) else None
            connection = self.get(legacy) if named != legacy else None
            if connection is None or not _holds(connection, owner_id, provider, account_id):
                return None
            if self.items.update(key, set={GUARDED: legacy},
                                 expect={GUARDED: named} if named else {self.items.key_name: MISSING}):
                return connection
        raise RuntimeError("The connection's guard kept changing.")

    def _guarded(self, key: str) -> str | None:
        item = self.items.get(key, (GUARDED,))
        value = (item or {}).get(GUARDED)
        return value if isinstance(value, str) else None

    def provider_of(self, connection_id: str) -> str | None:
        item = self.items.get(connection_id, ("provider",))
        provider = (item or {}).get("provider")
        return provider if isinstance(provider, str) else None

    def open_tokens(self, connection: Connection) -> dict[str, Any]:
        """The stored tokens in clear ({} when none), checked against the item as read (`Connection.binding`).
        Raises TokenDecryptionError when they fail authentication."""
        if not connection.sealed_tokens:
            return {}
        return self._cipher.open(connection.sealed_tokens, connection.binding())

    def open_tokens_of(self, binding: TokenBinding, sealed: bytes) -> dict[str, Any]:
        """Open tokens another item holds (a pending grant's), checked against `binding` as read from it.
        Raises TokenDecryptionError."""
        return self._cipher.open(sealed, binding)

    def seal_tokens_of(self, binding: TokenBinding, tokens: dict[str, Any]) -> bytes:
        """`tokens` sealed for an item that is not a connection (a pending grant), bound to `binding`."""
        return self._cipher.seal(tokens, binding)

    def prepare_seal(self, for_seconds: float) -> None:
        self._cipher.prepare(for_seconds)

    def seal_tokens(self, connection: Connection, tokens: dict[str, Any], *, token_version: int) -> bytes:
        """`tokens` sealed for `connection` at `token_version`, the version the storing write gives the item."""
        return self._cipher.seal(tokens, connection.binding(token_version))

    def shard_of(self, connection_id: str) -> int:
        return due_shard(connection_id, self._shards)

    @property
    def shards(self) -> int:
        return self._shards

    def due(self, shard: int, horizon: int, page_size: int = 500) -> Iterator[str]:
        """Ids in one shard of the sparse due index with next_refresh_at <= horizon, every page."""
        yield from self._pages("Due", shard, range_max=horizon, page_size=page_size)

    def scheduled_between(self, shard: int, low: int, high: int, *, limit: int | None = None) -> Iterator[str]:
        if limit:
            keys, _ = self.items.query("Due", shard, range_min=low, range_max=high, limit=limit)
            yield from keys
            return
        yield from self._pages("Due", shard, range_min=low, range_max=high, page_size=500)

    def scheduled_after(self, shard: int, moment: int) -> Iterator[str]:
        yield from self._pages("Due", shard, range_min=moment, page_size=500)

    def with_pending_events(self, shard: int) -> Iterator[str]:
        yield from self._pages("Outbox", shard, page_size=500)

    def shard_in_use(self, shard: int, periods: Sequence[int] = ()) -> bool:
        """Whether anything (due or not, or with events waiting) is in `shard` of the Due or Outbox index, or of
        the Cadence family of each of `periods` (seconds): queries with Limit=1, half a read unit each when
        empty."""
        return bool(self.items.query("Due", shard, limit=1)[0] or self.items.query("Outbox", shard, limit=1)[0]
                    or any(self.items.query("Cadence", f"{period}#{shard}", limit=1)[0] for period in periods))

    def shard_span(self) -> ShardSpan | None:
        """The sweep's record of which shards may hold items; None before any sweep of this version wrote it."""
        return self.sweep_record()[0]

    def sweep_record(self) -> tuple[ShardSpan | None, CadenceRecord]:
        """The shard span (None before any sweep of this version wrote it) and the Cadence record (periods in
        use, the horizon swept), from one GetItem of the record item."""
        item = self.items.get(SHARD_SPAN_KEY) or {}
        span = None if any(name not in item for name in _SPAN_FIELDS) \
            else ShardSpan(**{name: int(item[name]) for name in _SPAN_FIELDS})
        periods = tuple(sorted(int(name[len(CADENCE_PREFIX):]) for name in item if name.startswith(CADENCE_PREFIX)
                               and name[len(CADENCE_PREFIX):].isdigit()))
        swept_to = int(item[SWEPT_TO]) if item.get(SWEPT_TO) is not None else None
        return span, CadenceRecord(periods=periods, swept_to=swept_to)

    def on_cadence(self, period: int, shard: int, low: int, high: int) -> Iterator[str]:
        """Ids in the Cadence family (`period` seconds, `shard`) with a phase in [low, high] seconds, every page."""
        yield from self._pages("Cadence", f"{period}#{shard}", range_min=low, range_max=high, page_size=500)

    def save_swept(self, horizon: int) -> bool:
        """Record `horizon` (epoch seconds) as swept, unless a later one is recorded (a late or retried tick never
        moves it back). False when it was not written."""
        return bool(self.items.update(SHARD_SPAN_KEY, set={SWEPT_TO: int(horizon)},
                                      expect={SWEPT_TO: NotAfter(int(horizon))}))

    def _record_period(self, period: int) -> None:
        """Make sure the sweep reads the Cadence families of `period` before any connection is put in one: one
        unconditional write per process and period (idempotent; the record is never pruned)."""
        if period not in self._periods_recorded:
            self.items.update(SHARD_SPAN_KEY, set={f"{CADENCE_PREFIX}{period}": 1}, expect={})
            self._periods_recorded.add(period)

    def save_shard_span(self, span: ShardSpan, *, replacing: ShardSpan | None) -> bool:
        """Store `span` if the record is still `replacing` (None: absent). False when another sweep wrote first:
        its span rests on the same kind of evidence, so it stands."""
        expect = {name: getattr(replacing, name) for name in _SPAN_FIELDS} if replacing \
            else {"shards": MISSING}
        return bool(self.items.update(SHARD_SPAN_KEY, set={name: getattr(span, name) for name in _SPAN_FIELDS},
                                      expect=expect))

    def owned_by(self, owner_id: str, *, limit: int, start: dict[str, Any] | None = None,
                 ) -> tuple[list[str], dict[str, Any] | None]:
        return self.items.query("ByOwner", owner_id, limit=limit, start=start)

    def of_account(self, provider: str, account_id: str) -> Iterator[str]:
        yield from self._pages("ByAccount", f"{provider}#{account_id}", page_size=100)

    def of_account_page(self, provider: str, account_id: str, *, limit: int, start: dict[str, Any] | None = None,
                        ) -> tuple[list[str], dict[str, Any] | None]:
        return self.items.query("ByAccount", f"{provider}#{account_id}", limit=limit, start=start)

    def _pages(self, index: str, hash_value: Any, *, range_max: Any = None, range_min: Any = None,
               page_size: int) -> Iterator[str]:
        cursor = None
        while True:
            keys, cursor = self.items.query(index, hash_value, range_max=range_max, range_min=range_min,
                                            limit=page_size, start=cursor)
            yield from keys
            if not cursor:
                return

    # -- writes ------------------------------------------------------------------------------------------
    def claimed_from(self, connection_id: str) -> str | None:
        """The pending grant (its key) the connection's latest grant was claimed from, if any."""
        item = self.items.get(connection_id, ("claimed_from",))
        value = (item or {}).get("claimed_from")
        return value if isinstance(value, str) else None

    def write_grant(self, plan: GrantPlan, *, claimed_from: str | None = None,
                    together_with: Sequence[TransactWrite] = ()) -> Connection | None:
        """Store a planned grant, its event in the outbox in the same write; None if the item moved meanwhile.
        A new connection is written in one transaction with its guard item, which must name no live connection:
        None when one does (another connect won: plan again, as a reconnect of it). `claimed_from`: the pending
        grant it comes from, stored with it. `together_with`: writes of other items (a claim's pending grant
        settled) that land in the same transaction or not at all: None when any of their expectations fails."""
        connection = replace(plan.connection, outbox=dict(plan.connection.outbox))
        connection_id = connection.connection_id
        # Bound to what this very write stores: owner, account and the planned token version.
        sealed = self.seal_tokens(connection, plan.tokens, token_version=connection.token_version)
        attributes = {
            "owner_id": connection.owner_id, "provider": connection.provider, "account_id": connection.account_id,
            "account_key": connection.account_key, "status": connection.status,
            "revision": connection.revision, "token_version": connection.token_version,
            "created_at": connection.created_at, "updated_at": connection.updated_at,
            "connected_at": connection.connected_at, "grant_consented_at": connection.grant_consented_at,
            "scopes_requested": ",".join(connection.scopes_requested),
            "scopes_granted": ",".join(connection.scopes_granted),
            "access_expires_at": connection.access_expires_at, "refresh_expires_at": connection.refresh_expires_at,
            "tokens": sealed, **self.schedule_attributes(connection_id, connection.next_refresh_at),
            "refresh_in_doubt": True if connection.refresh_in_doubt else None,
            # As planned: the old ones on a reconnect, none over an item an erasure was deleting.
            "display_name": connection.display_name, "avatar_url": connection.avatar_url,
            "claimed_from": claimed_from,
        }
        if connection.chain_next is not None:  # stored on the short-lived token: the worker runs the rest (ADR 0025)
            attributes.update(status_reason=connection.status_reason, chain_next=connection.chain_next)
        attributes.update(self._outbox_attributes(connection, [plan.event]))
        # A kept refresh token keeps its lease too: a refresh may be spending it at the provider right now, and a
        # sibling must not send it again meanwhile (under strict rotation that would revoke the grant).
        kept = _LEASE_ATTRIBUTES if plan.kept_refresh_token else ()
        stale = [a for a in _GRANT_RESETS if a not in attributes and a not in kept]
        if plan.expected_revision is not None:
            expect = {"revision": plan.expected_revision}
            written = bool(self.items.update(connection_id, set=_plain(attributes), remove=stale, expect=expect)) \
                if not together_with else self.items.transact([
                    TransactWrite(connection_id, set=_plain(attributes), remove=tuple(stale), expect=expect),
                    *together_with])
        else:
            guard = self._guard_writes(connection)
            written = guard is not None and self.items.transact([
                TransactWrite(connection_id, set=_plain(attributes), remove=tuple(stale),
                              expect={self.items.key_name: MISSING}), *guard, *together_with])
        if not written:
            return None
        connection.sealed_tokens = sealed
        connection.outbox_seq = attributes["outbox_seq"]
        connection.outbox[plan.event["event_id"]] = plan.event
        return connection

    def _guard_writes(self, connection: Connection) -> list[TransactWrite] | None:
        """The writes that make `connection` (new) the one its guard names: the guard, expected as read (absent,
        or naming a deleted connection), and no connection under the derived id (written meanwhile by a version
        from before guards). None when the guard names a live connection."""
        owner, provider, account = connection.owner_id, connection.provider, connection.account_id
        key = guard_key(owner, provider, account)
        named = self._guarded(key)
        if named is not None and self.items.get(named, (self.items.key_name,)) is not None:
            return None
        absent = {self.items.key_name: MISSING}
        writes = [TransactWrite(key, set={GUARDED: connection.connection_id},
                                expect={GUARDED: named} if named else absent)]
        legacy = derived_connection_id(owner, provider, account)
        if legacy != connection.connection_id:  # (a write of that very id expects it absent already)
            writes.append(TransactWrite(legacy, "check", expect=absent))
        return writes

    def apply(self, connection: Connection, changes: dict[str, Any], *, remove: Iterable[str] = (),
              events: Iterable[PendingEvent] = ()) -> Connection | None:
        """One decision write: guarded on the revision `connection` was read at; None if it moved since."""
        return self.claim(connection, changes, remove=remove, events=events)[0]

    def claim(self, connection: Connection, changes: dict[str, Any], *, remove: Iterable[str] = (),
              events: Iterable[PendingEvent] = ()) -> tuple[Connection | None, Connection | None]:
        """`apply`, also giving back the competing connection when the guard failed: the failed write read it
        (ReturnValuesOnConditionCheckFailure), so a lost lease needs no second GetItem."""
        attributes = dict(changes)
        attributes["revision"] = connection.revision + 1
        event_list = list(events)
        if event_list:
            attributes.update(self._outbox_attributes(connection, event_list))
        remove = list(remove)
        written = self.items.update(connection.connection_id, set=_plain(attributes), remove=remove,
                                    expect={"revision": connection.revision})
        if not written:
            current = written.current
            return None, connection_from_item(current) if current and "owner_id" in current else None
        # What was written, applied to a copy: no read-back on the refresh path.
        updated = replace(connection, outbox=dict(connection.outbox))
        for name, value in attributes.items():
            if name == "tokens":
                updated.sealed_tokens = value
            elif name in _LISTS and isinstance(value, str):  # stored comma-joined, held as a tuple
                setattr(updated, name, _split(value))
            elif name in _FIELDS:
                setattr(updated, name, value if value is not None else _FIELDS[name])
        for name in remove:
            if name in _FIELDS:
                setattr(updated, name, _FIELDS[name])
        for event in event_list:
            updated.outbox[event["event_id"]] = event
        return updated, None

    def take_lease(self, connection_id: str, *, owner: str, expires_at: int, statuses: Sequence[str],
                   due_by: int | None) -> tuple[Connection | None, Connection | None]:
        """The refresh lease in one UpdateItem with ReturnValues=ALL_NEW, instead of a GetItem and a lease guarded
        on the revision it read: `lease_owner` and `lease_expires_at` (epoch seconds) set and the revision moved
        (ADD, so every other decision write guarded on the revision it read still fails), only if the item is a
        connection (`owner_id` present) in one of `statuses`, holds no lease (an expired one takes the read-first
        path, which records the rotation it may have lost), has no event in the outbox (`outbox_shard` absent:
        they are published before a lease) and, unless `due_by` (epoch seconds) is None, `next_refresh_at <=
        due_by`.

        Returns (the leased connection, None), or (None, the connection as the failed write found it: the
        failed condition returns it, ReturnValuesOnConditionCheckFailure; None when there is none). A failed
        condition still costs a write unit: callers try this where the write is expected to land."""
        if is_pending_key(connection_id):  # a grant waiting for its claim is never a connection
            return None, None
        expect: dict[str, Any] = {"owner_id": PRESENT, "status": OneOf(tuple(str(s) for s in statuses)),
                                  "lease_owner": MISSING, "outbox_shard": MISSING}
        if due_by is not None:
            expect["next_refresh_at"] = AtMost(int(due_by))
        written = self.items.update(connection_id, set={"lease_owner": owner, "lease_expires_at": expires_at},
                                    add={"revision": 1}, expect=expect, returning=True)
        item = written.current
        connection = connection_from_item(item) if item and "owner_id" in item else None
        return (connection, None) if written else (None, connection)

    def schedule_attributes(self, connection_id: str, next_refresh_at: int | None, *, period: int | None = None,
                            current: Connection | None = None) -> dict[str, Any]:
        """The attributes that plan the next refresh at `next_refresh_at` (epoch seconds; None: never), for an
        UpdateItem (None removes). Only connections that need refreshing are in an index.

        Without `period`: the sparse Due index (`due_shard`, range `next_refresh_at`), out of any Cadence family.
        With `period` (seconds, ADR 0023): the Cadence family "<period>#<shard>" at phase `next_refresh_at mod
        period`, out of the Due index. When `current` (the connection as read) is already in that very family at
        that phase, with its shard under today's count, only `next_refresh_at` is written (a REMOVE of an absent
        `due_shard` writes no index): no index write at all, the ordinary refresh's 0 index WRU. The first time
        this process puts a connection in a family of `period`, the period is recorded for the sweep first."""
        if next_refresh_at is None:
            return {"next_refresh_at": None, "due_shard": None, "cadence_shard": None, "cadence_phase": None}
        moment = int(next_refresh_at)
        if period is None:
            return {"next_refresh_at": moment, "due_shard": self.shard_of(connection_id), "cadence_shard": None,
                    "cadence_phase": None}
        family, phase = f"{period}#{self.shard_of(connection_id)}", moment % period
        if current is not None and current.cadence_shard == family and current.cadence_phase == phase:
            return {"next_refresh_at": moment, "due_shard": None}
        self._record_period(period)
        return {"next_refresh_at": moment, "due_shard": None, "cadence_shard": family, "cadence_phase": phase}

    def record_read(self, connection: Connection, now: int, *, window: int,
                    next_refresh_at: int | None = None) -> bool:
        """One conditional UpdateItem recording a token read at `now` (epoch seconds) as `last_read_at`, only when
        the stored one is absent or at least `window` seconds old: at most one write per connection per window.
        With `next_refresh_at`, the same write also plans the connection's next refresh then (an idle connection
        read again: back on the eager schedule), guarded on the revision `connection` was read at so it never
        overrides a decision written meanwhile, and on the plan it was read with, so of reads racing (each read
        the item before any mark landed) one lands. Neither bumps the revision: a read is not a decision.

        True when written; False when the guard failed (another read recorded it first, or the connection moved):
        DynamoDB still bills a failed conditional write one write unit."""
        marks = {"last_read_at": int(now)}
        expect: dict[str, Any] = {"connection_id": connection.connection_id}
        expect_mark = {"last_read_at": NotAfter(int(now) - window)}
        if next_refresh_at is None:
            return bool(self.items.update(connection.connection_id, set=marks, expect={**expect, **expect_mark}))
        written = self.items.update(
            connection.connection_id, set={**marks, **self.schedule_attributes(connection.connection_id,
                                                                               next_refresh_at)},
            # The revision alone would let every racing read land (a read mark does not move it), each moving
            # the Due index entry again: the plan read is in the guard too.
            expect={**expect, "revision": connection.revision, "next_refresh_at": connection.next_refresh_at})
        return bool(written)

    def erase(self, connection_id: str) -> bool:
        """Delete a disconnected connection for good, once no event of it waits in the outbox, and its guard item
        in the same transaction (a guard naming another connection, or none, is left alone)."""
        connection = self.get(connection_id)
        if connection is None:
            return True
        if connection.status != DISCONNECTED or connection.outbox:
            return False
        if self._channels is not None:  # first: nothing of a channel may outlive its connection (ADR 0024)
            self._channels.delete(connection_id)
        key = guard_key(connection.owner_id, connection.provider, connection.account_id)
        if self._guarded(key) != connection_id:  # no guard names it: written before guards, not connected since
            return self.items.delete(connection_id, expect={"revision": connection.revision})
        return self.items.transact([TransactWrite(connection_id, "delete", expect={"revision": connection.revision}),
                                    TransactWrite(key, "delete", expect={GUARDED: connection_id})])

    def set_profile(self, connection_id: str, display_name: str | None, avatar_url: str | None) -> None:
        """Enrichment after the commit: never touches tokens or status, so it cannot clobber a refresh."""
        values = {"display_name": display_name, "avatar_url": avatar_url}
        values = {k: v for k, v in values.items() if v is not None}
        self.items.update(connection_id, set=values, remove=["profile_pending"],
                          expect={"connection_id": connection_id})

    def mark_profile_pending(self, connection_id: str) -> None:
        """No time (or no answer) for the display name and avatar now: the next refresh fetches them."""
        self.items.update(connection_id, set={"profile_pending": True}, expect={"connection_id": connection_id})

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

    def _outbox_attributes(self, connection: Connection, events: list[PendingEvent]) -> dict[str, Any]:
        """Pending events, and the sparse Outbox index entry the sweep uses to find ones left behind."""
        attributes: dict[str, Any] = {
            OUTBOX_PREFIX + e["event_id"]: json.dumps(e, separators=(",", ":")) for e in events
        }
        attributes["outbox_seq"] = connection.outbox_seq + 1
        attributes["outbox_shard"] = self.shard_of(connection.connection_id)
        return attributes


def _holds(connection: Connection, owner_id: str, provider: str, account_id: str) -> bool:
    return (connection.owner_id, connection.provider, connection.account_id) == (owner_id, provider, account_id)


def _plain(attributes: dict[str, Any]) -> dict[str, Any]:
    """Enum members (statuses, reasons) as their plain string values, as the table has always held them."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in attributes.items()}


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").split(",") if v)
