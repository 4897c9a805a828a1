"""The `RefreshQueue` port on SQS (connection ids, ten to a SendMessageBatch call, from a few threads) and the
`RemovalQueue` port (the removals the webhook verified, one message each, on a queue of their own)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..domain.errors import ConfigurationError
from ..domain.provider_events import AccountRemovalRequest


def refresh_message(connection_id: str, *, force: bool = False, due_by: int | None = None) -> str:
    """A refresh message's body: `{"connection_id": ...}`, plus `"force": true` to ignore the schedule, and
    `"due_by"` (epoch seconds, the horizon of the sweep that sent it: the worker takes as due what is due by then,
    whatever its own sweep interval; additive, older workers ignore it)."""
    return json.dumps({"connection_id": connection_id, **({"force": True} if force else {}),
                       **({"due_by": due_by} if due_by is not None else {})})


class SqsRefreshQueue:
    """Connection ids to the refresh queue, ten to a SendMessageBatch call."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, connection_ids: list[str], *, force: bool = False, due_by: int | None = None) -> int:
        """Batches go out from a few threads: at a million connections a sweep queues ~50,000 ids, and one
        round trip after another would not fit the function's timeout. `force`: refresh whatever the schedule
        says (a probe of an open breaker, a connection parked during an outage)."""
        batches = [connection_ids[i : i + 10] for i in range(0, len(connection_ids), 10)]
        with ThreadPoolExecutor(max_workers=min(8, len(batches) or 1)) as pool:
            return sum(pool.map(lambda batch: self._send_batch(batch, force, due_by), batches))

    def _send_batch(self, batch: list[str], force: bool, due_by: int | None) -> int:
        entries = [{"Id": str(i), "MessageBody": refresh_message(cid, force=force, due_by=due_by)}
                   for i, cid in enumerate(batch)]
        sent = 0
        for _ in range(3):  # retry only the entries SQS refused
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            sent += len(answer.get("Successful", []))
            failed = {f["Id"] for f in answer.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return sent
        raise RuntimeError(f"SQS refused {len(entries)} refresh messages")  # Lambda retries the sweep


class SqsRemovalQueue:
    """Verified removals to the removal queue: only the webhook's role may send there, and the worker applies a
    removal only from it (a removal is a command, not a refresh anyone may ask for)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send_removal(self, removal: AccountRemovalRequest) -> None:
        """One SendMessage; botocore's retries cover a throttle, anything else raises (the provider retries).
        Raises ConfigurationError when the deployment names no removal queue (REMOVAL_QUEUE_URL)."""
        if not self._url:
            raise ConfigurationError("REMOVAL_QUEUE_URL is not set: removals cannot be queued.")
        self._sqs.send_message(QueueUrl=self._url, MessageBody=removal.message())
