"""When a connection should next be refreshed, which shard of the due index it lives in, and which shards the
sweep must read."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

MIN_MARGIN = 15 * 60  # refresh at least 15 minutes before the access token ends
MARGIN_SHARE = 0.20  # ...or 20% of its lifetime before, whichever is earlier
MAX_JITTER = 120  # spread refreshes so a burst of connects does not become a burst of refreshes


def refresh_margin(lifetime: int) -> int:
    """How long before an access token of `lifetime` seconds ends it is refreshed, jitter aside (seconds)."""
    return max(MIN_MARGIN, int(max(0, lifetime) * MARGIN_SHARE))


def next_refresh_at(issued_at: int, access_expires_at: int | None, rng: random.Random | None = None) -> int | None:
    """access_expires_at - max(15 min, 20% of lifetime) - jitter; never before issued_at."""
    if access_expires_at is None:
        return None
    lifetime = max(0, access_expires_at - issued_at)
    margin = refresh_margin(lifetime)
    jitter = (rng or random).randint(0, min(MAX_JITTER, lifetime // 20 or 1))
    return max(issued_at, access_expires_at - margin - jitter)


KEEPALIVE_INTERVAL = 86_400  # on_demand: one keep-alive refresh a day detects revoked grants
KEEPALIVE_BEFORE_END = 3 * 86_400  # ...and one well before the refresh token ends


# adaptive (ADR 0026): a connection whose token was read within the window is kept fresh eagerly, the others get the
# on_demand keep-alive. The token route records a read at most once a window (`read_mark_due`), so the stored
# read trails the newest by less than one window: "read within the window" is "stored read less than two windows
# old", and a connection unread for two windows is idle for sure.
DEFAULT_READ_WINDOW = 86_400  # seconds (ADAPTIVE_READ_WINDOW)
MIN_READ_WINDOW = 3600
MAX_READ_WINDOW = 30 * 86_400


def read_mark_due(last_read_at: int | None, now: float, window: int) -> bool:
    """Whether a token read at `now` should be recorded: no read stored, or the stored one is at least one
    `window` old (seconds). At most one write per connection per window follows."""
    return last_read_at is None or now - last_read_at >= window


def recently_read(last_read_at: int | None, now: float, window: int) -> bool:
    """A token read within the last `window` seconds, as far as the stored read (recorded at most once a window)
    can tell: it is less than two windows old. A connection never read (or stored before reads were recorded)
    is not: nothing bounds how long it would stay eager."""
    return last_read_at is not None and now - last_read_at < 2 * window


def effective_policy(policy: str, *, last_read_at: int | None, now: float, window: int) -> str:
    """`eager` or `on_demand`: what `policy` means for this connection at `now`. `adaptive` is `eager` while the
    connection was read recently (`recently_read`), else `on_demand`; the other policies are themselves."""
    if policy != "adaptive":
        return policy
    return "eager" if recently_read(last_read_at, now, window) else "on_demand"


def plan_next_refresh(
    policy: str,
    *,
    issued_at: int,
    access_expires_at: int | None,
    refresh_expires_at: int | None,
    rng: random.Random | None = None,
) -> int:
    """When the sweep should next look at a connection, under `policy` as `effective_policy` resolved it
    (`eager` or `on_demand`; epoch seconds).

    Never later than the refresh token's end: the sweep must see that moment to say "needs reauth".
    """
    if policy == "on_demand":
        planned = issued_at + KEEPALIVE_INTERVAL - (rng or random).randint(0, MAX_JITTER)
        if refresh_expires_at and refresh_expires_at - KEEPALIVE_BEFORE_END > issued_at:
            planned = min(planned, refresh_expires_at - KEEPALIVE_BEFORE_END)
    else:
        planned = next_refresh_at(issued_at, access_expires_at, rng) or issued_at + KEEPALIVE_INTERVAL
    if refresh_expires_at:
        planned = min(planned, refresh_expires_at)
    return planned


def backoff_delay(failures: int, *, cap: int, base: int = 30, rng: random.Random | None = None) -> int:
    """Capped exponential backoff with full jitter: uniform between 0 and min(cap, base * 2^(n-1))."""
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return int((rng or random).uniform(0, ceiling))


def due_shard(connection_id: str, shards: int) -> int:
    """A stable shard so the sweep can read the due index in parallel partitions."""
    return int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:4], "big") % max(1, shards)


# No deployment can use more shards (template.yaml's DueShards MaxValue, settings.py's bound): an audit that
# reads every shard below it has read every shard an item can be in.
MAX_DUE_SHARDS = 256
SHARD_PROBE_INTERVAL = 3600  # seconds between looks at the shards above the configured count, while any is read
SHARD_AUDIT_INTERVAL = 86_400  # seconds between looks at every shard up to MAX_DUE_SHARDS


@dataclass(frozen=True)
class ShardSpan:
    """Which shards of the Due and Outbox indexes may hold items, as the sweep last established it.

    An item keeps the shard it was written with, so after `DUE_SHARDS` is lowered the sweep reads
    `0 .. max(DUE_SHARDS, shards) - 1` until the shards above `DUE_SHARDS` are found empty. Epoch seconds."""

    shards: int  # the sweep reads shards 0 .. shards-1
    found: int  # shards in use at the last probe: its highest shard holding an item + 1 (never below DUE_SHARDS)
    probed_at: int  # when the shards above DUE_SHARDS were last looked at
    audit_at: int  # when every shard up to MAX_DUE_SHARDS is to be looked at next


def span_after_probe(previous: ShardSpan | None, *, configured: int, found: int, now: int,
                     audited: bool) -> ShardSpan:
    """The span after a probe that found the shards at and above `found` empty (`audited`: all of them up to
    MAX_DUE_SHARDS, else those up to `previous.shards`).

    The span grows at once and shrinks only to what two probes, at least SHARD_PROBE_INTERVAL apart, both
    found: a writer still running with the old count when the first looked (an invocation that began before
    the deploy) may add an item just after it. A first audit is repeated after SHARD_PROBE_INTERVAL for the
    same reason (the version before this one may still be writing)."""
    found = max(configured, found)
    if previous is None:
        shards = found
    elif now - previous.probed_at >= SHARD_PROBE_INTERVAL:
        shards = max(found, previous.found)
    else:
        shards = max(found, previous.shards)
    if audited or previous is None:
        audit_at = now + (SHARD_AUDIT_INTERVAL if previous is not None else SHARD_PROBE_INTERVAL)
    else:
        audit_at = previous.audit_at
    return ShardSpan(shards=shards, found=found, probed_at=now, audit_at=audit_at)


def span_for_count(previous: ShardSpan, configured: int) -> ShardSpan:
    """The span once `DUE_SHARDS` is `configured`: raised at once when the count grew (writers may now use every
    shard below it, so a later probe must see them empty twice before the span shrinks again)."""
    if configured <= previous.shards:
        return previous
    return ShardSpan(shards=configured, found=max(previous.found, configured), probed_at=previous.probed_at,
                     audit_at=previous.audit_at)


# No plan is ever this far ahead (refresh tokens live at most ~a year): a stored plan beyond it came from an
# absurd provider answer that an older version trusted, and is looked at as due.
PLAUSIBLE_HORIZON = 400 * 86_400


def implausible(moment: int | None, now: float, limit: int = PLAUSIBLE_HORIZON) -> bool:
    """`moment` (epoch seconds) lies further than `limit` seconds ahead of `now`."""
    return moment is not None and moment - now > limit


# The Cadence index (ADR 0023): an eager connection is refreshed every `period` seconds at a fixed phase, so an
# ordinary refresh moves `next_refresh_at` by one period and leaves the index keys (family, phase) alone.
SCHEDULE_INDEXES = ("cadence", "due")  # settings.schedule_index: where eager refreshes are scheduled
CADENCE_STEP = 60  # periods are whole minutes: a provider's answers that differ by a second share a family
MAX_CADENCE_PERIOD = 86_400  # longer periods stay in the Due index: their refreshes are too rare to matter
CADENCE_HEADROOM = 600  # seconds of access lifetime left at the latest cadence moment, beyond the sweep's lag


def cadence_period(issued_at: int, access_expires_at: int | None, sweep_interval: int) -> int | None:
    """The period (seconds) of the cadence family for an access token issued at `issued_at` and ending at
    `access_expires_at` (epoch seconds): its lifetime less the refresh margin (as `next_refresh_at`, without
    jitter), rounded down to CADENCE_STEP. None when the token has no known end, the period exceeds
    MAX_CADENCE_PERIOD, is shorter than four sweep intervals (a refresh must land at least one window beyond the
    sweep that sent it), or the margin leaves less than CADENCE_HEADROOM once a moment may be a sweep interval
    late (`on_cadence`)."""
    if access_expires_at is None:
        return None
    lifetime = access_expires_at - issued_at
    margin = refresh_margin(lifetime)
    period = (lifetime - margin) // CADENCE_STEP * CADENCE_STEP
    if not 4 * sweep_interval <= period <= MAX_CADENCE_PERIOD or margin - sweep_interval < CADENCE_HEADROOM:
        return None
    return period


def on_cadence(previous: int, period: int, issued_at: int, slack: int) -> int | None:
    """The next refresh of a connection on a cadence: the latest moment `previous + k * period` (epoch seconds,
    k >= 0) at most `issued_at + period + slack` (a refresh the sweep sent up to `slack` seconds early keeps its
    phase, so the access token is at most `period + slack` old at the moment). None when that moment lies less
    than half a period after `issued_at` (the refresh ran far behind its phase): the connection is re-phased
    (`plan` again, another phase) instead of being refreshed again at once."""
    k = max(0, (issued_at + period + slack - previous) // period)
    moment = previous + k * period
    return moment if moment >= issued_at + period // 2 else None


@dataclass(frozen=True)
class CadenceRecord:
    """What the sweep needs of the Cadence index besides the shards: the periods (seconds) of the families a
    writer has put a connection in (recorded before the first such write, never dropped), and the horizon (epoch
    seconds) up to which a sweep has queued every moment, None before the first."""

    periods: tuple[int, ...] = ()
    swept_to: int | None = None


def cadence_windows(after: int | None, horizon: int, period: int) -> list[tuple[int, int]]:
    """The phases (seconds into `period`, both bounds included) a sweep reads so that every moment in
    (`after`, `horizon`] (epoch seconds) is covered: one range, two when the window wraps around the period, the
    whole period when `after` is None (no sweep recorded) or at least a period back (missed sweeps), none when
    `after >= horizon` (a sweep already covered it)."""
    if after is None or horizon - after >= period:
        return [(0, period - 1)]
    if after >= horizon:
        return []
    low, high = (after + 1) % period, horizon % period
    if low <= high:
        return [(low, high)]
    return [(low, period - 1), (0, high)]
