"""Which shards the sweep reads when `DUE_SHARDS` changes (issue 12, case 5): every shard an item can be in, at a
cost that returns to `DUE_SHARDS` shards once the higher ones are empty. The whole story, with workers, over
hours: tests/integration/test_resharding.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from oauth_keeper.adapters.connections import SHARD_SPAN_KEY, ConnectionStore
from oauth_keeper.domain.schedule import MAX_DUE_SHARDS, SHARD_AUDIT_INTERVAL, SHARD_PROBE_INTERVAL
from oauth_keeper.usecases.breaker import CircuitBreakers
from oauth_keeper.usecases.sweep import Sweep

from local.memory import ListQueue, ManualClock, MemoryItemStore

pytestmark = pytest.mark.unit
T0 = 1_800_000_000 - 1_800_000_000 % 3600 + 600  # ten minutes past an hour
HOUR, DAY, TICK = 3600, 86_400, 300


class CountingItems(MemoryItemStore):
    """The in-memory table, counting what a sweep asks of it (each Query costs at least half a read unit)."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0
        self.gets = 0

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self.queries += 1
        return super().query(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        self.gets += 1
        return super().get(*args, **kwargs)


class Table:
    """One Connections table, written and swept by deployments with different shard counts."""

    def __init__(self) -> None:
        self.items = CountingItems()
        self.clock = ManualClock(T0)

    def store(self, shards: int) -> ConnectionStore:
        return ConnectionStore(self.items, cipher=None, due_shards=shards)  # type: ignore[arg-type] - no tokens here

    def write(self, shards: int, count: int, *, due_in: int = 0, pending: bool = False,
              prefix: str = "con_") -> list[str]:
        """`count` items as a deployment with `shards` writes them: due in `due_in` seconds (or events waiting)."""
        store, ids = self.store(shards), []
        for n in range(count):
            cid = f"{prefix}{shards}_{n}_{len(self.items.items())}"
            attributes = {"outbox_shard": store.shard_of(cid), "ob_e1": "{}"} if pending else \
                store.schedule_attributes(cid, self.now + due_in)
            self.items.update(cid, set={"provider": "tiktok", **attributes}, expect={})
            ids.append(cid)
        return ids

    def rewrite(self, shards: int, ids: list[str], *, due_in: int) -> None:
        """What a refresh does to each: plans it again, in its shard under today's count."""
        store = self.store(shards)
        for cid in ids:
            self.items.update(cid, set=store.schedule_attributes(cid, self.now + due_in), expect={})

    def sweep(self, shards: int, queue: ListQueue | None = None, **kwargs: Any) -> set[str]:
        queue = queue if queue is not None else ListQueue()
        Sweep(self.store(shards), queue, self.clock, TICK, **kwargs).run()
        return set(queue.messages)

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def span(self) -> int:
        return self.items.get(SHARD_SPAN_KEY)["shards"]

    def high(self, ids: list[str], shards: int) -> list[str]:
        return [cid for cid in ids if self.store(16).items.get(cid)["due_shard" if "due_shard" in
                                                                     self.items.get(cid) else "outbox_shard"] >= shards]


@pytest.fixture
def table() -> Table:
    return Table()


@pytest.mark.parametrize("swept_before", [True, False], ids=["swept at 16 before", "lowered with the upgrade"])
def test_after_lowering_16_to_8_the_first_sweep_finds_everything(table, swept_before):
    if swept_before:
        table.sweep(16)
    due = table.write(16, 200)
    pending = table.write(16, 40, pending=True)
    orphans = table.write(16, 10, prefix="orphan#")
    assert table.high(due, 8) and table.high(pending, 8) and table.high(orphans, 8)
    assert table.sweep(8) == {*due, *pending, *orphans}


def test_raising_8_to_32_finds_everything(table):
    """A regression test: this always held (a raise strands nothing), and must go on holding."""
    table.sweep(8)
    due, pending = table.write(8, 200), table.write(8, 40, pending=True)
    assert table.sweep(32) == {*due, *pending}


def test_the_higher_shards_are_read_until_two_probes_an_hour_apart_find_them_empty(table):
    table.sweep(16)
    later = table.write(16, 100, due_in=5 * HOUR)  # refreshed hours from now, by then under the new count
    table.sweep(8)
    assert table.span() == 16
    table.clock.advance(5 * HOUR)
    assert table.sweep(8) == set(later)  # still found where they were written
    table.rewrite(8, later, due_in=DAY)  # each refresh plans it again in a shard below 8
    table.clock.advance(HOUR)
    table.sweep(8)
    assert table.span() == 16  # the first probe to see the higher shards empty lowers nothing yet
    straggler: list[str] = []  # a function still running with 16 writes another item, in a higher shard
    while not table.high(straggler, 8):
        straggler += table.write(16, 1, prefix="orphan#")
    table.clock.advance(HOUR)
    assert table.sweep(8) == set(straggler)
    assert table.span() > 8
    table.rewrite(8, straggler, due_in=HOUR)  # its retry planned under the new count
    for _ in range(2):
        table.clock.advance(HOUR)
        table.sweep(8)
    assert table.span() == 8


def test_an_item_above_the_recorded_span_is_found_by_the_daily_audit(table):
    """A raise to 32 that was rolled back before the sweeper ever ran with it left items above 8."""
    table.sweep(8)
    table.clock.advance(HOUR)
    table.sweep(8)  # the first audit's repeat
    assert table.span() == 8
    stranded = table.high(table.write(32, 20, due_in=2 * HOUR), 8)
    found: set[str] = set()
    for _ in range(DAY // TICK):
        table.clock.advance(TICK)
        found |= table.sweep(8)
    assert set(stranded) <= found and table.span() > 8


def test_the_first_sweep_of_this_version_finds_items_in_any_shard_a_deployment_could_use(table):
    top = table.store(MAX_DUE_SHARDS)
    cid = next(f"con_{n}" for n in range(10_000) if top.shard_of(f"con_{n}") == MAX_DUE_SHARDS - 1)
    table.items.update(cid, set=top.schedule_attributes(cid, table.now), expect={})
    assert table.sweep(16) == {cid}
    assert table.span() == MAX_DUE_SHARDS


def test_a_sweep_that_dies_after_lowering_leaves_nothing_for_the_next(table):
    table.sweep(16)
    due = table.write(16, 50)

    class Refusing(ListQueue):
        def send(self, connection_ids, *, force=False, due_by=None):
            raise RuntimeError("SQS refused the batch")

    with pytest.raises(RuntimeError):
        table.sweep(8, Refusing())
    assert table.sweep(8) == set(due)


def test_a_sweep_that_dies_before_recording_its_probe_probes_again(table, monkeypatch):
    table.sweep(16)
    later = table.write(16, 50, due_in=2 * HOUR)
    table.rewrite(8, later, due_in=2 * HOUR)
    real_update = table.items.update

    def dies(key, **kwargs):
        if key == SHARD_SPAN_KEY:
            raise TimeoutError("the function timed out")
        return real_update(key, **kwargs)

    table.sweep(8)
    table.clock.advance(HOUR)
    monkeypatch.setattr(table.items, "update", dies)
    with pytest.raises(TimeoutError):
        table.sweep(8)
    monkeypatch.setattr(table.items, "update", real_update)
    before = table.items.get(SHARD_SPAN_KEY)
    table.sweep(8)
    after = table.items.get(SHARD_SPAN_KEY)
    assert after["probed_at"] > before["probed_at"]


def test_two_sweeps_racing_keep_the_record_of_the_first(table):
    store = table.store(16)
    table.sweep(16)
    span = store.shard_span()
    assert store.save_shard_span(span.__class__(32, 32, table.now, span.audit_at), replacing=span)
    assert not store.save_shard_span(span.__class__(8, 8, table.now, span.audit_at), replacing=span)
    assert table.span() == 32


def test_parked_connections_in_the_higher_shards_are_probed_and_resumed(table):
    breakers = CircuitBreakers(table.items, table.clock.now)
    table.sweep(16)
    base = table.now + 30 * DAY
    parked = table.write(16, 40, due_in=base - table.now)
    high = table.high(parked, 8)
    for cid in parked:
        if cid not in high:
            table.items.update(cid, set={"provider": "acme"}, expect={})  # another provider's, same range
    table.items.update(CircuitBreakers.key("tiktok"), set={"open_until": table.now - 1, "cause": "outage",
                                                           "since": table.now - HOUR, "park_base": base}, expect={})
    queue = ListQueue()
    table.sweep(8, queue, breakers=breakers, providers=("tiktok",))
    assert queue.forced == [True] and queue.messages[0] in high  # the probe: tiktok's only parked ones are high
    table.items.update(CircuitBreakers.key("tiktok"), set={"open_until": None, "resume_until": table.now + HOUR},
                       expect={})
    table.clock.advance(10)
    assert table.sweep(8, breakers=CircuitBreakers(table.items, table.clock.now), providers=("tiktok",)) \
        == set(parked)


def test_what_a_sweep_reads_once_the_higher_shards_are_empty(table):
    """Measured: queries and GetItems per tick at 16 shards over a day of 5-minute ticks, and after lowering."""

    def day_of_ticks(shards: int) -> tuple[list[int], int]:
        per_tick, gets = [], table.items.gets
        for _ in range(DAY // TICK):
            before = table.items.queries
            table.sweep(shards)
            per_tick.append(table.items.queries - before)
            table.clock.advance(TICK)
        return per_tick, table.items.gets - gets

    table.sweep(16)  # the first sweep of this version audits every shard, and again an hour later
    table.clock.advance(HOUR)
    table.sweep(16)
    table.clock.advance(TICK)
    per_tick, gets = day_of_ticks(16)
    hourly = 16  # the first tick of each hour looks for plans stored implausibly far ahead: a Due query a shard
    audit = 2 * (MAX_DUE_SHARDS - 16)  # two queries (Due, Outbox) for each shard above 16, once a day
    assert Counter(per_tick) == {32: DAY // TICK - 25, 32 + hourly: 24, 32 + audit: 1}
    assert gets == DAY // TICK  # the span record, once a tick

    later = table.write(16, 100, due_in=HOUR)
    table.clock.advance(HOUR)
    table.rewrite(8, later, due_in=DAY)
    per_tick, _ = day_of_ticks(8)
    assert per_tick[-1] == 16  # two probes later the sweep reads 8 shards again
    assert SHARD_PROBE_INTERVAL == HOUR and SHARD_AUDIT_INTERVAL == DAY


