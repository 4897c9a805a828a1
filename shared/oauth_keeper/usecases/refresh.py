"""Refreshing one connection: single-flight lease, commit first, classify failures, whatever the strategy.

The hardest strategy sets the rules for all: under strict rotation (TikTok's, X's) the previous refresh token
dies the moment a new one is issued. So only one refresh per connection may be in flight (a lease on the item),
the provider's answer is committed before anything else happens, and a failure is classified by whose problem it
is before anything is decided. The profile's strategy says only which stored token is the refresh credential
(an extension sends the access token itself, never before its minimum age and never once it has expired) and how
the answer moves the grant's end (domain/renewal.py).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from ..domain import events
from ..domain.connection import ACTIVE, AT_RISK, DISCONNECTED, DISCONNECTING, ENDED, NEEDS_REAUTH, Connection, Reason
from ..domain.deadlines import (
    COMMIT_RESERVE,
    ENRICH_MIN,
    LEASE_SECONDS,
    PROVIDER_CALL_LIMIT,
    REFRESH_MIN_TIME,
    budget,
)
from ..domain.errors import ConfigurationError, FailureKind, ProviderError, TokenDecryptionError
from ..domain.events import PendingEvent
from ..domain.providers import ProviderProfile
from ..domain.renewal import cadence_plan, earliest_renewal, grant_end, plan
from ..domain.schedule import DEFAULT_READ_WINDOW, backoff_delay, effective_policy, implausible
from ..domain.tokens import TokenSet
from ..observability import MetricUnit, logger, record_metric, record_metric_by
from ..ports import Clock, ConnectionRepository, Credentials, ProviderClient, ProviderProfiles
from .breaker import LEGACY_PARKED_AHEAD, OPEN, PROBE, Breaker, Cause, CircuitBreakers
from .outbox import OutboxRelay

# LEASE_SECONDS is derived from every bound under the lease (domain/deadlines.py); it stays below the worker's
# 60 s function timeout (a test checks both).
COMMIT_ATTEMPTS = 2  # the commit, then once more after re-reading a connection someone wrote meanwhile
AT_RISK_AFTER_FAILURES = 3  # consecutive transient failures before "at risk", even with a valid access token
BACKOFF_CAP = 1800  # while the access token is still valid; once expired, the sweep interval



MAX_LOOKAHEAD = 3600  # seconds: the furthest a sweep's `due_by` is trusted (SweepIntervalMinutes' maximum, 60)
SAME_END_TOLERANCE = 3600  # seconds: a reported refresh end this close to the known one is the same end


def _same_end(reported: int | None, known: int | None) -> bool:
    return reported is not None and known is not None and abs(reported - known) <= SAME_END_TOLERANCE


class RefreshResult(StrEnum):
    """What one `Refresher.refresh` call ended in (the API's force-refresh route shows it as `result`)."""

    REFRESHED = "refreshed"  # new tokens committed
    NOT_DUE = "not_due"  # nothing to do yet
    BUSY = "busy"  # another refresher holds the lease
    SUPERSEDED = "superseded"  # someone stored other tokens meanwhile; ours were not written over theirs
    RETRYING = "retrying"  # a transient failure: backoff scheduled
    PAUSED = "paused"  # the provider's circuit breaker is open (our configuration)
    NEEDS_USER = "needs_reauth"  # the grant is gone
    INACTIVE = "inactive"  # needs_reauth or disconnected already (or erased)
    UNKNOWN = "unknown"  # no such connection


DISCONNECTING_REASON = "disconnecting"  # the reason of an INACTIVE outcome the disconnect job takes over
NO_TIME = "no_time"  # the reason of a BUSY outcome that never called the provider for lack of time
RENEWAL_TOO_EARLY = "token_too_young"  # the reason of a NOT_DUE outcome: the provider would refuse it yet
REFRESHED, NOT_DUE, BUSY, SUPERSEDED, RETRYING, PAUSED, NEEDS_USER, INACTIVE, UNKNOWN = tuple(RefreshResult)
# Outcomes that decided something about a connection, counted by outcome and reason. Not counted: nothing to do
# (not_due, inactive, unknown) or left to someone else (busy): the worker meets those on every duplicate message.
COUNTED_OUTCOMES = frozenset({REFRESHED, RETRYING, PAUSED, NEEDS_USER, SUPERSEDED})
_LEASE = ("lease_owner", "lease_expires_at")


@dataclass(frozen=True)
class RefreshOutcome:
    """The result, the reason (a `Reason` or provider trouble) and the connection as last written or read."""

    connection_id: str
    result: RefreshResult
    reason: str | None = None
    connection: Connection | None = None

    @property
    def called_provider(self) -> bool:
        return self.result in (REFRESHED, RETRYING, NEEDS_USER, SUPERSEDED) and self.reason != "refresh_token_expired"


@dataclass(frozen=True)
class _Ready:
    """What a provider call needs, gathered before it: the breaker's state at the first look, the profile, the
    stored tokens in clear, the refresh credential among them, and the client credentials."""

    state: str
    profile: ProviderProfile
    stored: dict[str, Any]
    credential: str
    credentials: Any


def _period_of(connection: Connection) -> int | None:
    """The period (seconds) of the Cadence family the connection is in, when its stored phase still matches its
    plan (a version before the Cadence index rewrites `next_refresh_at` alone: then it is not on its cadence)."""
    family, phase = connection.cadence_shard, connection.cadence_phase
    head = family.partition("#")[0] if family else ""
    if not head.isdigit() or int(head) <= 0 or phase is None or connection.next_refresh_at is None:
        return None
    period = int(head)
    return period if connection.next_refresh_at % period == phase else None


def failure_reason(error: ProviderError) -> Reason:
    """What actually happened, for a failure that is nobody's fault yet (transient or one refused request)."""
    if error.http_status == 429 or error.code in ("rate_limit_exceeded", "slow_down"):
        return Reason.RATE_LIMITED
    if error.code == "invalid_answer":
        return Reason.INVALID_ANSWER
    if error.kind == FailureKind.REJECTED:
        return Reason.REQUEST_REJECTED
    return Reason.PROVIDER_UNAVAILABLE


class Refresher:
    """Refreshes one connection at a time, safely from many places at once (sweep workers, the token route)."""

    def __init__(
        self, *, connections: ConnectionRepository, breakers: CircuitBreakers, profiles: ProviderProfiles,
        credentials: Credentials, provider: ProviderClient, outbox: OutboxRelay, clock: Clock,
        sweep_interval: int, expiry_warning: int, rng: random.Random | None = None,
        pending_until: Callable[[str, str], int | None] | None = None, read_window: int = DEFAULT_READ_WINDOW,
        after_renewal: Callable[[Connection, str, float | None, bool], None] | None = None, cadence: bool = True,
    ) -> None:
        """`sweep_interval` (seconds) is the look-ahead and the backoff cap once the access token has expired;
        `read_window` (seconds, ADAPTIVE_READ_WINDOW) is how recent a token read keeps an `adaptive` connection
        on the eager schedule;
        `expiry_warning` (seconds) is how early Connection Expiring is sent before the refresh token ends;
        `pending_until(provider, account_id)` is when the latest pending grant for that provider account (connect
        confirmation; any owner's: a forwarded link is consented by the same provider user) expires, or None
        without one. `after_renewal(connection, access_token, deadline, chain_finished)`: optional work once new
        tokens are committed (the channels listed again, usecases/channels.py; `chain_finished`: these are the
        connect chain's last link's, ADR 0025); it never raises. `cadence`: an ordinary eager refresh is scheduled
        in the Cadence index (ADR 0023); False (ScheduleIndex=due) schedules every refresh in the Due index,
        moving connections back there as they are refreshed."""
        self._cadence = cadence
        self._after_renewal = after_renewal
        self._pending_until = pending_until
        self._store = connections
        self._breakers = breakers
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._outbox = outbox
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._expiry_warning = expiry_warning
        self._read_window = read_window
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._owner = f"{uuid.uuid4()}"  # this refresher's lease identity

    def refresh(self, connection_id: str, *, force: bool = False, deadline: float | None = None,
                due_by: int | None = None) -> RefreshOutcome:
        """Refresh `connection_id` if due within one sweep interval (or `force`d) through the provider's token
        endpoint (RFC 6749 section 6), under a lease so only one refresh per connection is ever in flight. A
        connection still finishing its connect chain (`chain_next`) gets that link instead, under the same lease
        and commit (ADR 0025).

        `deadline` (epoch seconds) is when the caller's invocation must be over: the provider call ends before
        it, and before the lease leaves too little time to commit. `due_by` (epoch seconds, from the sweep's
        message): what is due by then is due, even beyond this function's own sweep interval (a deploy that
        shortened it: the sweep that sent the id recorded its moments swept); at most MAX_LOOKAHEAD ahead.
        Returns a RefreshOutcome; every provider
        failure is decided (retry, pause, needs_reauth) and written, never raised. Raises only for storage
        trouble (the SQS message is then retried).

        Each decided outcome (refreshed, retrying, paused, needs_reauth, superseded) counts 1 `RefreshOutcome`
        with dimensions `outcome` and `reason` (the operations dashboard's "refresh outcomes by reason")."""
        outcome = self._refresh(connection_id, force=force, deadline=deadline, due_by=due_by)
        if outcome.result in COUNTED_OUTCOMES:
            record_metric_by("RefreshOutcome", MetricUnit.Count, 1, outcome=str(outcome.result),
                             reason=str(outcome.reason or outcome.result))
        return outcome

    def _horizon(self, now: float, due_by: int | None) -> float:
        """What is due by now: one sweep interval ahead, or the sending sweep's `due_by`, never more than
        MAX_LOOKAHEAD ahead (the template's longest sweep interval)."""
        horizon = now + self._sweep_interval
        return max(horizon, min(due_by, now + MAX_LOOKAHEAD)) if due_by is not None else horizon

    def _refresh(self, connection_id: str, *, force: bool, deadline: float | None,
                 due_by: int | None = None) -> RefreshOutcome:
        now = self._now()
        if budget(deadline, now) >= REFRESH_MIN_TIME:
            # The common case, a due connection nobody holds, in one write: the lease, taken on the condition
            # that it is due, live, unleased and has no event waiting, returns the item (ReturnValues=ALL_NEW).
            # Anything else fails the condition, which returns the item as it was: the read-first path below
            # decides on it, with no GetItem either. Only then is a second write paid (a decision, or the lease
            # guarded on the revision read), where it was paid before too (ADR 0028).
            leased, found = self._store.take_lease(
                connection_id, owner=self._owner, expires_at=now + LEASE_SECONDS, statuses=(ACTIVE, AT_RISK),
                due_by=None if force else self._horizon(now, due_by))
            if leased is not None:
                return self._refresh_leased(leased, now, deadline)
        else:  # too late for a provider call anyway: only a read, to tell not_due and inactive from no_time
            found = self._store.get(connection_id)
        return self._refresh_read(connection_id, found, now, force=force, deadline=deadline, due_by=due_by)

    def _refresh_leased(self, leased: Connection, leased_at: int, deadline: float | None) -> RefreshOutcome:
        """The lease is ours (`take_lease`): the checks the read-first path makes before its lease, each giving
        the lease back when it decides, then the call."""
        if leased.outbox:  # written by a version that set no outbox_shard: published first, as ever
            leased = self._outbox.publish(leased)
        ready = self._ready(leased, leased_at, deadline, leased=True)
        if isinstance(ready, RefreshOutcome):
            return ready
        now = self._now()
        if leased_at + LEASE_SECONDS - now < PROVIDER_CALL_LIMIT + COMMIT_RESERVE:
            # The reads under the lease (breaker, data keys, credentials: cached, milliseconds, as a rule) ate
            # into it: renewed, so a whole provider call and the commit still fit (domain/deadlines.py).
            renewed, competing = self._store.claim(leased, {"lease_expires_at": now + LEASE_SECONDS})
            if renewed is None:  # someone wrote meanwhile (a reconnect keeps our lease): they decide
                if competing is not None and competing.lease_owner == self._owner:
                    return self._write(competing, {}, [], BUSY, None, release=True)  # nothing was sent: no doubt
                return RefreshOutcome(leased.connection_id, BUSY, connection=competing or leased)
            leased, leased_at = renewed, now
        if budget(deadline, now) < REFRESH_MIN_TIME:  # the lease or the reads were slow: give the lease back
            return self._write(leased, {}, [], BUSY, NO_TIME, release=True)
        return self._call(leased, ready, leased_at, deadline)

    def _refresh_read(self, connection_id: str, connection: Connection | None, now: int, *, force: bool,
                      deadline: float | None, due_by: int | None = None) -> RefreshOutcome:
        """The read-first path, on `connection` as read (or as a failed `take_lease` found it)."""
        if connection is None:
            return RefreshOutcome(connection_id, UNKNOWN)
        if connection.outbox:  # events a crashed function left behind
            connection = self._outbox.publish(connection)
        if connection.erase_requested and connection.status == DISCONNECTED and not connection.outbox:
            self._store.erase(connection_id)  # an owner's erasure, finished once its last event is out
            return RefreshOutcome(connection_id, INACTIVE, "erased")
        if connection.status == DISCONNECTING:  # never refreshed again: the disconnect job's (see the worker)
            self._breakers.forget_probe(connection.provider, connection_id)
            return RefreshOutcome(connection_id, INACTIVE, DISCONNECTING_REASON, connection)
        if connection.status == DISCONNECTED and not connection.erase_requested \
                and (connection.sealed_tokens or connection.next_refresh_at):
            # Disconnected by the webhook of an earlier version (it wrote no tokens; removals are now applied by
            # the worker, which erases them at once): erased here. Guarded: a reconnect landing meanwhile keeps
            # its own; a lost write stays due for the next sweep.
            self._store.apply(connection, {"tokens": None, **self._store.schedule_attributes(connection_id, None)})
        if connection.status in (NEEDS_REAUTH, DISCONNECTED):
            self._breakers.forget_probe(connection.provider, connection_id)  # it can probe nothing any more
            return RefreshOutcome(connection_id, INACTIVE, connection.status_reason, connection)
        horizon = self._horizon(now, due_by)
        due = connection.next_refresh_at is not None and (
            connection.next_refresh_at <= horizon or implausible(connection.next_refresh_at, now)
            # parked by an outage that is over: due now, and no longer once refreshed (so copies are harmless)
            or (self._maybe_parked(connection, now) and self._breakers.read(connection.provider).resuming(
                connection.parked_since, connection.next_refresh_at, now)))
        if not force and not due:
            return RefreshOutcome(connection_id, NOT_DUE, connection=connection)
        if connection.lease_owner and (connection.lease_expires_at or 0) > now:
            return RefreshOutcome(connection_id, BUSY, connection=connection)
        ready = self._ready(connection, now, deadline, leased=False)
        if isinstance(ready, RefreshOutcome):
            return ready

        # A lease still on the item expired without a commit: the provider may have rotated a token we
        # never saved. Remember that, so a later invalid_grant is read as rotation_lost.
        now = self._now()
        in_doubt = connection.refresh_in_doubt or bool(connection.lease_owner)
        leased, competing = self._store.claim(connection, {
            "lease_owner": self._owner, "lease_expires_at": now + LEASE_SECONDS,
            "refresh_in_doubt": True if in_doubt else None,
        })
        if leased is None:  # someone wrote first: report what they wrote, as the failed claim read it
            return RefreshOutcome(connection_id, BUSY, connection=competing or connection)
        if budget(deadline, self._now()) < REFRESH_MIN_TIME:  # the claim was slow: give the lease back
            return self._write(leased, {}, [], BUSY, NO_TIME, release=True)
        return self._call(leased, ready, now, deadline)

    def _ready(self, connection: Connection, now: int, deadline: float | None, *,
               leased: bool) -> RefreshOutcome | _Ready:
        """What a provider call needs (the breaker's state, the stored tokens, the client credentials, a data
        key for the commit), or the outcome that decides without one. `leased`: the connection holds our lease,
        which every such outcome gives back."""
        connection_id = connection.connection_id
        strategy = self._profiles.profile(connection.provider)
        finishing = connection.chain_next is not None  # the connect chain's rest runs instead (ADR 0025)
        if finishing and (connection.access_expires_at or now) <= now:
            # The short-lived token the link needs has ended: the connect never finished, only the user can redo it.
            return self._needs_reauth(connection, Reason.CONNECT_INCOMPLETE, None, now)
        if strategy.refreshes_with_access_token and (connection.access_expires_at or now) <= now:
            # The access token was the refresh credential: once it has expired, only the user can renew the grant.
            return self._needs_reauth(connection, Reason.ACCESS_TOKEN_EXPIRED, None, now)
        if connection.refresh_expires_at and connection.refresh_expires_at <= now:
            return self._needs_reauth(connection, Reason.CONNECT_INCOMPLETE if finishing
                                      else Reason.REFRESH_TOKEN_EXPIRED, None, now)
        if not finishing and not (strategy.issues_refresh_tokens or strategy.refreshes_with_access_token):  # `none`
            return self._toward_the_end(connection, now, release=leased)

        if budget(deadline, now) < REFRESH_MIN_TIME:  # too late for a whole provider call and the commit
            if leased:
                return self._write(connection, {}, [], BUSY, NO_TIME, release=True)
            return RefreshOutcome(connection_id, BUSY, NO_TIME, connection)
        state, _ = self._breakers.check(connection.provider)
        if state == OPEN:
            return self._paused(connection, self._breakers.read(connection.provider), now, release=leased)

        # The read-first path does everything that needs AWS besides the commit before its lease: under it, only
        # the provider call and the commit, so the lease's length is derived from their bounds
        # (domain/deadlines.py). Under a lease taken first these are cached reads, and the lease is renewed
        # should they have been slow.
        profile = strategy
        try:
            stored = self._store.open_tokens(connection)
        except TokenDecryptionError:
            logger.error("Stored tokens failed authentication; never served, user must reconnect",
                         extra={"connection_id": connection_id})
            return self._needs_reauth(connection, Reason.TOKEN_UNREADABLE, None, now)
        # The refresh credential: the refresh token, or (extend, re_exchange, a chain link) the access token itself.
        credential = stored.get("access_token" if finishing or profile.refreshes_with_access_token
                                else "refresh_token")
        if not credential:  # stored before connects without one were refused: nothing to refresh
            return self._needs_reauth(connection, Reason.NO_REFRESH_TOKEN, None, now)
        issued_at = stored.get("issued_at", connection.connected_at)
        not_before = earliest_renewal(profile, issued_at) if not finishing else None
        if not_before is not None and now < not_before:  # the provider would refuse it: never sent, forced or not
            return self._too_young(connection, profile, issued_at, now, release=leased)
        try:
            credentials = self._credentials.credentials(profile, fresh=state == PROBE)  # a probe reads SSM afresh
        except ConfigurationError as exc:
            return self._failed(connection, ProviderError(str(exc), code="provider_config",
                                                          kind=FailureKind.OPERATOR), state == PROBE)
        self._store.prepare_seal(LEASE_SECONDS)
        return _Ready(state, profile, stored, credential, credentials)

    def _call(self, leased: Connection, ready: _Ready, leased_at: int, deadline: float | None) -> RefreshOutcome:
        """Under our lease (taken at `leased_at`): the provider's token endpoint (or the connect chain's link),
        then the commit."""
        state, profile, credentials, credential = ready.state, ready.profile, ready.credentials, ready.credential
        now = self._now()
        # A sibling in this container may have tripped the breaker since the first look: look again (cached,
        # no read) rather than add one more call to a provider that refuses us or is down.
        again, _ = self._breakers.check(leased.provider) if state != PROBE else (PROBE, 0)
        if again == OPEN:
            return self._paused(leased, self._breakers.read(leased.provider), now, release=True)
        probe = PROBE in (state, again)
        if again == PROBE and state != PROBE:  # the probe fell to us after all: it reads the secret afresh
            try:
                credentials = self._credentials.credentials(profile, fresh=True)
            except ConfigurationError as exc:
                return self._failed(leased, ProviderError(str(exc), code="provider_config",
                                                          kind=FailureKind.OPERATOR), probe)
        # The answer must come early enough for the commit to fit in the lease, and in the caller's invocation.
        provider_deadline = min(leased_at + LEASE_SECONDS, deadline or math.inf) - COMMIT_RESERVE
        started = time.perf_counter()
        try:
            answer = self._provider.exchange_link(profile, credentials, leased.chain_next, credential,
                                                  deadline=provider_deadline) if leased.chain_next is not None \
                else self._provider.refresh(profile, credentials, credential, deadline=provider_deadline)
        except ProviderError as exc:
            return self._failed(leased, exc, probe)
        record_metric("RefreshLatency", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
        if answer.account_id and answer.account_id != leased.account_id:  # another account's tokens: never kept
            return self._failed(leased, ProviderError(
                "The refresh answer names another account.", code="invalid_answer", kind=FailureKind.TRANSIENT,
                maybe_processed=True), probe)
        outcome = self._commit(leased, answer, ready.stored, probe)
        if outcome.connection is not None and outcome.connection.profile_pending:
            self._enrich_later(outcome.connection, answer.access_token, deadline)
        if outcome.connection is not None and self._after_renewal is not None:
            finished = leased.chain_next is not None and outcome.connection.chain_next is None
            self._after_renewal(outcome.connection, answer.access_token, deadline, finished)
        return outcome

    def _enrich_later(self, connection: Connection, access_token: str, deadline: float | None) -> None:
        """The display name and avatar the callback had no time for: after the commit, best effort."""
        if budget(deadline, self._clock.now()) < ENRICH_MIN:  # to the fraction of a second
            return
        try:
            profile = self._profiles.profile(connection.provider)
            user = self._provider.fetch_user(profile, access_token, deadline=deadline)
            self._store.set_profile(connection.connection_id, user.display_name, user.avatar_url)
        except Exception as exc:  # noqa: BLE001 - a refresh never fails for a display name
            logger.warning("Deferred profile enrichment failed", extra={"error_type": type(exc).__name__})

    def _commit(self, leased: Connection, answer: TokenSet, stored: dict[str, Any], probe: bool) -> RefreshOutcome:
        """The first thing after the provider answers. Nothing (no user info, no event) comes before it."""
        now = self._now()
        profile = self._profiles.profile(leased.provider)
        rotated = bool(answer.refresh_token)
        refresh_token = answer.refresh_token or stored.get("refresh_token")  # an empty one never overwrites
        refresh_expires_at = (answer.refresh_expires_at or leased.refresh_expires_at) if rotated \
            else leased.refresh_expires_at
        if rotated and _same_end(answer.short_refresh_expires_at, leased.refresh_expires_at):
            # Below the plausible minimum, yet the end we knew (give or take clock skew): the remaining life
            # of a refresh token the provider did not extend, not an absurd value. The known end stays.
            refresh_expires_at = leased.refresh_expires_at
        if implausible(refresh_expires_at, now, profile.refresh_lifetime.maximum):  # stored by an older version
            refresh_expires_at = now + profile.refresh_lifetime.fallback
        # The strategy's and timing rules' say: an extension's end, a disuse expiry moved, a hard cap kept.
        refresh_expires_at = grant_end(profile, end=refresh_expires_at, answer=answer,
                                       connected_at=leased.cap_counts_from)
        tokens = {"access_token": answer.access_token, "refresh_token": refresh_token,
                  "token_type": answer.token_type}
        if profile.refreshes_with_access_token:
            tokens["issued_at"] = answer.issued_at  # the new token's age is what the next extension waits on
        next_at = plan(profile, issued_at=answer.issued_at, access_expires_at=answer.access_expires_at,
                       refresh_expires_at=refresh_expires_at, expiry_warning=self._expiry_warning, rng=self._rng,
                       last_read_at=leased.last_read_at, now=now, read_window=self._read_window)
        # A connect chain's link (ADR 0025): the next link, if any, is due at once; after the last, the plan above.
        chain_next = leased.chain_next + 1 if leased.chain_next is not None \
            and leased.chain_next + 1 < len(profile.chain) else None
        if chain_next is not None:
            next_at = now
        extended = bool(refresh_expires_at and refresh_expires_at > (leased.refresh_expires_at or 0) + 60)
        changes: dict[str, Any] = {
            "status": ACTIVE, "status_reason": Reason.CONNECT_FINISHING if chain_next is not None else None,
            "chain_next": chain_next,
            "access_expires_at": answer.access_expires_at, "refresh_expires_at": refresh_expires_at,
            "failures": None, "last_refresh_at": now, "last_refresh_outcome": "succeeded",
            "last_refresh_reason": None, "last_provider_log_id": None, "updated_at": now,
        }
        if answer.scopes:
            changes["scopes_granted"] = ",".join(answer.scopes)
        if extended:
            changes["expiring_notified"] = None

        if not rotated and profile.rotates_refresh_tokens:
            # Strict rotation, yet no new refresh token: the old one may have died with this answer.
            changes["refresh_in_doubt"] = True
        for attempt in range(COMMIT_ATTEMPTS):
            current = leased if attempt == 0 else self._store.get(leased.connection_id)
            if current is None or current.status in (DISCONNECTING, DISCONNECTED) or (
                    current.token_version != leased.token_version
                    and not (rotated and current.lease_owner == self._owner)):
                # Someone stored other tokens (or the user disconnected): ours must not overwrite them.
                logger.warning("Refresh result superseded", extra={"connection_id": leased.connection_id})
                return RefreshOutcome(leased.connection_id, SUPERSEDED)
            # A reconnect without a refresh token kept the very one we just spent (and our lease with it: a
            # reconnect with a refresh token of its own clears the lease): the answer's is then the only live
            # refresh token, so it is written over the reconnect's version. No token is opened to tell.
            changes["token_version"] = current.token_version + 1
            # Sealed for the version this write stores (the prepared data key: no KMS call under the lease).
            changes["tokens"] = self._store.seal_tokens(current, tokens, token_version=changes["token_version"])
            written_events = self._commit_events(current, answer.access_expires_at, refresh_expires_at, extended, now)
            if written_events and any(e["detail_type"] == events.EXPIRING for e in written_events):
                changes["expiring_notified"] = True
            # After a lost lease, still save: these are the newest tokens the provider issued.
            kept = ["refresh_in_doubt"] if changes.get("refresh_in_doubt") else []
            # The schedule from the item as this attempt read it: a write landed meanwhile (a reconnect keeping our
            # lease) may have moved it to the Due index, and keys written for the family it left would leave it in
            # neither index.
            schedule = self._schedule(current, answer, next_at, refresh_expires_at, profile, now,
                                      chained=chain_next is not None)
            cleared = [a for a in (*_LEASE, "refresh_in_doubt", "retry_at", "parked_since") if a not in kept]
            written = self._store.apply(current, {**changes, **schedule}, remove=cleared, events=written_events)
            if written:
                break
        else:
            raise RuntimeError("Connection kept changing while committing a refresh.")

        if probe:
            self._breakers.close(leased.provider)
        self._breakers.observe(leased.provider, failed_transiently=False)
        record_metric("RefreshSucceeded", MetricUnit.Count, 1)
        if any(e["detail_type"] == events.RECOVERED for e in written_events):
            record_metric("ConnectionsRecovered", MetricUnit.Count, 1)  # the way out of ConnectionsAtRisk
        written = self._outbox.publish(written)
        return RefreshOutcome(leased.connection_id, REFRESHED, connection=written)

    def _schedule(self, leased: Connection, answer: TokenSet, planned: int, refresh_expires_at: int | None,
                  profile: ProviderProfile, now: int, *, chained: bool) -> dict[str, Any]:
        """The commit's schedule attributes: on a cadence for an ordinary eager refresh (`renewal.cadence_plan`;
        one that keeps its family and phase writes `next_refresh_at` alone: no index write), else `planned` in the
        Due index."""
        placed = None
        if self._cadence and not chained:
            policy = effective_policy(profile.refresh_policy, last_read_at=leased.last_read_at, now=now,
                                      window=self._read_window)
            previous_period = _period_of(leased)
            placed = cadence_plan(profile, planned=planned, policy=policy, issued_at=answer.issued_at,
                                  access_expires_at=answer.access_expires_at, refresh_expires_at=refresh_expires_at,
                                  expiry_warning=self._expiry_warning, sweep_interval=self._sweep_interval,
                                  previous=leased.next_refresh_at if previous_period else None,
                                  previous_period=previous_period)
        if placed is None:
            return self._store.schedule_attributes(leased.connection_id, planned)
        moment, period = placed
        return self._store.schedule_attributes(leased.connection_id, moment, period=period, current=leased)

    def _commit_events(self, current: Connection, access_expires_at: int | None, refresh_expires_at: int | None,
                       extended: bool, now: int) -> list[PendingEvent]:
        found: list[PendingEvent] = []
        after = {"status": ACTIVE, "status_reason": None, "access_expires_at": access_expires_at,
                 "refresh_expires_at": refresh_expires_at}
        if current.status in (AT_RISK, NEEDS_REAUTH):
            found.append(self._event(events.RECOVERED, current, Reason.REFRESHED, now, **after))
        warning = self._expiry_warning
        if (refresh_expires_at and refresh_expires_at - now <= warning and not extended
                and not current.expiring_notified):
            # Refreshing no longer extends the grant: the app should ask for re-consent before it ends.
            found.append(self._event(events.EXPIRING, current, Reason.REFRESH_TOKEN_EXPIRING, now, **after))
        return found

    @staticmethod
    def _maybe_parked(connection: Connection, now: int) -> bool:
        """Worth a look at the breaker (from its 5 s cache): parked, or planned as far ahead as only parking
        plans (see Breaker.resuming)."""
        return connection.parked_since is not None or (
            connection.next_refresh_at is not None and connection.next_refresh_at - now > LEGACY_PARKED_AHEAD)

    def now(self) -> float:
        """The refresher's clock, for callers that budget around it."""
        return self._clock.now()

    def _too_young(self, connection: Connection, profile: ProviderProfile, issued_at: int | None,
                   now: int, *, release: bool) -> RefreshOutcome:
        """A token the provider would refuse to renew yet (`timing.min_token_age`): nothing is sent; the
        connection is planned again (never before the token is old enough), and the outcome is `not_due`.
        `release`: our lease is on it, and goes with that write."""
        planned = plan(profile, issued_at=issued_at or now, access_expires_at=connection.access_expires_at,
                       refresh_expires_at=connection.refresh_expires_at, expiry_warning=self._expiry_warning,
                       rng=self._rng, last_read_at=connection.last_read_at, now=now, read_window=self._read_window)
        if planned == connection.next_refresh_at and not release:
            return RefreshOutcome(connection.connection_id, NOT_DUE, RENEWAL_TOO_EARLY, connection)
        return self._write(connection, self._store.schedule_attributes(connection.connection_id, planned), [],
                           NOT_DUE, RENEWAL_TOO_EARLY, release=release)

    def _toward_the_end(self, connection: Connection, now: int, *, release: bool) -> RefreshOutcome:
        """A provider without refresh tokens: the grant ends with its access token. Say so early (Connection
        Expiring, once, within the warning window), then honestly (needs_reauth, `access_token_expired`)."""
        ends = connection.access_expires_at or now
        if ends <= now:
            return self._needs_reauth(connection, Reason.ACCESS_TOKEN_EXPIRED, None, now)
        warn_at = ends - self._expiry_warning
        changes: dict[str, Any] = {**self._store.schedule_attributes(connection.connection_id,
                                                                       ends if now >= warn_at else warn_at)}
        found: list[PendingEvent] = []
        if now >= warn_at and not connection.expiring_notified:
            changes["expiring_notified"] = True
            found.append(self._event(events.EXPIRING, connection, Reason.ACCESS_TOKEN_EXPIRING, now))
        return self._write(connection, changes, found, NOT_DUE, Reason.ACCESS_TOKEN_EXPIRING, release=release)

    # -- failures --------------------------------------------------------------------------------------------
    def _failed(self, leased: Connection, error: ProviderError, probe: bool) -> RefreshOutcome:
        if error.code == NO_TIME:  # never sent (the call found too little time): nobody's failure, no count
            return self._write(leased, {}, [], BUSY, NO_TIME, release=True)
        if leased.chain_next is not None:
            return self._chain_failed(leased, error, probe)
        now = self._now()
        record_metric("RefreshFailed", MetricUnit.Count, 1)
        logger.warning("Refresh failed", extra={
            "connection_id": leased.connection_id, "provider_error": error.code, "kind": error.kind,
            "provider_log_id": error.log_id,
        })
        if probe and error.kind in (FailureKind.TERMINAL, FailureKind.REJECTED):
            self._breakers.close(leased.provider)  # a real answer: the provider and our credentials work again
        if error.kind == FailureKind.TERMINAL:
            current = self._store.get(leased.connection_id)
            if current is None or current.token_version != leased.token_version:
                return RefreshOutcome(leased.connection_id, SUPERSEDED)  # a sibling rotated it a moment ago
            if leased.refresh_in_doubt:
                reason = Reason.ROTATION_LOST
            elif leased.refresh_expires_at and leased.refresh_expires_at <= now:
                reason = Reason.REFRESH_TOKEN_EXPIRED
            else:
                reason = Reason.INVALID_GRANT
                held_until = self._pending_until(current.provider, current.account_id) \
                    if self._pending_until is not None else None
                if held_until is not None:
                    return self._held_for_claim(leased, held_until, error, now)
            return self._needs_reauth(current, reason, error.log_id, now)
        if error.kind == FailureKind.OPERATOR:
            record_metric("CircuitBreakerOpen", MetricUnit.Count, 1)
            self._breakers.trip(leased.provider, error.code, cause=Cause.OPERATOR)
            logger.error("Provider refused our client credentials: refreshes paused for the provider",
                         extra={"provider": leased.provider, "provider_error": error.code})
            return self._paused(leased, self._breakers.read(leased.provider), now, release=True,
                                outcome="operator_error", log_id=error.log_id)
        outcome = self._retry_later(leased, error, now)
        self._trip_for_the_provider(leased.provider, error)
        return outcome

    def _chain_failed(self, leased: Connection, error: ProviderError, probe: bool) -> RefreshOutcome:
        """A connect chain's link run in the background failed (ADR 0025). Refused (the profile's error rules
        say reconnect, operator, or a refused request): the connect failed, honestly: needs_reauth, reason
        `connect_incomplete`. Transient: retried with backoff (capped at the sweep interval), never past the
        short-lived token's end, where the next look makes it needs_reauth for the same reason. The connection
        stays `active`, `connect_finishing`, meanwhile: its short-lived token is valid."""
        now = self._now()
        record_metric("ConnectChainLinkFailed", MetricUnit.Count, 1)
        logger.warning("Connect chain link failed", extra={
            "connection_id": leased.connection_id, "provider_error": error.code, "kind": error.kind,
            "provider_log_id": error.log_id,
        })
        if probe and error.kind != FailureKind.TRANSIENT:
            self._breakers.close(leased.provider)  # a real answer: the provider works again
        if error.kind != FailureKind.TRANSIENT:
            if error.kind == FailureKind.OPERATOR:  # our client credentials: every call of the provider would fail
                self._breakers.trip(leased.provider, error.code, cause=Cause.OPERATOR)
            return self._needs_reauth(leased, Reason.CONNECT_INCOMPLETE, error.log_id, now)
        failures = leased.failures + 1
        reason = failure_reason(error)
        next_at = now + backoff_delay(failures, cap=self._sweep_interval, rng=self._rng)
        if leased.access_expires_at:
            next_at = min(next_at, leased.access_expires_at)
        outcome = self._write(leased, {
            "failures": failures, "last_refresh_at": now, "last_refresh_outcome": "transient_failure",
            "last_refresh_reason": reason, "last_provider_log_id": error.log_id, "updated_at": now,
            **self._store.schedule_attributes(leased.connection_id, next_at),
        }, [], RETRYING, reason, release=True)
        self._trip_for_the_provider(leased.provider, error)
        return outcome

    def _trip_for_the_provider(self, provider: str, error: ProviderError) -> None:
        """A 429 with Retry-After pauses the whole provider that long; transient failures that dominate this
        container's recent calls mean the provider is down for everyone: pause it, and probe once a minute."""
        # Neither counts CircuitBreakerOpen: its alarm asks the operator to fix our credentials, and nothing
        # of ours is wrong here. Each has a metric of its own.
        if error.retry_after:
            record_metric("ProviderRateLimited", MetricUnit.Count, 1)
            self._breakers.trip(provider, error.code, cause=Cause.RATE_LIMITED, open_for=error.retry_after)
        elif self._breakers.observe(provider, failed_transiently=error.kind == FailureKind.TRANSIENT):
            record_metric("ProviderOutage", MetricUnit.Count, 1)
            logger.error("Provider unavailable for most calls: refreshes paused for the provider",
                         extra={"provider": provider, "provider_error": error.code})
            self._breakers.trip(provider, error.code, cause=Cause.OUTAGE)

    def _held_for_claim(self, leased: Connection, until: int, error: ProviderError, now: int) -> RefreshOutcome:
        """The user consented again and that grant waits for its claim: the new consent may have superseded
        this grant at the provider, so the refusal is not (yet) the user's revocation. Look again just after the
        claim code expires: claimed, the connection holds the new grant; unclaimed, the refusal stands."""
        logger.info("Refresh refused while a new grant waits for its claim: held",
                    extra={"connection_id": leased.connection_id, "provider_log_id": error.log_id})
        record_metric("RefreshesHeldForClaim", MetricUnit.Count, 1)
        changes: dict[str, Any] = {
            "superseded_pending": True, "last_refresh_at": now, "last_refresh_outcome": "superseded_pending",
            "last_provider_log_id": error.log_id, "updated_at": now,
            **self._store.schedule_attributes(leased.connection_id, until + 1 + self._rng.randint(0, 30)),
        }
        return self._write(leased, changes, [], RETRYING, "superseded_pending", release=True)

    def _retry_later(self, leased: Connection, error: ProviderError, now: int) -> RefreshOutcome:
        failures = leased.failures + 1
        reason = failure_reason(error)
        # Under `eager`, an expired access token means the app cannot post: retry at least every sweep.
        # Under `on_demand` (and `adaptive` while idle), expired access tokens are normal; only repeated failures
        # put it at risk.
        access_expired = self._access_gone(leased, now)
        cap = self._sweep_interval if access_expired else BACKOFF_CAP
        next_at = now + backoff_delay(failures, cap=cap, rng=self._rng)
        if leased.refresh_expires_at:
            next_at = min(next_at, leased.refresh_expires_at)
        at_risk = access_expired or failures >= AT_RISK_AFTER_FAILURES or leased.status == AT_RISK
        changes: dict[str, Any] = {
            "failures": failures, "status": AT_RISK if at_risk else leased.status,
            "status_reason": reason if at_risk else None, "last_refresh_at": now,
            "last_refresh_outcome": "transient_failure", "last_refresh_reason": reason,
            "last_provider_log_id": error.log_id, "updated_at": now,
            **self._store.schedule_attributes(leased.connection_id, next_at),
        }
        if error.maybe_processed:  # the provider may have rotated the token: a later invalid_grant is ours
            changes["refresh_in_doubt"] = True
        found = []
        if at_risk and leased.status != AT_RISK:
            found.append(self._event(events.AT_RISK, leased, reason, now, status=AT_RISK, retryable=True,
                                     log_id=error.log_id))
        return self._write(leased, changes, found, RETRYING, reason, release=True)

    def _paused(self, connection: Connection, breaker: Breaker, now: int, *, release: bool = False,
                outcome: str = "paused", log_id: str | None = None) -> RefreshOutcome:
        """Provider-wide trouble (our configuration, an outage, a rate limit): keep the connection, never blame
        the user. During an outage or a rate limit the connection is parked, so the sweep stops queueing it
        until the breaker closes; it returns once at its access token's end, to be marked at risk."""
        reason = breaker.cause.reason
        at_risk = self._access_gone(connection, now) or connection.status == AT_RISK
        parked_since = None
        if breaker.cause.parks:
            next_at = breaker.park_at(connection.access_expires_at, now) + self._rng.randint(0, 30)
            parked_since = breaker.since if next_at >= breaker.park_base else None
        else:
            next_at = max(breaker.open_until, now) + self._rng.randint(0, 30)
        if connection.refresh_expires_at and connection.refresh_expires_at < next_at:
            next_at, parked_since = connection.refresh_expires_at, None  # its end must be seen, not parked
        changes: dict[str, Any] = {
            "parked_since": parked_since,
            "status": AT_RISK if at_risk else connection.status,
            # An active connection's only reason is a connect still finishing (ADR 0025): it stays so.
            "status_reason": reason if at_risk else connection.status_reason,
            "last_refresh_outcome": outcome, "last_refresh_reason": reason,
            **self._store.schedule_attributes(connection.connection_id, next_at),
        }
        if log_id:
            changes["last_provider_log_id"] = log_id
        found = []
        if at_risk and connection.status != AT_RISK:
            found.append(self._event(events.AT_RISK, connection, reason, now, status=AT_RISK, retryable=True,
                                     log_id=log_id))
        outcome = self._write(connection, changes, found, PAUSED, reason, release=release)
        if parked_since is not None and breaker.probe_candidate is None:
            self._breakers.remember_probe(connection.provider, connection.connection_id)
        return outcome

    def _needs_reauth(self, connection: Connection, reason: str, log_id: str | None, now: int) -> RefreshOutcome:
        changes: dict[str, Any] = {
            "status": NEEDS_REAUTH, "status_reason": reason, "last_refresh_at": now,
            "last_refresh_outcome": "failed", "last_refresh_reason": reason, "last_provider_log_id": log_id,
            "updated_at": now, **self._store.schedule_attributes(connection.connection_id, None),
        }
        event = self._event(events.NEEDS_REAUTH, connection, reason, now, status=NEEDS_REAUTH, log_id=log_id)
        outcome = self._write(connection, changes, [event], NEEDS_USER, reason, release=True)
        if outcome.connection is not None:
            record_metric("NeedsReauthTransitions", MetricUnit.Count, 1)
            logger.warning("Connection needs reauthorization", extra={
                "connection_id": connection.connection_id, "reason": reason, "provider_log_id": log_id})
        return outcome

    def _write(self, connection: Connection, changes: dict[str, Any], found: list[PendingEvent], result: str,
               reason: str | None, *, release: bool) -> RefreshOutcome:
        if release and connection.lease_owner and connection.lease_owner != self._owner \
                and connection.status not in ENDED and "refresh_in_doubt" not in changes:
            # An expired lease of someone else's goes: keep what it tells (a rotation may have been lost).
            changes = {**changes, "refresh_in_doubt": True}
        # Any other decision ends a parking: a copy of the resume's message must then find nothing to do.
        remove = [*(_LEASE if release else ()), *(("parked_since",) if "parked_since" not in changes else ())]
        written = self._store.apply(connection, changes, remove=remove, events=found)
        if written is None:  # someone moved it meanwhile: they decide; nothing of ours is lost
            return RefreshOutcome(connection.connection_id, BUSY, reason)
        if any(e["detail_type"] == events.AT_RISK for e in found):
            record_metric("ConnectionsAtRisk", MetricUnit.Count, 1)
        written = self._outbox.publish(written)
        return RefreshOutcome(connection.connection_id, result, reason, written)

    def _access_gone(self, connection: Connection, now: int) -> bool:
        """The app can no longer get a working token without a refresh (the eager policy, and `adaptive` for a
        connection read recently: for an idle one, as under on_demand, an expired access token is normal)."""
        policy = effective_policy(self._profiles.profile(connection.provider).refresh_policy,
                                  last_read_at=connection.last_read_at, now=now, window=self._read_window)
        if policy != "eager":
            return False
        return not connection.access_expires_at or connection.access_expires_at <= now

    # -- events ------------------------------------------------------------------------------------------------
    def _event(self, detail_type: str, connection: Connection, reason: str, now: int, *,
               retryable: bool = False, log_id: str | None = None, **state: Any) -> PendingEvent:
        """An event describing the connection as it will be once this write lands (`state` overrides)."""
        snapshot = replace(connection, **state)
        return events.connection_event(detail_type, snapshot, reason=reason, occurred_at=now, retryable=retryable,
                                       provider_log_id=log_id)

    def _now(self) -> int:
        return int(self._clock.now())
