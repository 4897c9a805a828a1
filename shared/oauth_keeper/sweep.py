"""The refresh sweep: read only what is due from the sharded index and hand the ids to the workers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from .observability import MetricUnit, logger, metrics


class RefreshQueue(Protocol):
    def send(self, connection_ids: list[str]) -> int: ...


@dataclass(frozen=True)
class SweepReport:
    due: int  # connections whose next refresh falls within the look-ahead
    pending_events: int  # connections with events a crashed function left unpublished
    sent: int  # ids handed to the workers

    def as_dict(self) -> dict[str, int]:
        return {"due": self.due, "pending_events": self.pending_events, "sent": self.sent}


def sweep(services: Any, queue: RefreshQueue) -> SweepReport:
    """Page through every shard of the due index (never a Scan). A duplicate tick sends the same ids
    again, which is harmless: the worker re-reads each connection and the lease makes refreshes single."""
    store = services.connections
    horizon = int(services.now()) + services.settings.sweep_interval
    due: list[str] = []
    pending: list[str] = []
    for shard in range(store.shards):
        due.extend(store.due(shard, horizon))
        pending.extend(store.with_pending_events(shard))
    ids = list(dict.fromkeys([*due, *pending]))
    sent = queue.send(ids) if ids else 0
    metrics.add_metric("ConnectionsDue", MetricUnit.Count, len(due))
    logger.info("Sweep done", extra={"due": len(due), "pending_events": len(pending), "sent": sent})
    return SweepReport(due=len(due), pending_events=len(pending), sent=sent)


class SqsRefreshQueue:
    """Connection ids to the refresh queue, ten to a SendMessageBatch call."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, connection_ids: list[str]) -> int:
        """Batches go out from a few threads: at a million connections a sweep queues ~50,000 ids, and one
        round trip after another would not fit the function's timeout."""
        batches = [connection_ids[i : i + 10] for i in range(0, len(connection_ids), 10)]
        with ThreadPoolExecutor(max_workers=min(8, len(batches) or 1)) as pool:
            return sum(pool.map(self._send_batch, batches))

    def _send_batch(self, batch: list[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": json.dumps({"connection_id": cid})} for i, cid in enumerate(batch)]
        sent = 0
        for _ in range(3):  # retry only the entries SQS refused
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            sent += len(answer.get("Successful", []))
            failed = {f["Id"] for f in answer.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return sent
        raise RuntimeError(f"SQS refused {len(entries)} refresh messages")  # the scheduler retries the sweep
