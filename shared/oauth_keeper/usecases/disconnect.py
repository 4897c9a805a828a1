"""Ending connections as durable background work: disconnect and owner erasure as operations, and the job.

A revoke waits on the provider, and an owner (or a provider account, connected by several owners) may hold any
number of connections: neither fits in an API call
(25 s function, API Gateway's 30 s). So the API only marks connections `disconnecting` (no token is served from
then on), records an operation (`disconnect`, `erase_owner` or `erase_account`) and answers 202 with where to
follow it. The refresh worker does the rest, one
connection at a time, found again by the sweep through the Due index until it is done: revoke at the provider
(RFC 7009) with capped backoff for up to a day, then erase the tokens, publish Connection Disconnected and, for
an erasure, delete the item. Every step is a guarded write of state on the items themselves, so a crash at any
point is resumed by the next sweep, and repeating a step changes nothing.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypedDict

from ..domain import events
from ..domain.claims import is_pending_key
from ..domain.connection import DISCONNECTED, DISCONNECTING, Connection, Reason
from ..domain.deadlines import (
    AWS_CALL_LIMIT,
    COMMIT_RESERVE,
    ERASE_RESERVE,
    LEASE_SECONDS,
    MIN_PROVIDER_CALL,
    REFRESH_MIN_TIME,
    budget,
)
from ..domain.errors import FailureKind, InvalidInput, NotFound, ProviderError, TokenDecryptionError
from ..domain.provider_events import removal_applies
from ..domain.schedule import backoff_delay, due_shard
from ..domain.timestamps import iso8601
from ..domain.tokens import TokenSet
from ..domain.validation import ACCOUNT_ID_RULE, OWNER_ID, OWNER_ID_RULE, valid_account_id
from ..observability import MetricUnit, logger, record_metric
from ..ports import (
    MISSING,
    Clock,
    ConnectionRepository,
    Credentials,
    ItemStore,
    ProviderClient,
    ProviderProfiles,
    RefreshQueue,
)
from .claims import PendingGrants
from .connections import existing
from .erasure import Erasures
from .outbox import OutboxRelay

OPERATION_PREFIX = "op#"
REVOKE_FOR = 86_400  # seconds: a revoke that keeps failing transiently is retried this long, then given up
REVOKE_RETRY_CAP = 3600  # seconds between revoke attempts at most
OPERATION_KEPT = 30 * 86_400  # seconds an operation can be read after it began (the table's TTL then removes it)
MARK_PAGE = 100  # connections of an owner marked per index page
RECHECK_AFTER = 60  # seconds: an erasure's marking ends with a pass this long after it began that found nothing
_WRITE_ATTEMPTS = 5
ERASURE_KINDS = ("erase_owner", "erase_account")
COUNT_LIMIT = 500  # items `GET /operations/{id}` reads at most to count what an erasure has left
_LEASE = ("lease_owner", "lease_expires_at")

OperationStatus = Literal["running", "succeeded", "superseded"]


class OperationView(TypedDict):
    """`GET /operations/{operation_id}` and the 202 answers (openapi.yaml `Operation`)."""

    operation_id: str
    kind: str  # "disconnect" | "erase_owner" | "erase_account"
    status: OperationStatus
    status_url: str
    created_at: str | None
    connection_id: str | None  # a disconnect's connection
    owner_id: str | None  # an owner erasure's owner
    provider: str | None  # an account erasure's provider
    account_id: str | None  # an account erasure's provider account
    remaining: int  # connections not yet done
    revoke_failed: int  # connections whose provider grant could not be revoked (tokens erased all the same)


class AccountRemoval(TypedDict):
    disconnected: int  # connections this call made `disconnected`
    kept: list[str]  # ids of live connections granted on or after `granted_before`: left alone


@dataclass(frozen=True)
class _Ending:
    """What one attempt at ending a connection's grant came to (`Disconnection._end_grant`)."""

    outcome: str  # revoked | ended (nothing left to revoke) | failed | retry | no_time | waiting
    connection: Connection  # as last written or read: the step's next write is guarded on it
    log_id: str | None = None
    in_doubt: bool = False  # a refresh may have rotated the refresh token without its answer being stored


def is_operation(key: str) -> bool:
    return key.startswith(OPERATION_PREFIX)


def new_operation_id() -> str:
    return "op_" + secrets.token_urlsafe(18)


class Disconnection:
    def __init__(self, *, connections: ConnectionRepository, items: ItemStore, profiles: ProviderProfiles,
                 credentials: Credentials, provider: ProviderClient, outbox: OutboxRelay, clock: Clock,
                 queue: RefreshQueue | None = None, rng: random.Random | None = None,
                 erasures: Erasures | None = None, pending: PendingGrants | None = None) -> None:
        """`items` is the Connections table (operations live there, as `op#<id>`); `queue` gets marked
        connections at once, so the job starts within seconds rather than at the next sweep; `erasures` records
        an erasure's tombstone and deletes the owner's connect sessions and flows (None: neither, for tests of
        the connections alone)."""
        self._erasures = erasures
        self._pending = pending  # grants waiting for a claim: an erasure discards and deletes them
        self._connections = connections
        self._items = items
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._outbox = outbox
        self._clock = clock
        self._queue = queue
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._lease_owner = f"disconnect-{uuid.uuid4()}"  # the job's refresh lease identity (see `_refresh_first`)

    # -- the API ---------------------------------------------------------------------------------------------
    def request_disconnect(self, connection_id: str, *, reason: str = Reason.APP_DISCONNECTED,
                           owner_id: str | None = None) -> OperationView:
        """`DELETE /connections/{id}`: mark the connection `disconnecting` (no token is served from now on) and
        record the operation that revokes and erases it in the background. Idempotent: a connection already
        disconnecting gives its operation again. With `owner_id`, only a connection of that owner. Raises
        NotFound (also another owner's), InvalidInput (a malformed owner id)."""
        connection = existing(self._connections, connection_id, owner_id)
        now = int(self._clock.now())
        if connection.status == DISCONNECTING and connection.operation_id:
            return self.operation(connection.operation_id)
        operation_id = new_operation_id()
        self._record_operation(operation_id, {"kind": "disconnect", "target_connection": connection_id}, now)
        if connection.status != DISCONNECTED:
            self._mark(connection_id, operation_id, reason, erase=False)
            self._kick([connection_id])
        logger.info("Disconnect requested", extra={"connection_id": connection_id, "operation_id": operation_id})
        return self.operation(operation_id)

    def request_erasure(self, owner_id: str, *, deadline: float | None = None) -> OperationView:
        """`DELETE /owners/{owner_id}/connections`: data-protection erasure of every connection of one owner.

        First the tombstone (from then on every connect link and flow issued before now is refused), then the
        operation; the owner's connect sessions and flows are deleted and the connections marked `disconnecting`
        and to be deleted, page by page, while the invocation has time; what is left is done by the job (the
        operation is due in the sweep). Raises InvalidInput for a bad owner id."""
        if not OWNER_ID.fullmatch(owner_id):
            raise InvalidInput(OWNER_ID_RULE, field="owner_id")
        now = int(self._clock.now())
        if self._erasures is not None:
            self._erasures.record(owner_id, now)
        # Marking spares connections connected after this, read once the tombstone is written: a callback that
        # checked before it landed began before it, though it may have begun after `now` (see `_mark`).
        spares_after = int(self._clock.now())
        operation_id = new_operation_id()
        key = OPERATION_PREFIX + operation_id
        self._record_operation(operation_id, {"kind": "erase_owner", "erased_owner": owner_id, "marking": True,
                                              "spares_after": spares_after, **self._due(key, now)}, now)
        self.continue_erasure(operation_id, deadline=deadline)
        logger.info("Owner erasure requested", extra={"owner_id": owner_id, "operation_id": operation_id})
        return self.operation(operation_id)

    def request_account_erasure(self, provider: str, account_id: str, *, deadline: float | None = None,
                                operation_id: str | None = None,
                                granted_before: int | None = None) -> OperationView:
        """`DELETE /providers/{provider}/accounts/{account_id}/connections`: erase every connection of one
        provider account, whichever owner made it (a provider's data-deletion request names the account, not
        our owner). Each is marked `disconnecting` and to be deleted, then revoked (RFC 7009), disconnected and
        deleted by the same job as an owner erasure, page by page while the invocation has time, the rest by
        the job. A connection of that account made after the request (a new consent) is left alone. No
        tombstone: nothing issued before names the account, and connecting it again is the user's new choice.

        The provider's own data-deletion requests (queued by the public callback, `usecases/deauthorization.py`)
        name their `operation_id` (asking again under it only continues the job) and `granted_before` (epoch
        seconds: a connection granted at or after it is the user's new consent, spared; default: now).
        Raises NotFound (provider not enabled), InvalidInput (a bad account id)."""
        self._profiles.profile(provider)
        if not valid_account_id(account_id):
            raise InvalidInput(ACCOUNT_ID_RULE, field="account_id")
        now = int(self._clock.now())
        operation_id = operation_id or new_operation_id()
        key = OPERATION_PREFIX + operation_id
        spares = {} if granted_before is None else {"spares_after": granted_before - 1}
        self._record_operation(operation_id, {"kind": "erase_account", "erased_provider": provider,
                                              "erased_account": account_id, "marking": True, **spares,
                                              **self._due(key, now)}, now)
        self.continue_erasure(operation_id, deadline=deadline)
        logger.info("Account erasure requested", extra={"provider": provider, "operation_id": operation_id})
        return self.operation(operation_id)

    def operation(self, operation_id: str) -> OperationView:
        """The operation's progress, read from the connections it ends. Raises NotFound."""
        item = self._items.get(OPERATION_PREFIX + operation_id) if _plausible_id(operation_id) else None
        if item is None or "kind" not in item:
            raise NotFound("No such operation.", code="operation_not_found", field="operation_id")
        failed = sum(1 for name in item if name.startswith("failed#"))
        view: OperationView = {
            "operation_id": operation_id, "kind": item["kind"], "status": "running",
            "status_url": f"/operations/{operation_id}", "created_at": iso8601(item.get("created_at")),
            "connection_id": item.get("target_connection"), "owner_id": item.get("erased_owner"),
            "provider": item.get("erased_provider"), "account_id": item.get("erased_account"),
            "remaining": 0, "revoke_failed": failed,
        }
        if item.get("result"):  # final: what happens to the connection later does not change it
            view["status"] = item["result"]
            return view
        if item["kind"] == "disconnect":
            connection = self._connections.get(item["target_connection"])
            if connection is not None and connection.status == DISCONNECTING:
                view["remaining"] = 1
            elif connection is not None and connection.status != DISCONNECTED:
                view["status"] = "superseded"  # the user connected again before the revoke
            else:
                view["status"] = "succeeded"
                view["revoke_failed"] = int(bool(connection and connection.revoke_failed))
            return view
        remaining, complete = self._count_marked(item, operation_id)
        view["remaining"] = remaining  # at least this many when not `complete`
        if not item.get("marking") and remaining == 0 and complete:
            view["status"] = "succeeded"
            self._items.update(OPERATION_PREFIX + operation_id, set={"result": "succeeded"}, expect={})
        return view

    # -- the job (refresh worker) ----------------------------------------------------------------------------
    def step(self, connection_id: str, *, deadline: float | None = None) -> str:
        """One step of a `disconnecting` connection: one attempt at ending its grant (a revoke, RFC 7009, with a
        refresh first when the access token held has expired or is refused: see `_end_grant`), then erase the
        tokens and publish Connection Disconnected, or schedule the next attempt. Returns `disconnected`,
        `retrying`, `waiting` (a refresh holds the lease), `no_time` or `not_disconnecting`. Raises only for
        storage trouble (the message is then delivered again, or the sweep finds the connection again)."""
        connection = self._connections.get(connection_id)
        if connection is None or connection.status != DISCONNECTING:
            return "not_disconnecting"
        now = int(self._clock.now())
        if connection.lease_owner and (connection.lease_expires_at or 0) > now:
            # A refresh is at the provider: revoke after it, with the tokens it may have rotated.
            self._reschedule(connection, int(connection.lease_expires_at or now) + 1, {})
            return "waiting"
        if budget(deadline, now) < MIN_PROVIDER_CALL + ERASE_RESERVE + AWS_CALL_LIMIT:
            return "no_time"
        ending = self._end_grant(connection, deadline)
        # From here on every write is guarded on the connection as the attempt left it: its own rotation of the
        # tokens (a new token_version) is not a reconnect.
        connection, log_id, outcome = ending.connection, ending.log_id, ending.outcome
        if outcome == "waiting":  # someone wrote between our read and our lease: they decide, the sweep returns
            return "waiting"
        if outcome == "retry":
            attempts = connection.revoke_attempts + 1
            started = connection.disconnect_requested_at or now
            if now - started < REVOKE_FOR:
                next_at = now + max(30, backoff_delay(attempts, cap=REVOKE_RETRY_CAP, rng=self._rng))
                self._reschedule(connection, next_at, {"revoke_attempts": attempts, "revoke_log_id": log_id,
                                                       **({"refresh_in_doubt": True} if ending.in_doubt else {})},
                                 release=connection.lease_owner == self._lease_owner)
                return "retrying"
            outcome = "failed"
        if outcome == "no_time":
            return "no_time"
        failed = outcome == "failed"
        if failed:
            record_metric("RevokeFailed", MetricUnit.Count, 1)
            if connection.erase_requested and connection.operation_id:  # the item goes: the operation keeps it
                self._record_failure(connection.operation_id, connection_id, log_id)
        written = self.mark_disconnected(connection_id, connection.status_reason or Reason.APP_DISCONNECTED,
                                         provider_log_id=log_id, revoke_failed=failed,
                                         still=(DISCONNECTING, connection.token_version))
        if written is None:  # the user connected again meanwhile: the new grant stays
            current = self._connections.get(connection_id)
            if current is not None and current.status != DISCONNECTED:
                logger.info("Disconnect superseded by a reconnect", extra={"connection_id": connection_id})
                return "superseded"
            return "disconnected"
        # The result, final whatever happens to the connection later: its disconnect's, and one an erasure took
        # over (an erasure's own is stored when it has no connection left, see `operation`).
        for operation in {connection.operation_id, self._taken_over(connection_id)} - {None}:
            self._items.update(OPERATION_PREFIX + str(operation),
                               set={"result": "succeeded", "finished_at": int(self._clock.now()),
                                    **({f"failed#{connection_id}": log_id or "-"} if failed else {})},
                               expect={"kind": "disconnect"})
        if written.erase_requested:
            self._connections.erase(connection_id)  # else the sweep erases it once its event is out
        return "disconnected"

    def continue_erasure(self, operation_id: str, *, deadline: float | None = None) -> str:
        """Delete the erased owner's connect sessions and flows (an owner erasure), then mark the connections
        (the owner's, or the provider account's) from the cursor the operation keeps, one guarded write each
        while the invocation has time. The operation is due from the
        moment it is recorded, so a call cut off anywhere is continued by the sweep. Marking ends only with a
        pass, at least RECHECK_AFTER after the erasure began, that found nothing new: `ByOwner` is eventually
        consistent, and a connect may race the erasure. Then the operation stays due until none of its
        connections is left, and records its result (`_finish_erasure`). Returns `marked` (marking is over),
        `succeeded` (the result is recorded now) or `later`."""
        key = OPERATION_PREFIX + operation_id
        item = self._items.get(key)
        if item is None or item.get("result"):
            return "marked"
        if not item.get("marking"):
            return self._finish_erasure(item, operation_id)
        start = json.loads(item["cursor"]) if item.get("cursor") else None
        found_new = bool(item.get("found_new"))
        # Sessions and flows first, on every pass (deleting what is gone changes nothing): one the index had not
        # shown yet is found by the next pass, and the tombstone refuses it meanwhile.
        if item["kind"] == "erase_owner" and self._erasures is not None \
                and not self._erasures.purge(item["erased_owner"], int(item["created_at"]), deadline=deadline):
            return "later"  # still due: the sweep brings it back
        page = self._scope(item)
        while True:
            keys, after = page(MARK_PAGE, start)
            for cid in keys:
                if budget(deadline, self._clock.now()) < 3 * AWS_CALL_LIMIT:
                    self._items.update(key, set={"cursor": json.dumps(start) if start else None,
                                                 "found_new": found_new or None}, expect={})
                    return "later"  # still due: the sweep brings it back
                if is_pending_key(cid):  # a grant waiting for its claim: never claimable after this
                    if self._pending is not None:
                        self._pending.discard(cid, Reason.OWNER_ERASED if item["kind"] == "erase_owner"
                                              else Reason.ACCOUNT_ERASED, delete=True)
                    continue
                if self._mark(cid, operation_id, Reason.APP_DISCONNECTED, erase=True,
                              erased_at=int(item.get("spares_after") or item["created_at"])):
                    found_new = True
                    self._kick([cid])
            start = after
            if not start:
                break
        now = int(self._clock.now())
        if found_new or now - int(item.get("created_at") or now) < RECHECK_AFTER:
            # Look once more a little later, for what the index did not show yet.
            self._items.update(key, set={"cursor": None, "found_new": None,
                                         **self._due(key, now + RECHECK_AFTER)}, expect={})
            return "later"
        item = {**item, "marking": None}
        self._items.update(key, set={"marking": None, "cursor": None, "found_new": None}, expect={})
        return self._finish_erasure(item, operation_id)

    def _finish_erasure(self, item: dict[str, Any], operation_id: str) -> str:
        """Record an erasure's result once its marking is over and none of its connections is left, so its
        status reads without counting (the public data-deletion status reads only this); until then the
        operation stays due, and the sweep brings it back. Returns `succeeded` or `marked`."""
        key = OPERATION_PREFIX + operation_id
        now = int(self._clock.now())
        remaining, complete = self._count_marked(item, operation_id)
        if remaining == 0 and complete:
            self._items.update(key, set={"result": "succeeded", "finished_at": now, "next_refresh_at": None,
                                         "due_shard": None}, expect={"kind": item["kind"]})
            return "succeeded"
        self._items.update(key, set=self._due(key, now + RECHECK_AFTER), expect={"kind": item["kind"]})
        return "marked"

    def _due(self, key: str, at: int) -> dict[str, Any]:
        return {"next_refresh_at": at, "due_shard": due_shard(key, self._connections.shards)}

    # -- shared with the webhook -------------------------------------------------------------------------------
    def mark_disconnected(self, connection_id: str, reason: str, *, provider_log_id: str | None = None,
                          revoke_failed: bool = False, extra: dict[str, Any] | None = None,
                          granted_before: int | None = None, still: tuple[str, int] | None = None,
                          ) -> Connection | None:
        """Erase the tokens, leave the due index, publish Connection Disconnected (with `extra` in its detail).

        `granted_before` (epoch seconds): only if the connection's latest grant is older (a provider's event
        about an earlier grant); checked on the revision the guarded write is made from, so a reconnect landing
        meanwhile is left alone. `still` ((status, token_version)): only while the connection is in that state,
        so the job never erases a grant that came after the one it revoked. None when the connection is unknown,
        already disconnected, granted since, or no longer `still`.
        Raises RuntimeError when it keeps changing under five guarded attempts."""
        store = self._connections
        for _ in range(_WRITE_ATTEMPTS):
            connection = store.get(connection_id)
            if connection is None or connection.status == DISCONNECTED:
                return None
            if granted_before is not None and not removal_applies(connection, granted_before):
                return None
            if still is not None and (connection.status, connection.token_version) != still:
                return None  # not the state the caller decided on (a reconnect landed): theirs stands
            now = self._clock.now()
            changes: dict[str, Any] = {
                "status": DISCONNECTED, "status_reason": reason, "updated_at": int(now),
                "tokens": None, "revoke_failed": True if revoke_failed else None, "revoke_log_id": provider_log_id,
                # An erasure stays due until the item is deleted: a crash before that leaves it to the sweep.
                **store.schedule_attributes(connection_id, int(now) if connection.erase_requested else None),
            }
            event = events.connection_event(
                events.DISCONNECTED, replace(connection, status=DISCONNECTED, status_reason=reason), reason=reason,
                occurred_at=now, provider_log_id=provider_log_id,
                extra={"revoke_failed": revoke_failed, **(extra or {})},
            )
            written = store.apply(connection, changes, remove=("lease_owner", "lease_expires_at", "revoke_attempts"),
                                  events=[event])
            if written:
                written = self._outbox.publish(written)
                record_metric("ConnectionsDisconnected", MetricUnit.Count, 1)
                logger.info("Connection disconnected", extra={"connection_id": connection_id, "reason": reason,
                                                              "revoke_failed": revoke_failed})
                return written
        raise RuntimeError("Connection kept changing while disconnecting.")

    def disconnect_account(self, provider: str, account_id: str, reason: str,
                           extra: dict[str, Any] | None = None, *, granted_before: int | None = None,
                           ) -> AccountRemoval:
        """Every live connection of one provider account (any owner) becomes disconnected, without a revoke
        (the provider already ended the grant); with `granted_before` (epoch seconds), only those whose latest
        grant is older: the others are `kept`. A grant waiting for its claim, consented before, is ended too
        (`PendingGrants.note_removal`: never made a connection), and a connection a claim made of it meanwhile
        is handled like the others even before the ByAccount index shows it. The refresh worker calls this with
        the removals the public webhook queued (`usecases/worker.py`); a connection an erasure asked to delete
        stays due, and the worker's next pass deletes it. Repeats change nothing."""
        store = self._connections
        removal: AccountRemoval = {"disconnected": 0, "kept": []}
        keys = list(store.of_account(provider, account_id))
        for key in [k for k in keys if is_pending_key(k)]:
            claimed = self._pending.note_removal(key, granted_before if granted_before is not None
                                                 else int(self._clock.now())) if self._pending else None
            if claimed is not None and claimed not in keys:
                keys.append(claimed)
        for key in keys:
            if is_pending_key(key):
                continue
            if self.mark_disconnected(key, reason, extra=extra, granted_before=granted_before):
                removal["disconnected"] += 1
            elif granted_before is not None:
                current = store.get(key)  # told apart from "already disconnected"
                if current and current.status != DISCONNECTED and not removal_applies(current, granted_before):
                    removal["kept"].append(key)
        return removal

    # -- internals ---------------------------------------------------------------------------------------------
    def _record_operation(self, operation_id: str, attributes: dict[str, Any], now: int) -> None:
        self._items.update(OPERATION_PREFIX + operation_id,
                           set={**attributes, "created_at": now, "purge_at": now + OPERATION_KEPT},
                           expect={"kind": MISSING})

    def _mark(self, connection_id: str, operation_id: str, reason: str, *, erase: bool,
              erased_at: int | None = None) -> bool:
        """One connection to `disconnecting` (due now, for the job). An erasure also asks for the item to be
        deleted, even of a connection already disconnected, but never of one connected after `erased_at` (the
        erasure's time: the tombstone let that connect through, it is the user's new connection). False when
        there is nothing to mark."""
        store = self._connections
        for _ in range(_WRITE_ATTEMPTS):
            connection = store.get(connection_id)
            if connection is None:
                return False
            if erased_at is not None and (connection.connected_at or 0) > erased_at \
                    and not (connection.erase_requested and connection.operation_id == operation_id):
                return False
            now = int(self._clock.now())
            if connection.status == DISCONNECTED:
                if not erase:
                    return False
                if connection.erase_requested or store.apply(connection, {"erase_requested": True,
                                                                          "operation_id": operation_id}):
                    store.erase(connection_id)  # nothing to revoke: gone now, or once its event is out
                    return False
                continue
            if connection.status == DISCONNECTING and (connection.erase_requested or not erase):
                return False  # another operation is ending it already
            changes: dict[str, Any] = {
                "status": DISCONNECTING, "status_reason": reason, "operation_id": operation_id,
                # A disconnect under way that this erasure takes over still gets its result (see `step`).
                "taken_over_operation": connection.operation_id
                if connection.status == DISCONNECTING and connection.operation_id != operation_id else None,
                # An erasure over a disconnect under way keeps its start: the day of retries counts from there.
                "disconnect_requested_at": connection.disconnect_requested_at
                if connection.status == DISCONNECTING and connection.disconnect_requested_at else now,
                "updated_at": now, **store.schedule_attributes(connection_id, now),
            }
            if erase:
                changes["erase_requested"] = True
            if store.apply(connection, changes):
                return True
        raise RuntimeError("Connection kept changing while marking it for disconnection.")

    def _taken_over(self, connection_id: str) -> str | None:
        item = self._items.get(connection_id, ("taken_over_operation",))
        value = (item or {}).get("taken_over_operation")
        return value if isinstance(value, str) else None

    def _reschedule(self, connection: Connection, next_at: int, changes: dict[str, Any], *,
                    release: bool = False) -> None:
        # Guarded: a concurrent step or reconnect wins, and the sweep brings this one back if it still applies.
        # `release` gives back the job's own refresh lease in the same write.
        self._connections.apply(connection, {**changes,
                                             **self._connections.schedule_attributes(connection.connection_id,
                                                                                     next_at)},
                                remove=_LEASE if release else ())

    def _kick(self, connection_ids: list[str]) -> None:
        """Hand marked connections to the workers now; the sweep finds them anyway if this fails."""
        if not connection_ids or self._queue is None:
            return
        try:
            self._queue.send(connection_ids)
        except Exception as exc:  # noqa: BLE001 - the Due index is the durable record, the queue a shortcut
            logger.warning("Could not queue marked connections; the sweep will", extra={
                "error_type": type(exc).__name__})

    def _scope(self, item: dict[str, Any]) -> Callable[[int, dict[str, Any] | None],
                                                       tuple[list[str], dict[str, Any] | None]]:
        """An erasure's connections, a page at a time: (limit, cursor) -> (ids, next cursor or None)."""
        store = self._connections
        if item["kind"] == "erase_account":
            provider, account_id = item["erased_provider"], item["erased_account"]
            return lambda limit, start: store.of_account_page(provider, account_id, limit=limit, start=start)
        owner_id = item["erased_owner"]
        return lambda limit, start: store.owned_by(owner_id, limit=limit, start=start)

    def _record_failure(self, operation_id: str, connection_id: str, log_id: str | None) -> None:
        """A revoke an erasure gave up on, kept on the operation (the connection item is deleted)."""
        key = OPERATION_PREFIX + operation_id
        kind = (self._items.get(key, ("kind",)) or {}).get("kind")
        if kind in ERASURE_KINDS:  # guarded: an operation the TTL removed is not written back as a stray item
            self._items.update(key, set={f"failed#{connection_id}": log_id or "-"}, expect={"kind": kind})

    def _count_marked(self, item: dict[str, Any], operation_id: str) -> tuple[int, bool]:
        """(the connections this erasure still has to end, whether that is all of them). A connection made after
        it is not one. Reads at most COUNT_LIMIT items (one GetItem each): a status call must answer within the
        API's time however many connections the owner has, so past that it reports a lower bound."""
        count, start, read = 0, None, 0
        page = self._scope(item)
        while True:
            keys, start = page(min(1000, COUNT_LIMIT - read), start)
            read += len(keys)
            count += sum(1 for key in keys if (c := self._connections.get(key)) is not None
                         and c.operation_id == operation_id and c.erase_requested)
            if not start:
                return count, True
            if read >= COUNT_LIMIT:
                return count, False

    def _end_grant(self, connection: Connection, deadline: float | None) -> _Ending:
        """End the connection's grant at the provider: a revoke with the access token held (`_revoke`), or, when
        that token cannot do it (expired by `access_expires_at`, or the revoke refused) and a refresh token is
        held, one refresh first, its tokens stored, then the revoke with the fresh access token. A revoke takes
        an access token (TikTok's does), which lives hours; the refresh token lives months, so a grant must not
        be left live for want of a fresh access token. `deadline` is the invocation's end (epoch seconds)."""
        revoke_deadline = None if deadline is None else deadline - ERASE_RESERVE
        try:
            refresh_token = self._connections.open_tokens(connection).get("refresh_token")
        except TokenDecryptionError:
            return _Ending("failed", connection)
        if not self._profiles.profile(connection.provider).revoke_url:
            refresh_token = None  # the provider has no revoke endpoint: nothing a fresh token could do
        refreshed = False
        if refresh_token and connection.access_expires_at is not None \
                and connection.access_expires_at <= self._clock.now():
            ending = self._refresh_first(connection, refresh_token, deadline)
            if ending.outcome != "refreshed":
                return ending
            connection, refreshed = ending.connection, True
        log_id, outcome = self._revoke(connection, revoke_deadline)
        if outcome == "refused" and refresh_token and not refreshed:
            # The provider may have ended the access token sooner than it told us: a fresh one can still revoke.
            ending = self._refresh_first(connection, refresh_token, deadline)
            if ending.outcome != "refreshed":
                return ending if ending.outcome != "failed" else replace(ending, log_id=ending.log_id or log_id)
            log_id, outcome = self._revoke(ending.connection, revoke_deadline)
            connection = ending.connection
        return _Ending("failed" if outcome == "refused" else outcome, connection, log_id)

    def _refresh_first(self, connection: Connection, refresh_token: str, deadline: float | None) -> _Ending:
        """One refresh (RFC 6749 section 6) for the revoke, under the item's refresh lease like any refresh, and
        its answer stored (a guarded write) before anything else: the provider's previous refresh token died
        with it, so a crash after it must find the new tokens on the item. Outcomes: `refreshed` (the connection
        as written, fresh tokens), `ended` (the grant is gone at the provider: nothing left to revoke), `failed`,
        `retry`, `no_time`, `waiting` (someone else wrote first)."""
        now = int(self._clock.now())
        if connection.refresh_expires_at is not None and connection.refresh_expires_at <= now:
            return _Ending("ended", connection)  # the grant ran out with its refresh token
        if budget(deadline, now) < REFRESH_MIN_TIME:
            return _Ending("no_time", connection)
        profile = self._profiles.profile(connection.provider)
        try:
            credentials = self._credentials.credentials(profile)
        except Exception as exc:  # noqa: BLE001 - configuration trouble (a missing secret): retried, then given up
            logger.warning("Refresh before revoke failed", extra={"connection_id": connection.connection_id,
                                                                  "error_type": type(exc).__name__})
            return _Ending("retry", connection)
        self._connections.prepare_seal(LEASE_SECONDS)  # no key-service call under the lease
        # A lease that expired without a commit may have rotated a token nobody saved: an invalid_grant is
        # then no proof that the grant is gone.
        in_doubt = connection.in_doubt(now)
        leased, _ = self._connections.claim(connection, {
            "lease_owner": self._lease_owner, "lease_expires_at": now + LEASE_SECONDS,
            "refresh_in_doubt": True if in_doubt else None})
        if leased is None:
            return _Ending("waiting", connection)
        provider_deadline = min(now + LEASE_SECONDS, math.inf if deadline is None else deadline) - COMMIT_RESERVE
        try:
            answer = self._provider.refresh(profile, credentials, refresh_token, deadline=provider_deadline)
        except ProviderError as exc:
            logger.warning("Refresh before revoke failed", extra={
                "connection_id": connection.connection_id, "provider_error": exc.code, "kind": exc.kind,
                "provider_log_id": exc.log_id})
            if exc.code == "no_time":  # never sent: give the lease back
                released = self._connections.apply(leased, {}, remove=_LEASE)
                return _Ending("no_time", released or leased)
            if exc.kind == FailureKind.TERMINAL:
                if in_doubt:
                    return _Ending("failed", leased, exc.log_id)  # a live grant may hold a token we never saw
                logger.info("Grant already ended at the provider", extra={
                    "connection_id": connection.connection_id, "provider_error": exc.code})
                return _Ending("ended", leased, exc.log_id)
            return _Ending("retry", leased, exc.log_id, in_doubt=in_doubt or exc.maybe_processed)
        if answer.account_id and answer.account_id != leased.account_id:  # another account's tokens: never kept
            logger.warning("Refresh before revoke answered for another account",
                           extra={"connection_id": connection.connection_id})
            return _Ending("retry", leased, in_doubt=True)
        written = self._store_refreshed(leased, answer, refresh_token)
        if written is not None:
            return _Ending("refreshed", written)
        # A reconnect stored other tokens meanwhile: they stand. The old grant's fresh access token is revoked
        # now, as nothing keeps it; the step then finds the reconnect (`superseded`).
        try:
            log_id = self._provider.revoke(profile, credentials, answer.access_token,
                                           deadline=None if deadline is None else deadline - ERASE_RESERVE)
            return _Ending("revoked", leased, log_id)
        except ProviderError as exc:
            return _Ending("failed", leased, exc.log_id)

    def _store_refreshed(self, leased: Connection, answer: TokenSet, spent: str) -> Connection | None:
        """The refresh's answer on the item, the lease given back, in one guarded write (re-read once when
        someone, e.g. an erasure taking the disconnect over, wrote meanwhile). The status stays `disconnecting`:
        no token is served. None when a reconnect stored other tokens, or the connection keeps changing."""
        rotated = bool(answer.refresh_token)
        tokens = {"access_token": answer.access_token, "refresh_token": answer.refresh_token or spent,
                  "token_type": answer.token_type}
        refresh_expires_at = (answer.refresh_expires_at or leased.refresh_expires_at) if rotated \
            else leased.refresh_expires_at
        current: Connection | None = leased
        for _ in range(2):
            if current is None or current.status != DISCONNECTING or current.token_version != leased.token_version:
                return None
            # Sealed for the item as this write leaves it: its owner and account, the version it stores.
            sealed = self._connections.seal_tokens(current, tokens, token_version=current.token_version + 1)
            written = self._connections.apply(current, {
                "tokens": sealed, "token_version": current.token_version + 1,
                "access_expires_at": answer.access_expires_at, "refresh_expires_at": refresh_expires_at,
                "updated_at": int(self._clock.now()),
                # Strict rotation, yet no new refresh token: the one we hold may have died with this answer.
                **({"refresh_in_doubt": True} if not rotated and self._profiles.profile(
                    leased.provider).rotates_refresh_tokens else {}),
            }, remove=(*_LEASE, *(("refresh_in_doubt",) if rotated else ())))
            if written:
                return written
            current = self._connections.get(leased.connection_id)
        return None

    def _revoke(self, connection: Connection, deadline: float | None) -> tuple[str | None, str]:
        """(the provider's log id, `revoked` | `refused` (the access token or the request was refused) |
        `failed` (for good) | `retry` (transient) | `no_time`)."""
        try:
            access_token = self._connections.open_tokens(connection).get("access_token")
        except TokenDecryptionError:
            return None, "failed"
        if not access_token:
            return None, "revoked"  # nothing held: nothing to revoke
        profile = self._profiles.profile(connection.provider)
        try:
            log_id = self._provider.revoke(profile, self._credentials.credentials(profile), access_token,
                                           deadline=deadline)
            record_metric("Revoked", MetricUnit.Count, 1)
            return log_id, "revoked"
        except ProviderError as exc:
            logger.warning("Revoke failed", extra={"connection_id": connection.connection_id,
                                                   "provider_error": exc.code, "kind": exc.kind,
                                                   "attempt": connection.revoke_attempts + 1})
            if exc.code == "no_time":
                return exc.log_id, "no_time"
            return exc.log_id, "retry" if exc.kind in (FailureKind.TRANSIENT, FailureKind.OPERATOR) else "refused"
        except Exception as exc:  # noqa: BLE001 - configuration trouble (a missing secret): retried, then given up
            logger.warning("Revoke failed", extra={"connection_id": connection.connection_id,
                                                   "error_type": type(exc).__name__})
            return None, "retry"


def _plausible_id(operation_id: str) -> bool:
    return 0 < len(operation_id) <= 64 and operation_id.startswith("op_") and \
        all(c.isascii() and (c.isalnum() or c in "-_") for c in operation_id)
