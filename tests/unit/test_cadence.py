"""The Cadence index (ADR 0023): an ordinary eager refresh writes no index key, and the sweep still finds every
connection in time.

The sweep window is checked against a brute-force oracle over simulated time (random periods, phases, shards and
sweep times, missed sweeps and wrap-around included): after every tick, no connection planned up to that tick's
horizon is left unrefreshed. The refresher's side runs in the simulated world: the families a connection moves
between, the early id answered `not_due`, the rollback switch, and items an older version wrote.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.domain.schedule import cadence_period, cadence_windows, on_cadence
from oauth_keeper.usecases.refresh import NOT_DUE, REFRESHED
from oauth_keeper.usecases.sweep import Sweep

from local.memory import ListQueue, ManualClock, MemoryItemStore
from local.simulation import World

pytestmark = pytest.mark.unit

T0 = 1_800_000_000


# ---- the window, against brute force ---------------------------------------------------------------------------

@given(period=st.integers(240, 6000), after=st.integers(0, 20_000) | st.none(), length=st.integers(-50, 13_000))
@settings(max_examples=300, deadline=None)
def test_the_phase_window_holds_exactly_the_phases_of_the_moments_since_the_last_sweep(period, after, length):
    horizon = T0 + (after or 0) + length
    start = None if after is None else T0 + after
    covered = {p for low, high in cadence_windows(start, horizon, period) for p in range(low, high + 1)}
    expected = set(range(period)) if start is None else {t % period for t in range(start + 1, horizon + 1)}
    assert covered == expected


# ---- the sweep over simulated time -----------------------------------------------------------------------------

class _Table:
    """Connections on their cadence in a memory table, swept by the real Sweep and refreshed by a stand-in worker
    that does what the refresher's commit does to the schedule."""

    def __init__(self, rng: random.Random, shards: int, interval: int) -> None:
        self.items = MemoryItemStore()
        self.clock = ManualClock(T0)
        self.store = ConnectionStore(self.items, cipher=None, due_shards=shards)  # type: ignore[arg-type]
        self.interval = interval
        self.queue = ListQueue()
        self.sweep = Sweep(self.store, self.queue, self.clock, interval)
        self.periods: dict[str, int] = {}
        self.issued: dict[str, int] = {}
        self.early = 0
        self.rng = rng

    def add(self, cid: str, period: int, planned: int) -> None:
        self.periods[cid] = period
        self.issued[cid] = planned - period
        self.items.update(cid, set=self.store.schedule_attributes(cid, planned, period=period), expect={})

    def tick(self) -> int:
        """One sweep and the worker pass over what it queued; returns the horizon swept."""
        now = int(self.clock.now())
        horizon = now + self.interval
        self.sweep.run()
        sent, self.queue.messages, self.queue.forced = self.queue.messages, [], []
        for cid in sent:
            item = self.items.get(cid)
            if item["next_refresh_at"] > horizon:  # the worker re-reads: an early id is not_due
                self.early += 1
                continue
            period = self.periods[cid]
            assert item["next_refresh_at"] - self.issued[cid] <= period + self.interval  # the token's age bound
            issued = now + self.rng.randint(0, 5)  # the provider's answer, seconds after the sweep
            moment = on_cadence(item["next_refresh_at"], period, issued, self.interval)
            current = SimpleNamespace(cadence_shard=item.get("cadence_shard"), cadence_phase=item.get("cadence_phase"))
            planned = moment if moment is not None else issued + period - self.rng.randint(0, 120)
            self.items.update(cid, set=self.store.schedule_attributes(cid, planned, period=period,
                                                                      current=current), expect={})
            self.issued[cid] = issued
        return horizon

    def overdue(self, horizon: int) -> list[str]:
        return [i["connection_id"] for i in self.items.items()
                if "next_refresh_at" in i and i["next_refresh_at"] <= horizon]


@given(seed=st.integers(0, 2**32 - 1), interval_minutes=st.sampled_from([1, 5, 15]),
       shards=st.integers(1, 5), ticks=st.integers(10, 60))
@settings(max_examples=60, deadline=None)
def test_no_due_connection_is_ever_left_unswept_over_simulated_time(seed, interval_minutes, shards, ticks):
    rng = random.Random(seed)  # noqa: S311 - test data
    interval = 60 * interval_minutes
    table = _Table(rng, shards, interval)
    periods = [p for p in (4 * interval, 5760, 2640, 2700, 7 * 3600) if p >= 4 * interval] or [4 * interval]
    for n in range(40):
        period = rng.choice(periods)
        table.add(f"con_{n}", period, T0 + rng.randint(1, period))
    swept = 0
    for _ in range(ticks):
        horizon = table.tick()
        swept += 1
        assert table.overdue(horizon) == []  # everything planned up to this horizon was sent and refreshed
        # The next sweep comes after one interval, or later: missed sweeps (up to more than a whole period).
        gap = rng.choice([1, 1, 1, 1, 2, 3, 7, 40])
        table.clock.advance(gap * interval + rng.choice([0, 0, 1, -1]))
    assert swept == ticks


def test_a_sweep_that_raises_before_queueing_leaves_its_window_to_the_next():
    table = _Table(random.Random(1), 2, 300)
    table.add("con_a", 5760, T0 + 200)
    table.sweep.run()  # records the horizon covered
    table.queue.messages.clear()
    table.clock.advance(5760)

    class Refusing(ListQueue):
        def send(self, ids: list[str], *, force: bool = False, due_by: int | None = None) -> int:
            raise RuntimeError("SQS refused")

    failing = Sweep(table.store, Refusing(), table.clock, 300)
    with pytest.raises(RuntimeError):
        failing.run()
    table.clock.advance(300)
    table.sweep.run()  # the window starts where the last sweep that queued ended
    assert "con_a" in table.queue.messages


# ---- the refresher in the simulated world ----------------------------------------------------------------------

def _item(world: World, cid: str) -> dict[str, Any]:
    return world.store.items.get(cid)


def _refresh_when_due(world: World, cid: str) -> Any:
    world.clock.advance(max(0, _item(world, cid)["next_refresh_at"] - world.clock.now()))
    return world.services.refresher.refresh(cid)


def test_the_first_refresh_moves_a_connection_onto_its_cadence_and_the_next_keeps_its_phase():
    world = World.create()
    cid = world.connect("ann").connection_id
    assert _item(world, cid).get("due_shard") is not None  # connected: in the Due index
    assert _refresh_when_due(world, cid).result == REFRESHED
    item = _item(world, cid)
    period = int(item["cadence_shard"].split("#")[0])
    assert "due_shard" not in item and period == 5760  # 2 h tokens: 96 minutes
    assert item["cadence_phase"] == item["next_refresh_at"] % period
    before = item["next_refresh_at"]
    for _ in range(5):
        world.clock.advance(-world.services.settings.sweep_interval // 2)  # sent up to an interval early
        outcome = _refresh_when_due(world, cid)
        assert outcome.result == REFRESHED
        after = _item(world, cid)
        assert after["next_refresh_at"] == before + period  # the previous plan + one period: no drift
        assert (after["cadence_shard"], after["cadence_phase"]) == (item["cadence_shard"], item["cadence_phase"])
        assert after["next_refresh_at"] <= after["access_expires_at"] - 900 + world.services.settings.sweep_interval
        before = after["next_refresh_at"]


def test_an_early_id_is_answered_not_due_and_nothing_is_written():
    world = World.create()
    cid = world.connect("ann").connection_id
    _refresh_when_due(world, cid)
    item = _item(world, cid)
    assert world.services.refresher.refresh(cid).result == NOT_DUE
    assert _item(world, cid)["revision"] == item["revision"] and _item(world, cid)["tokens"] == item["tokens"]


def test_a_failed_refresh_moves_the_connection_to_the_due_index_and_a_success_moves_it_back():
    world = World.create()
    cid = world.connect("ann").connection_id
    _refresh_when_due(world, cid)
    world.tiktok.fail_next(1, "5xx")
    _refresh_when_due(world, cid)
    retrying = _item(world, cid)
    assert retrying.get("due_shard") is not None and "cadence_shard" not in retrying  # backoff: the Due index
    assert _refresh_when_due(world, cid).result == REFRESHED
    assert _item(world, cid).get("cadence_shard") is not None and "due_shard" not in _item(world, cid)


def test_schedule_index_due_moves_connections_back_to_the_due_index_at_their_next_refresh():
    world = World.create()
    ids = [world.connect(f"u{n}", owner_id=f"o{n}").connection_id for n in range(3)]
    for _ in range(40):
        world.tick()
    assert all(_item(world, cid).get("cadence_shard") for cid in ids)
    world.redeploy(schedule_index="due")  # before rolling back to a version that reads only the Due index
    for _ in range(6 * 96 // 5 // 5):  # a little over one period of 5-minute sweeps
        world.tick()
    for cid in ids:
        item = _item(world, cid)
        assert item.get("due_shard") is not None and "cadence_shard" not in item and "cadence_phase" not in item
    assert world.statuses() == {"active": 3}


def test_items_written_before_the_cadence_index_are_swept_through_due_and_move_at_their_next_refresh():
    world = World.create()
    cid = world.connect("ann").connection_id
    legacy = _item(world, cid)
    assert set(legacy) >= {"due_shard", "next_refresh_at"} and "cadence_shard" not in legacy  # as before
    for _ in range(30):
        world.tick()
    item = _item(world, cid)
    assert item["last_refresh_outcome"] == "succeeded" and item.get("cadence_shard") and "due_shard" not in item


def test_a_plan_an_older_version_rewrote_is_re_phased_not_trusted():
    world = World.create()
    cid = world.connect("ann").connection_id
    _refresh_when_due(world, cid)
    item = _item(world, cid)
    # A version before the Cadence index refreshed it: a new next_refresh_at and due_shard, the stale family kept.
    moved = item["next_refresh_at"] + 1234
    world.store.items.update(cid, set={"next_refresh_at": moved, "due_shard": 3}, expect={})
    assert _refresh_when_due(world, cid).result == REFRESHED
    after = _item(world, cid)
    period = int(after["cadence_shard"].split("#")[0])
    assert after["cadence_phase"] == after["next_refresh_at"] % period  # the index agrees with the plan again
    assert "due_shard" not in after


def test_periods_outside_the_cadence_stay_in_the_due_index():
    assert cadence_period(T0, T0 + 7200, 300) == 5760
    assert cadence_period(T0, T0 + 3599, 300) == 2640  # Google's hour, a second short: minutes, rounded down
    assert cadence_period(T0, T0 + 60 * 86_400, 300) is None  # a refresh every 48 days: not worth a family
    assert cadence_period(T0, T0 + 3600, 3600) is None  # hourly sweeps: the margin would not cover one
    assert cadence_period(T0, None, 300) is None


def test_a_commit_after_a_reconnect_moved_the_schedule_still_leaves_the_connection_in_an_index():
    world = World.create()
    cid = world.connect("ann").connection_id
    _refresh_when_due(world, cid)  # on its cadence
    item = _item(world, cid)
    world.clock.advance(item["next_refresh_at"] - world.clock.now())
    store, refresher = world.store, world.services.refresher
    apply = store.apply
    moved = {"done": False}

    def reconnect_first(connection, changes, **kwargs):  # noqa: ANN001, ANN202 - a write lands before the commit
        if "tokens" in changes and not moved["done"]:
            moved["done"] = True
            # What a reconnect keeping our lease writes: a new revision and token version, the plan in Due.
            world.store.items.update(cid, set={**store.schedule_attributes(cid, int(world.clock.now()) + 3600)},
                                     add={"revision": 1, "token_version": 1}, expect={})
        return apply(connection, changes, **kwargs)

    store.apply = reconnect_first  # type: ignore[method-assign]
    assert refresher.refresh(cid).result == REFRESHED
    after = _item(world, cid)
    assert after.get("due_shard") is not None or after.get("cadence_shard") is not None  # never in neither
    if after.get("cadence_shard"):
        assert after["cadence_phase"] == after["next_refresh_at"] % int(after["cadence_shard"].split("#")[0])
