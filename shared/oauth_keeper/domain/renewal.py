"""How a profile's refresh strategy and timing rules shape a grant: its end, its next refresh, its minimum age.

Pure functions over epoch seconds. The refresher and the connect flow call them, so no provider name and no
strategy-specific branch lives in the use cases beyond "which stored token renews the grant".
"""

from __future__ import annotations

import random

from .providers import ProviderProfile
from .schedule import (
    DEFAULT_READ_WINDOW,
    MAX_JITTER,
    cadence_period,
    effective_policy,
    on_cadence,
    plan_next_refresh,
    refresh_margin,
)
from .tokens import TokenSet


def grant_end(profile: ProviderProfile, *, end: int | None, answer: TokenSet, connected_at: int | None) -> int | None:
    """When the grant ends unless renewed, after `answer` (epoch seconds; None: no known end).

    `end` is the end as the caller worked it out from the answer's refresh-token lifetime (or kept from before).
    - `extend` and `re_exchange`: the access token renews the grant, so the grant ends with it.
    - `timing.disuse_expiry`: an answer that reports no refresh lifetime moves the end to `disuse_expiry` after
      this refresh (Google's 6 months unused, Pinterest's 60 days): each refresh is a use.
    - a hard cap (`timing.hard_cap`, or the app status's, e.g. Google Testing's 7 days) counted from
      `connected_at` (consent) bounds it whatever the provider says: refreshing never moves it."""
    if profile.refreshes_with_access_token:
        end = answer.access_expires_at
    elif profile.timing.disuse_expiry and answer.refresh_expires_at is None:
        end = answer.issued_at + profile.timing.disuse_expiry
    cap = profile.timing.effective_cap
    if cap and connected_at is not None:
        end = min(end, connected_at + cap) if end else connected_at + cap
    return end


def earliest_renewal(profile: ProviderProfile, issued_at: int | None) -> int | None:
    """The first moment a token issued at `issued_at` may be sent to be renewed (`timing.min_token_age`: Meta
    refuses to extend a token younger than 24 h), or None when any moment will do."""
    if not profile.timing.min_token_age or issued_at is None:
        return None
    return issued_at + profile.timing.min_token_age


def plan(profile: ProviderProfile, *, issued_at: int, access_expires_at: int | None, refresh_expires_at: int | None,
         expiry_warning: int, rng: random.Random | None = None, last_read_at: int | None = None,
         now: int | None = None, read_window: int = DEFAULT_READ_WINDOW) -> int:
    """When the sweep should next look at the connection (epoch seconds), under the profile's refresh policy as
    it applies to this connection at `now` (default `issued_at`): `adaptive` is eager when the token was read
    recently (`last_read_at` within `read_window` seconds, see `schedule.effective_policy`), else on_demand.
    `schedule.plan_next_refresh`, then
    - never before the token is old enough to be renewed (`timing.min_token_age`), unless the grant ends first;
    - with a hard cap, also `expiry_warning` seconds before the grant's end, so Connection Expiring is sent
      ahead of it even when the access token outlives that moment."""
    policy = effective_policy(profile.refresh_policy, last_read_at=last_read_at,
                              now=issued_at if now is None else now, window=read_window)
    planned = plan_next_refresh(policy, issued_at=issued_at, access_expires_at=access_expires_at,
                                refresh_expires_at=refresh_expires_at, rng=rng)
    if profile.timing.effective_cap and refresh_expires_at:
        warn_at = refresh_expires_at - expiry_warning
        if warn_at > issued_at:
            planned = min(planned, warn_at)
    not_before = earliest_renewal(profile, issued_at)
    if not_before is not None and planned < not_before:
        planned = not_before if refresh_expires_at is None else min(not_before, refresh_expires_at)
    return planned


def cadence_plan(profile: ProviderProfile, *, planned: int, policy: str, issued_at: int,
                 access_expires_at: int | None, refresh_expires_at: int | None, expiry_warning: int,
                 sweep_interval: int, previous: int | None, previous_period: int | None) -> tuple[int, int] | None:
    """The next refresh on a cadence (ADR 0023), as (moment in epoch seconds, period in seconds), or None when the
    connection belongs in the Due index.

    Only an eager refresh (`policy` as `schedule.effective_policy` resolved it) whose `plan` (`planned`) is the
    ordinary one, access lifetime less the margin and jitter, goes on a cadence: not a plan the grant's end, its
    expiry warning or the token's minimum age moved, nor a period `schedule.cadence_period` refuses. A
    connection already in the family of that period (`previous_period`, its stored plan `previous`) keeps its
    phase (`schedule.on_cadence`: the stored plan plus whole periods); any other enters at `planned`, whose
    jitter gives it its phase. Never later than the grant's end (less the expiry warning under a hard cap)."""
    if policy != "eager" or access_expires_at is None:
        return None
    period = cadence_period(issued_at, access_expires_at, sweep_interval)
    if period is None:
        return None
    ordinary = access_expires_at - refresh_margin(access_expires_at - issued_at)
    if not ordinary - MAX_JITTER <= planned <= ordinary:
        return None
    moment = on_cadence(previous, period, issued_at, sweep_interval) \
        if previous is not None and previous_period == period else None
    moment = planned if moment is None else moment
    if refresh_expires_at is not None:
        bound = refresh_expires_at - (expiry_warning if profile.timing.effective_cap else 0)
        if moment > bound:
            return None
    return moment, period
