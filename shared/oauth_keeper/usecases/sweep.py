"""The refresh sweep: read only what is due from the sharded index and hand the ids to the workers.

It reads every shard an item can be in, not only those below today's `DUE_SHARDS`: an item keeps the shard it
was written with. Which shards that is, it keeps in one item (`ShardSpan`, see `_span`).

Eager connections on a cadence (ADR 0023) are not in the Due index: each Cadence family (period, shard) is read
over the phases of the moments since the horizon the previous sweep covered (`cadence_windows`), recorded in the
same item, so a missed sweep widens the window instead of losing ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice, zip_longest
from typing import TypedDict

from ..domain.schedule import (
    MAX_DUE_SHARDS,
    PLAUSIBLE_HORIZON,
    SHARD_PROBE_INTERVAL,
    CadenceRecord,
    cadence_windows,
    span_after_probe,
    span_for_count,
)
from ..observability import MetricUnit, logger, record_metric, record_metric_by
from ..ports import Clock, ConnectionRepository, RefreshQueue
from .breaker import CLOSED, OPEN, PARK_OFFSET, CircuitBreakers

_PROBE_CANDIDATES = 200  # at most this many parked connections per shard are read to find one to probe


class SweepSummary(TypedDict):
    due: int
    pending_events: int
    sent: int
    probes: int
    resumed: int


@dataclass(frozen=True)
class SweepReport:
    due: int  # connections whose next refresh falls within the look-ahead
    pending_events: int  # connections with events a crashed function left unpublished
    sent: int  # ids handed to the workers
    probes: int = 0  # parked connections sent to probe a provider whose breaker is open
    resumed: int = 0  # parked connections brought back after their provider's breaker closed

    def as_dict(self) -> SweepSummary:
        return {"due": self.due, "pending_events": self.pending_events, "sent": self.sent, "probes": self.probes,
                "resumed": self.resumed}


class Sweep:
    def __init__(self, connections: ConnectionRepository, queue: RefreshQueue, clock: Clock,
                 sweep_interval: int, *, breakers: CircuitBreakers | None = None,
                 providers: tuple[str, ...] = ()) -> None:
        """`sweep_interval` (seconds) is the schedule's rate: the sweep looks that far ahead. With `breakers`,
        the sweep also probes each of `providers` whose breaker waits for a probe, and brings back what an
        outage parked once it is over."""
        self._connections = connections
        self._queue = queue
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._breakers = breakers
        self._providers = providers

    def run(self) -> SweepReport:
        """Page through every shard of the Due and Outbox indexes (never a Scan) and queue the ids found.

        A duplicate tick sends the same ids again, which is harmless: the worker re-reads each connection and
        the lease makes refreshes single. Raises when the queue refuses ids (Lambda retries the invocation). Counts
        `SweepSucceeded` once it has read and queued everything, never on a failed sweep."""
        store = self._connections
        now = int(self._clock.now())
        horizon = now + self._sweep_interval
        due: list[str] = []
        pending: list[str] = []
        # Once an hour, also what an older version planned implausibly far ahead (an absurd provider answer):
        # the refresher treats those as due and plans them afresh.
        hourly = now // 3600 != (now - self._sweep_interval) // 3600
        shards, cadence = self._span(now)
        for shard in range(shards):
            due.extend(store.due(shard, horizon))
            if hourly:
                due.extend(store.scheduled_after(shard, now + PLAUSIBLE_HORIZON))
            pending.extend(store.with_pending_events(shard))
        for period in cadence.periods:
            windows = cadence_windows(cadence.swept_to, horizon, period)
            for shard in range(shards):
                for low, high in windows:
                    due.extend(store.on_cadence(period, shard, low, high))
        try:
            probes, resumed = self._parked(now, shards, hourly)
        except Exception:  # noqa: BLE001 - probes and resumes are extra work: due ids must go out regardless
            logger.exception("Parked connections not looked at this tick")
            record_metric("SweepParkedFailed", MetricUnit.Count, 1)
            probes, resumed = [], []
        # Resumed connections are due because they are still parked (the refresher knows the range): a copy
        # that reaches a worker after the connection was refreshed finds nothing to do, however far the workers
        # lag. A probe is sent to be refreshed whatever its schedule: the provider's breaker is still open.
        ids = list(dict.fromkeys([*due, *pending, *resumed]))
        # `due_by`: a worker with a shorter sweep interval (a deploy lowering it) still takes these as due, as this
        # sweep records their moments swept: on a cadence nothing else would send them before a period has passed.
        sent = self._queue.send(ids, due_by=horizon) if ids else 0
        forced = [cid for cid in probes if cid not in set(ids)]
        sent += self._queue.send(forced, force=True) if forced else 0
        if cadence.periods:  # only once queued: a sweep that failed before leaves the window to the next one
            store.save_swept(horizon)
        record_metric("ConnectionsDue", MetricUnit.Count, len(due))
        # The heartbeat (SweepHeartbeatAlarm): only a sweep that read every shard and queued what it found counts.
        record_metric("SweepSucceeded", MetricUnit.Count, 1)
        logger.info("Sweep done", extra={"due": len(due), "pending_events": len(pending), "sent": sent,
                                         "probes": len(probes), "resumed": len(resumed), "shards": shards})
        return SweepReport(due=len(due), pending_events=len(pending), sent=sent, probes=len(probes),
                           resumed=len(resumed))

    def _span(self, now: int) -> tuple[int, CadenceRecord]:
        """How many shards to read: `DUE_SHARDS`, or more while items written under a larger count remain.

        Every SHARD_PROBE_INTERVAL while the span exceeds `DUE_SHARDS`, the shards above it are probed
        (`shard_in_use`, highest first, so a shard still in use ends the probe) and the span shrinks once two
        probes an hour apart agree (`span_after_probe`). On the first sweep of this version, an hour later, then
        every SHARD_AUDIT_INTERVAL, every shard up to MAX_DUE_SHARDS is probed: that finds what a version without
        the record wrote, and items a writer put above the record (a raise rolled back before this sweeper ran
        with it). The record is written before any shard is read and lowered only over shards found empty twice,
        so a sweep that dies anywhere leaves nothing unswept. The Cadence families count as the Due index does.
        Returns the number of shards to read and the Cadence record, read with the span (one GetItem)."""
        store = self._connections
        configured = store.shards
        recorded, cadence = store.sweep_record()
        periods = cadence.periods
        if recorded is None or now >= recorded.audit_at:
            span = span_after_probe(recorded, configured=configured,
                                    found=self._in_use(configured, MAX_DUE_SHARDS, periods), now=now, audited=True)
        elif recorded.shards > configured and now - recorded.probed_at >= SHARD_PROBE_INTERVAL:
            span = span_after_probe(recorded, configured=configured,
                                    found=self._in_use(configured, recorded.shards, periods), now=now, audited=False)
        else:
            span = span_for_count(recorded, configured)
        if span != recorded:
            store.save_shard_span(span, replacing=recorded)
            if recorded is None or span.shards != recorded.shards:
                logger.info("Sweep reads a new number of shards", extra={
                    "shards": span.shards, "was": recorded.shards if recorded else None, "due_shards": configured})
        return span.shards, cadence

    def _in_use(self, low: int, high: int, periods: tuple[int, ...] = ()) -> int:
        """The highest shard in [low, high) holding any item (Cadence families of `periods` included), + 1; `low`
        when none does. Probed from the top, so the first shard found in use ends it: while a lowered count
        drains, that is usually the first probed."""
        return next((shard + 1 for shard in range(high - 1, low - 1, -1)
                     if self._connections.shard_in_use(shard, periods)), low)

    def _parked(self, now: int, shards: int, hourly: bool = False) -> tuple[list[str], list[str]]:
        """Connections an outage parked that need a worker now: one probe per provider whose breaker is due
        for one (nobody else would call the provider: every due connection is parked), and, for an hour after a
        breaker closed, every connection it parked, oldest access expiry first within each shard."""
        probes: list[str] = []
        resumed: list[list[str]] = []
        for provider in self._providers if self._breakers else ():
            breaker = self._breakers.read(provider)  # type: ignore[union-attr]
            # The breaker's state once a sweep, for the operations dashboard: 1 while the provider's refreshes
            # are paused (open, probing included), 0 when closed.
            record_metric_by("ProviderPaused", MetricUnit.Count, 1 if breaker.state is OPEN else 0,
                             provider=provider)
            parked = breaker.parked_range(now)  # any cause: an earlier outage of the episode may have parked some
            if parked is None:
                continue
            low, high = parked
            if breaker.state is OPEN and breaker.open_until <= now:
                probe = self._probe(provider, breaker.probe_candidate, low, high, shards)
                probes.extend([probe] if probe else [])
            elif breaker.state is CLOSED and (breaker.resume_until > now or (
                    # After the hour, once an hour until the parking period is over: a resume pass that failed
                    # or fell behind must not leave connections parked for weeks.
                    hourly and breaker.resume_until and now < breaker.resume_until + PARK_OFFSET)):
                resumed.extend(list(self._connections.scheduled_between(shard, low, high))
                               for shard in range(shards))
        # Round-robin over the shards: each is in expiry order, and so, roughly, is the whole.
        order = [cid for wave in zip_longest(*resumed) for cid in wave if cid is not None]
        return probes, order

    def _probe(self, provider: str, candidate: str | None, low: int, high: int, shards: int) -> str | None:
        """A connection of `provider` to probe with: the one the breaker remembered (any live connection of the
        provider will do), else one parked in [low, high]. The due index holds keys only, and another provider's
        episode may park connections in the same range: a few candidates' providers are read (that attribute
        alone: the sweeper may read nothing else of a connection) to find one."""
        if candidate and self._connections.provider_of(candidate) == provider:
            return candidate
        for shard in range(shards):
            for cid in islice(self._connections.scheduled_between(shard, low, high), _PROBE_CANDIDATES):
                if self._connections.provider_of(cid) == provider:
                    return cid
        return None
