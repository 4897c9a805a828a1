"""The refresh sweep: read only what is due from the sharded index and hand the ids to the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..domain.schedule import PLAUSIBLE_HORIZON
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, ConnectionRepository, RefreshQueue


class SweepSummary(TypedDict):
    due: int
    pending_events: int
    sent: int


@dataclass(frozen=True)
class SweepReport:
    due: int  # connections whose next refresh falls within the look-ahead
    pending_events: int  # connections with events a crashed function left unpublished
    sent: int  # ids handed to the workers

    def as_dict(self) -> SweepSummary:
        return {"due": self.due, "pending_events": self.pending_events, "sent": self.sent}


class Sweep:
    def __init__(self, connections: ConnectionRepository, queue: RefreshQueue, clock: Clock,
                 sweep_interval: int) -> None:
        """`sweep_interval` (seconds) is the schedule's rate: the sweep looks that far ahead."""
        self._connections = connections
        self._queue = queue
        self._clock = clock
        self._sweep_interval = sweep_interval

    def run(self) -> SweepReport:
        """Page through every shard of the Due and Outbox indexes (never a Scan) and queue the ids found.

        A duplicate tick sends the same ids again, which is harmless: the worker re-reads each connection and
        the lease makes refreshes single. Raises when the queue refuses ids (the scheduler retries the tick)."""
        store = self._connections
        now = int(self._clock.now())
        horizon = now + self._sweep_interval
        due: list[str] = []
        pending: list[str] = []
        # Once an hour, also what an older version planned implausibly far ahead (an absurd provider answer):
        # the refresher treats those as due and plans them afresh.
        hourly = now // 3600 != (now - self._sweep_interval) // 3600
        for shard in range(store.shards):
            due.extend(store.due(shard, horizon))
            if hourly:
                due.extend(store.scheduled_after(shard, now + PLAUSIBLE_HORIZON))
            pending.extend(store.with_pending_events(shard))
        ids = list(dict.fromkeys([*due, *pending]))
        sent = self._queue.send(ids) if ids else 0
        record_metric("ConnectionsDue", MetricUnit.Count, len(due))
        logger.info("Sweep done", extra={"due": len(due), "pending_events": len(pending), "sent": sent})
        return SweepReport(due=len(due), pending_events=len(pending), sent=sent)
