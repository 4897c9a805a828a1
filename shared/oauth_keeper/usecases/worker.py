"""The refresh worker: a batch of queued connection ids, refreshed concurrently, failures reported per message.

The refresh queue also carries the background jobs' keys (orphan revokes, disconnect and erasure operations,
pending grants at expiry). The provider removals and data-deletion requests the public callbacks verified
(`{"removal": ...}`) come on a queue of their own, which only the webhook's role may send to, and are applied here
because that role may write no connection. A removal is a command: it is obeyed only from that queue (the
record's `eventSourceARN`), never from the refresh queue, which more roles can send to.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypedDict

from ..domain.claims import is_pending_key
from ..domain.deadlines import REFRESH_MIN_TIME, budget
from ..domain.provider_events import AccountRemovalRequest, removal_request_of
from ..observability import MetricUnit, logger, record_metric
from .claims import PendingGrants
from .disconnect import OPERATION_PREFIX, Disconnection, is_operation
from .orphans import OrphanGrants, is_orphan
from .refresh import BUSY, DISCONNECTING_REASON, INACTIVE, NO_TIME, Refresher, RefreshOutcome

MAX_ID_LENGTH = 64


class BatchResponse(TypedDict):
    """SQS's partial-batch response: the message ids to deliver again."""

    batchItemFailures: list[dict[str, str]]


def connection_id_of(body: str) -> str | None:
    """The connection id a refresh message (`{"connection_id": "con_..."}`) names; None when malformed."""
    return refresh_request_of(body)[0]


def refresh_request_of(body: str) -> tuple[str | None, bool]:
    """(the connection id, whether to refresh whatever the schedule says) of a refresh message; the id is None
    when the message is malformed. Messages from before `force` existed read as not forced."""
    return _refresh_request(_decoded(body))[:2]


def _decoded(body: str) -> Any:
    """A message body's JSON, or None when it is not JSON (each body is decoded once, whatever its kind)."""
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def _refresh_request(data: Any) -> tuple[str | None, bool, int | None]:
    """(id, force, due_by): `due_by` (epoch seconds) only when an integer; messages from before it read as None."""
    value = data.get("connection_id") if isinstance(data, dict) else None
    if not (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH):
        return None, False, None
    due_by = data.get("due_by")
    return value, data.get("force") is True, due_by if isinstance(due_by, int) and not isinstance(due_by, bool) \
        else None


class RefreshWorker:
    def __init__(self, refresher: Refresher, concurrency: int, *, orphans: OrphanGrants | None = None,
                 disconnection: Disconnection | None = None, pending: PendingGrants | None = None,
                 removal_source: str = "") -> None:
        """`concurrency`: provider calls in flight at once inside one invocation. `orphans` revokes the orphaned
        grants the sweep queues beside the connections; `disconnection` runs the disconnect and erasure jobs and
        applies removals; `pending` discards the pending grants whose claim code expired; `removal_source`: the
        ARN of the only queue removals are taken from (empty: none is)."""
        self._removal_source = removal_source
        self._pending = pending
        self._refresher = refresher
        self._concurrency = concurrency
        self._orphans = orphans
        self._disconnection = disconnection

    def process(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> BatchResponse:
        """Refresh each SQS record's connection; see `process_records`."""
        return process_records(records, self._refresher, self._concurrency, deadline=deadline,
                               now=self._refresher.now, orphans=self._orphans, disconnection=self._disconnection,
                               pending=self._pending, removal_source=self._removal_source)


def process_records(records: list[dict[str, Any]], refresher: Refresher, concurrency: int, *,
                    deadline: float | None = None, now: Any = None, orphans: OrphanGrants | None = None,
                    disconnection: Disconnection | None = None,
                    pending: PendingGrants | None = None, removal_source: str = "") -> BatchResponse:
    """Refresh each record's connection, or apply its removal; return SQS's partial-batch response.

    A refresh that ends in any decided outcome (refreshed, retry scheduled, needs reauth, ...) is done: the
    schedule lives on the item, not in the queue. Only an unexpected error sends the message back. A removal is
    applied only when its record's `eventSourceARN` is `removal_source`; from anywhere else, or unreadable, it is
    reported failed (SQS redelivers it, then parks it in the alarmed dead-letter queue). Anything else from that
    queue (a refresh, a job's key) is refused the same way: the public webhook's queue carries removals only.
    """
    jobs: list[tuple[str, str, bool]] = []
    removals: list[tuple[str, AccountRemovalRequest | None]] = []
    for record in records:
        data = _decoded(record.get("body", ""))
        from_removal_queue = bool(removal_source) and record.get("eventSourceARN") == removal_source
        if isinstance(data, dict) and "removal" in data:  # however malformed its content
            if not from_removal_queue:
                logger.error("Removal from a queue removals may not come from: refused",
                             extra={"message_id": record.get("messageId")})
            removals.append((record["messageId"], removal_request_of(data) if from_removal_queue else None))
            continue
        if from_removal_queue:  # the public webhook's queue carries removals only: never a refresh or a job
            logger.error("Not a removal, on the removal queue: refused", extra={"message_id": record.get("messageId")})
            removals.append((record["messageId"], None))
            continue
        connection_id, force, due_by = _refresh_request(data)
        if connection_id is None:  # can never succeed: drop it rather than loop it into the DLQ
            logger.error("Malformed refresh message dropped", extra={"message_id": record.get("messageId")})
            continue
        jobs.append((record["messageId"], connection_id, force, due_by))

    failures: list[dict[str, str]] = []
    outcomes: dict[str, RefreshOutcome | str] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs) + len(removals) or 1))) as pool:
        futures = [(message_id, pool.submit(_apply_removal, disconnection, removal, now, deadline))
                   for message_id, removal in removals]
        futures += [(message_id, pool.submit(_orphan_revoke, orphans, cid, deadline) if orphans and is_orphan(cid)
                     else pool.submit(_erasure, disconnection, cid, deadline) if disconnection and is_operation(cid)
                     else pool.submit(pending.expire, cid) if pending and is_pending_key(cid)
                     else pool.submit(_refresh_in_time, refresher, cid, force, deadline, now, disconnection,
                                      due_by))
                   for message_id, cid, force, due_by in jobs]
        for message_id, future in futures:
            try:
                outcome = outcomes[message_id] = future.result()
                if (isinstance(outcome, RefreshOutcome) and outcome.result == BUSY and outcome.reason == NO_TIME) \
                        or outcome == NO_TIME:
                    raise _NoTimeLeft(message_id)  # started, then found too little time: not lost
                if isinstance(outcome, RefreshOutcome) and outcome.result == BUSY and outcome.connection is not None \
                        and outcome.connection.cadence_shard is not None:
                    # Another refresher holds the lease (the token route's, say). From the Due index the next sweep
                    # sends the id again should that refresher die before its commit; from a Cadence family
                    # nothing would before the phase comes round a period later (ADR 0023): SQS delivers it again
                    # after the visibility timeout, longer than a lease, to find it refreshed (not_due) or free.
                    raise _LeaseHeld(message_id)
            except _NoTimeLeft:
                logger.info("Refresh left for the next invocation", extra={"message_id": message_id})
                failures.append({"itemIdentifier": message_id})
            except _LeaseHeld:
                logger.info("Refresh on a cadence held by another: delivered again", extra={"message_id": message_id})
                failures.append({"itemIdentifier": message_id})
            except Exception:  # noqa: BLE001 - reported per message; SQS retries it, then the DLQ
                logger.exception("Refresh crashed", extra={"message_id": message_id})
                failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


class _NoTimeLeft(Exception):
    """Too little of the invocation is left to refresh safely: the message goes back to the queue."""


class _LeaseHeld(Exception):
    """A connection on a cadence leased by another refresher: the message goes back to the queue (ADR 0023)."""


def _refresh_in_time(refresher: Refresher, connection_id: str, force: bool, deadline: float | None,
                     now: Any, disconnection: Disconnection | None = None,
                     due_by: int | None = None) -> RefreshOutcome | str:
    # A refresh started this late could not commit before Lambda cuts the invocation off: SQS delivers the
    # message again (a batch item failure), and the next invocation has the time.
    if deadline is not None and now is not None and budget(deadline, now()) < REFRESH_MIN_TIME:
        raise _NoTimeLeft(connection_id)
    outcome = refresher.refresh(connection_id, force=force, deadline=deadline, due_by=due_by)
    if outcome.result == INACTIVE and outcome.reason == DISCONNECTING_REASON and disconnection is not None:
        return disconnection.step(connection_id, deadline=deadline)  # the disconnect job's, not a refresh
    return outcome


def _apply_removal(disconnection: Disconnection | None, removal: AccountRemovalRequest | None,
                   now: Any = None, deadline: float | None = None) -> str:
    """Apply a removal the webhook verified and queued, or begin the account erasure a data-deletion request
    asked for (`removal.operation_id`). One refused (from another queue), one this code cannot read (a newer
    version, a broken body) or cannot apply raises: SQS delivers it again, then parks it in the dead-letter
    queue, where the operator sees it (never dropped: it may be the user's only word that the grant is gone).
    Its `granted_before` is capped at its `received_at` (`effective_before`) and at now."""
    if removal is None or disconnection is None:
        raise ValueError("A removal message this worker cannot apply")
    granted_before = removal.effective_before if now is None else min(removal.effective_before, int(now()))
    if removal.operation_id is not None:
        # The job under the request's own id: a repeat of the message only continues it.
        disconnection.request_account_erasure(removal.provider, removal.account_id, deadline=deadline,
                                              operation_id=removal.operation_id, granted_before=granted_before)
        logger.info("Data deletion begun", extra={"provider": removal.provider,
                                                  "operation_id": removal.operation_id})
        return "erasure_requested"
    result = disconnection.disconnect_account(
        removal.provider, removal.account_id, removal.reason, granted_before=granted_before,
        extra={"provider_reason": removal.provider_reason})
    disconnected, kept = result["disconnected"], result["kept"]
    record_metric("WebhookDisconnects", MetricUnit.Count, disconnected)
    if kept:
        record_metric("WebhookStaleIgnored", MetricUnit.Count, len(kept))
        logger.info("Removal event older than the connection's latest grant: ignored", extra={
            "provider": removal.provider, "connection_ids": kept, "granted_before": granted_before})
    logger.info("Authorization removed at the provider", extra={"provider": removal.provider,
                                                                 "connections": disconnected, "kept": len(kept)})
    return "removal_applied"


def _erasure(disconnection: Disconnection, key: str, deadline: float | None) -> str:
    return disconnection.continue_erasure(key.removeprefix(OPERATION_PREFIX), deadline=deadline)


def _orphan_revoke(orphans: OrphanGrants, key: str, deadline: float | None) -> str:
    return orphans.revoke(key, deadline=deadline)
