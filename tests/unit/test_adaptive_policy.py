"""The `adaptive` refresh policy (ADR 0026): connections whose token was read within the window are kept fresh
eagerly, the others get the on_demand keep-alive; a read is recorded at most once per connection per window; an
idle connection's first read after its token expired costs one synchronous refresh and puts it back on the eager
schedule. All in simulated time (the provider world's clock), never sleeping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oauth_keeper.domain.providers import REFRESH_POLICIES, profile_from_data
from oauth_keeper.domain.renewal import plan
from oauth_keeper.domain.schedule import (
    KEEPALIVE_INTERVAL,
    effective_policy,
    read_mark_due,
    recently_read,
)
from oauth_keeper.ports import MISSING, NotAfter
from oauth_keeper.settings import Settings

from local.memory import MemoryItemStore
from local.provider_world import ProviderWorld
from local.sim_provider import DAY

pytestmark = pytest.mark.unit

HOUR = 3600
WINDOW = DAY  # ADAPTIVE_READ_WINDOW's default
# A made-up provider with 2 h access tokens and strict rotation (the hardest case), under `adaptive`.
BRISK = {"name": "brisk", "display_name": "Brisk", "authorize_url": "https://auth.test/authorize",
         "token_url": "https://auth.test/token", "revoke_url": None, "userinfo_url": None,
         "pkce_support": "required", "scope_separator": " ", "default_scopes": ["post"],
         "refresh_strategy": "rotating", "refresh_policy": "adaptive", "token_fields": {"account_id": "open_id"},
         "access_lifetime": {"minimum": 60, "maximum": DAY, "fallback": 7200},
         "refresh_lifetime": {"minimum": 60, "maximum": 400 * DAY, "fallback": 365 * DAY}}


# -- the planning, as a property over read times and windows ---------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(window=st.integers(HOUR, 30 * DAY), since_read=st.one_of(st.none(), st.integers(0, 90 * DAY)),
       lifetime=st.integers(600, 2 * DAY))
def test_a_connection_read_within_the_window_is_planned_eagerly_one_unread_for_two_is_kept_alive(
        window, since_read, lifetime):
    profile = profile_from_data(BRISK)
    now = 1_800_000_000
    last_read = None if since_read is None else now - since_read
    kwargs = {"issued_at": now, "access_expires_at": now + lifetime, "refresh_expires_at": now + 365 * DAY,
              "expiry_warning": 14 * DAY}
    planned = plan(profile, **kwargs, rng=_NoJitter(), last_read_at=last_read, now=now, read_window=window)
    eager = plan(profile_from_data({**BRISK, "refresh_policy": "eager"}), **kwargs, rng=_NoJitter())
    kept_alive = plan(profile_from_data({**BRISK, "refresh_policy": "on_demand"}), **kwargs, rng=_NoJitter())
    if since_read is not None and since_read < window:
        assert planned == eager  # read within the window: fresh ahead of expiry
    elif since_read is None or since_read >= 2 * window:
        assert planned == kept_alive == now + KEEPALIVE_INTERVAL  # idle (never read counts as idle)
    else:
        assert planned in (eager, kept_alive)


@settings(max_examples=200, deadline=None)
@given(window=st.integers(HOUR, 7 * DAY),
       gaps=st.lists(st.integers(0, 3 * DAY), min_size=1, max_size=60))
def test_recording_reads_writes_at_most_once_a_window_and_every_read_keeps_the_connection_hot_a_window(
        window, gaps):
    """The token route's rule over any sequence of reads: writes <= windows spanned + 1, and for a whole window
    after any read the stored mark says 'read recently'."""
    stored, writes, t, reads = None, [], 0, []
    for gap in gaps:
        t += gap
        reads.append(t)
        if read_mark_due(stored, t, window):
            stored = t
            writes.append(t)
        # just after this read and until a window later, the connection counts as read within the window
        assert recently_read(stored, t, window) and recently_read(stored, t + window - 1, window)
    assert all(b - a >= window for a, b in zip(writes, writes[1:], strict=False))  # <= 1 write per window
    assert len(writes) <= (reads[-1] - reads[0]) // window + 1
    assert not recently_read(stored, reads[-1] + 2 * window, window)  # two windows unread: idle for sure


def test_adaptive_is_one_of_the_policies_and_the_others_mean_themselves():
    assert "adaptive" in REFRESH_POLICIES
    assert effective_policy("eager", last_read_at=None, now=0, window=DAY) == "eager"
    assert effective_policy("on_demand", last_read_at=0, now=0, window=DAY) == "on_demand"
    assert effective_policy("adaptive", last_read_at=0, now=HOUR, window=DAY) == "eager"
    assert effective_policy("adaptive", last_read_at=None, now=HOUR, window=DAY) == "on_demand"


# -- the token route, over simulated days ------------------------------------------------------------------------
def brisk_world(**options: Any) -> ProviderWorld:
    return ProviderWorld.create(BRISK, **options)


def connected(world: ProviderWorld) -> str:
    result = world.connect("alice")
    assert result["status"] == "connected", result
    return result["connection_id"]


def count_read_writes(world: ProviderWorld) -> list[dict[str, Any]]:
    """Every UpdateItem that writes `last_read_at`, attempted (a failed condition is billed too), with its outcome."""
    items = world.services.connections.items
    seen: list[dict[str, Any]] = []
    update = items.update

    def counting(key, *, set, remove=(), expect, **more):  # noqa: A002 - the port's parameter name
        result = update(key, set=set, remove=remove, expect=expect, **more)  # `add`, `returning` (the lease)
        if "last_read_at" in set:
            seen.append({"set": set, "ok": bool(result)})
        return result

    items.update = counting  # type: ignore[method-assign]
    return seen


def refreshes(world: ProviderWorld) -> int:
    return len(world.provider.sent("refresh"))


def read(world: ProviderWorld, connection_id: str) -> dict[str, Any]:
    return world.services.tokens.token_for(connection_id, None)


def test_the_token_route_records_a_read_at_most_once_per_connection_per_window():
    world = brisk_world()
    cid = connected(world)
    writes = count_read_writes(world)
    start = world.clock.now()
    for _ in range(3 * 24 * 4):  # a read every 15 minutes for three days, the worker refreshing meanwhile
        read(world, cid)
        world.run_until(world.clock.now() + 900)
    assert len(writes) == 3  # one per day-long window, though 288 reads were served
    marks = [w["set"]["last_read_at"] for w in writes]
    assert all(b - a >= WINDOW for a, b in zip(marks, marks[1:], strict=False))
    assert marks[0] == int(start)
    assert world.get(cid).last_read_at == marks[-1]


def test_an_idle_connections_first_read_refreshes_once_synchronously_then_it_stays_fresh():
    world = brisk_world()
    cid = connected(world)
    world.run_until(world.clock.now() + 3 * DAY)  # never read: only the daily keep-alive
    idle_refreshes = refreshes(world)
    assert idle_refreshes <= 4  # (eager would have refreshed ~45 times in 3 days)
    world.clock.advance(2 * DAY - 1)  # ...so its 2 h access token has long expired
    assert world.get(cid).access_expires_at < world.clock.now()

    before = refreshes(world)
    answer = read(world, cid)  # the first read after idleness
    assert refreshes(world) == before + 1  # one synchronous refresh, in the read
    assert answer["access_token"] == world.tokens(cid)["access_token"]
    # ...and it is back on the eager schedule: reads every 20 minutes for a day never wait for a refresh
    for _ in range(3 * 24):
        world.run_until(world.clock.now() + 1200)
        connection = world.get(cid)
        assert connection.access_expires_at - world.clock.now() > 300, "a read would refresh synchronously"
        in_read = refreshes(world)
        read(world, cid)
        assert refreshes(world) == in_read  # served from the stored token: the worker keeps it fresh
    assert refreshes(world) - before >= 12  # ~every 96 minutes, by the worker


def test_a_still_valid_read_of_an_idle_connection_puts_it_back_on_the_eager_schedule_in_the_same_write():
    world = brisk_world()
    cid = connected(world)
    keep_alive = world.get(cid).next_refresh_at
    assert keep_alive >= world.clock.now() + KEEPALIVE_INTERVAL - 120  # never read: planned as idle
    writes = count_read_writes(world)
    read(world, cid)  # the connect's token is still valid: no refresh
    assert refreshes(world) == 0
    (write,) = writes
    connection = world.get(cid)
    assert connection.next_refresh_at == write["set"]["next_refresh_at"] < connection.access_expires_at
    assert connection.last_read_at == int(world.clock.now())
    read(world, cid)  # within the window and already eager: nothing written
    assert len(writes) == 1


def test_a_read_never_moves_the_plan_of_a_failing_connection_it_only_records_the_read():
    world = brisk_world()
    cid = connected(world)
    store = world.services.connections
    backoff = int(world.clock.now()) + 3 * DAY  # as a retry's backoff or a held grant would plan it
    store.apply(world.get(cid), {"failures": 1, **store.schedule_attributes(cid, backoff)})
    read(world, cid)
    connection = world.get(cid)
    assert connection.next_refresh_at == backoff  # the refresher's decision stands
    assert connection.last_read_at == int(world.clock.now())


def test_a_hot_connection_idling_past_the_window_falls_back_to_the_daily_keep_alive():
    world = brisk_world()
    cid = connected(world)
    read(world, cid)
    world.run_until(world.clock.now() + WINDOW)
    hot = refreshes(world)
    assert hot >= 12  # eager while read within the window (2 h tokens: every ~96 minutes)
    world.run_until(world.clock.now() + 3 * DAY)  # unread for two windows and more
    connection = world.get(cid)
    assert connection.next_refresh_at - connection.last_refresh_at >= KEEPALIVE_INTERVAL - 120
    later = refreshes(world)
    world.run_until(world.clock.now() + 3 * DAY)
    assert refreshes(world) - later <= 3  # one keep-alive a day
    assert connection.status == "active" and not world.events("Connection At Risk")  # expired access is normal


def test_a_read_that_cannot_be_recorded_is_served_all_the_same(monkeypatch):
    world = brisk_world()
    cid = connected(world)
    metrics: list[str] = []
    monkeypatch.setattr("oauth_keeper.usecases.tokens.record_metric", lambda name, *_: metrics.append(name))

    def throttled(*_args, **_kwargs):
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(world.services.connections, "record_read", throttled)
    answer = read(world, cid)
    assert answer["access_token"] == world.tokens(cid)["access_token"]
    assert "TokenReadsNotRecorded" in metrics and "TokenReads" in metrics
    assert world.get(cid).last_read_at is None


def test_other_policies_record_no_reads():
    world = brisk_world(overrides={"refresh_policy": "eager"})
    cid = connected(world)
    writes = count_read_writes(world)
    read(world, cid)
    assert writes == [] and world.get(cid).last_read_at is None


# -- the stored mark and its condition ----------------------------------------------------------------------------
def test_the_read_mark_is_written_only_when_absent_or_at_least_a_window_old():
    items = MemoryItemStore()
    items.update("c", set={"connection_id": "c"}, expect={})
    assert items.update("c", set={"last_read_at": 100}, expect={"last_read_at": NotAfter(100 - DAY)})
    assert not items.update("c", set={"last_read_at": 200}, expect={"last_read_at": NotAfter(200 - DAY)})
    assert items.update("c", set={"last_read_at": 100 + DAY}, expect={"last_read_at": NotAfter(100)})
    assert items.get("c")["last_read_at"] == 100 + DAY
    assert not items.update("gone", set={"last_read_at": 1}, expect={"connection_id": "gone"})
    assert items.get("gone") is None and MISSING is not None


def test_the_window_is_configured_in_seconds_within_bounds():
    env = {name: "x" for name in ("CONNECTIONS_TABLE", "FLOWS_TABLE", "TOKEN_KEY_ARN", "OWNER_KEY_ARN",
                                  "EVENT_BUS_NAME", "REFRESH_QUEUE_URL", "STACK_NAME")}
    assert Settings.from_env(env).adaptive_read_window == DAY
    assert Settings.from_env({**env, "ADAPTIVE_READ_WINDOW": "7200"}).adaptive_read_window == 7200
    assert Settings.from_env({**env, "TIKTOK_REFRESH_POLICY": "adaptive"}).provider_overrides == {
        "tiktok": {"refresh_policy": "adaptive"}}
    for bad in ("59", "0", "-1", "1.5", str(31 * DAY)):
        with pytest.raises(Exception, match="ADAPTIVE_READ_WINDOW"):
            Settings.from_env({**env, "ADAPTIVE_READ_WINDOW": bad})


class _NoJitter:
    @staticmethod
    def randint(low: int, high: int) -> int:
        return low
