"""(g) The refresh policies measured at a stated usage mix, and the first read after idleness (ADR 0026).

Counted, not modelled: the simulated world (in-process TikTok with 2 h access tokens, in-memory table wrapped in
the pricing counters of local/bench/common.py) runs CONNECTIONS connections under each policy (`eager`,
`on_demand`, `adaptive`) through the real sweep, worker and token route: ACTIVE_SHARE of them have their token
read READS_PER_DAY times a day (the app posting), the rest are never read. After a warm-up day (connects, and
each active connection's first read after idleness), DAYS days are counted: refreshes by the worker, refreshes
inside a token read (synchronous), and the read-mark writes (`last_read_at`, failed conditions billed too).

Latency: a token read of an idle connection whose access token expired (one synchronous refresh) against a warm
read of a fresh token, in-process with LATENCY added to every token answer of the simulated TikTok (as in (c));
min/median/max over RUNS runs. No network to DynamoDB or KMS here: in AWS add their round trips (lease, commit,
read mark: ~3 writes; KMS Decrypt only on a cold data-key cache).
"""

from __future__ import annotations

import random
import statistics
import time
from functools import cache
from typing import Any

from local.bench import model
from local.bench.common import CountingItemStore, quiet, spread, table, world_services
from local.memory import MemoryItemStore
from local.simulation import World

CONNECTIONS = 100
ACTIVE_SHARE = 0.20  # the stated mix: 20% of connections have their token read daily
READS_PER_DAY = 3
DAYS = 2  # counted, after one warm-up day
RUNS = 5
LATENCY = 0.100  # seconds added to every token answer of the simulated TikTok (as in (c))
POLICIES = ("eager", "on_demand", "adaptive")
MILLION = 1_000_000
# (d)'s per-refresh totals as README "Benchmarks" publishes them ($ per million refreshes), for (g) run without
# (d): tests/unit/test_bench_model.py holds them equal to the README's table.
PUBLISHED_WORKER_PER_MILLION = 1.52
PUBLISHED_API_PER_MILLION = 6.03


def _read_times(rng: random.Random, active: list[str], days: int, start: float) -> list[tuple[float, str]]:
    """READS_PER_DAY reads a day per active connection at random times: (moment, connection id), in order."""
    reads = [(start + day * 86_400 + rng.uniform(0, 86_400), cid)
             for day in range(days) for cid in active for _ in range(READS_PER_DAY)]
    return sorted(reads)


@cache
def measure(policy: str) -> dict[str, Any]:
    """Per connection per day under `policy` at the stated mix: worker and synchronous refreshes, read-mark writes
    and their write units; the statuses at the end (all must stay active)."""
    world = World.create(policy=policy)
    counting = CountingItemStore(MemoryItemStore())
    services = world_services(world, items=counting, policy=policy)
    rng = random.Random(16)  # noqa: S311 - a reproducible usage pattern, not a secret
    with quiet():
        ids = []
        for i in range(CONNECTIONS):  # connects spread over two hours
            ids.append(world.connect(f"user{i}", owner_id=f"owner{i}").connection_id)
            world.clock.advance(7200 / CONNECTIONS)
    active = ids[: int(CONNECTIONS * ACTIVE_SHARE)]
    marks = {"writes": 0, "failed": 0, "wru": 0.0}
    in_reads = {"index_wru": 0.0}  # index write units during token reads: their marks and synchronous refreshes
    store = services.connections
    recorded = store.record_read

    def record_read(connection, now, **options):  # noqa: ANN001, ANN202 - a counting shim around the adapter
        _, units0 = counting.snapshot()
        written = recorded(connection, now, **options)
        _, units1 = counting.snapshot()
        marks["writes" if written else "failed"] += 1
        marks["wru"] += sum(v for k, v in (units1 - units0).items() if k.endswith("_write"))
        return written

    store.record_read = record_read  # type: ignore[method-assign]
    counted: dict[str, float] = {"worker": 0, "synchronous": 0, "reads": 0}
    start = world.clock.now() + 6 * 3600  # the app starts posting a few hours after the connects: idle first
    reads = _read_times(rng, active, 1 + DAYS, start)
    end = start + (1 + DAYS) * 86_400
    counting_from = start + 86_400
    marks_at_warmup: dict[str, float] = {}
    wakeups = 0  # synchronous refreshes in the warm-up day: each active connection's first read after idleness
    with quiet():
        while world.clock.now() < end:
            before = world.tiktok.stats["refresh_successes"]
            world.tick()  # a sweep, the worker over what it queued, then the clock moves one sweep interval
            worker = world.tiktok.stats["refresh_successes"] - before
            now = world.clock.now()
            synchronous = 0
            while reads and reads[0][0] <= now:
                _, cid = reads.pop(0)
                before = world.tiktok.stats["refresh_successes"]
                _, units0 = counting.snapshot()
                services.tokens.token_for(cid, None)
                _, units1 = counting.snapshot()
                in_reads["index_wru"] += sum(v for k, v in (units1 - units0).items() if _index_write(k))
                synchronous += world.tiktok.stats["refresh_successes"] - before
                counted["reads"] += now >= counting_from
            if now < counting_from:
                wakeups += synchronous
            else:
                if not marks_at_warmup:
                    marks_at_warmup = dict(marks)
                    reads_at_warmup = dict(in_reads)
                    _, units_at_warmup = counting.snapshot()
                counted["worker"] += worker
                counted["synchronous"] += synchronous
    statuses = world.statuses()
    if statuses != {"active": CONNECTIONS}:
        raise RuntimeError(f"unexpected statuses under {policy}: {statuses}")
    per = CONNECTIONS * DAYS
    _, units_at_end = counting.snapshot()
    # Index writes of the worker's refreshes (a token read's are in its marks and in the price of a synchronous
    # refresh): the Due moves of keep-alives and the moves between Due and a cadence; an eager refresh on its
    # cadence writes none (ADR 0023).
    index_wru = sum(v for k, v in (units_at_end - units_at_warmup).items() if _index_write(k)) \
        - (in_reads["index_wru"] - reads_at_warmup["index_wru"])
    return {
        "worker": counted["worker"] / per, "synchronous": counted["synchronous"] / per,
        "reads": counted["reads"] / per,
        "mark_writes": (marks["writes"] - marks_at_warmup.get("writes", 0)) / per,
        "mark_failed": (marks["failed"] - marks_at_warmup.get("failed", 0)) / per,
        "mark_wru": (marks["wru"] - marks_at_warmup.get("wru", 0)) / per,
        "worker_index_wru": index_wru / per,
        "wakeups_per_active": wakeups / max(1, len(active)),
    }


def _index_write(unit: str) -> bool:
    """A counter of the bench's CountingItemStore that is a schedule index's write units (the Outbox's belong to
    state changes, priced on their own)."""
    return unit.endswith("_write") and unit not in ("table_write", "Outbox_write")


def first_read_latency() -> dict[str, list[float]]:
    """Milliseconds of a token read: `idle` (expired access token: one synchronous refresh) and `warm` (a fresh
    token), RUNS of each, alternating, under `adaptive`, LATENCY added to each token answer."""
    world = World.create(policy="adaptive")
    services = world_services(world, policy="adaptive")
    out: dict[str, list[float]] = {"idle": [], "warm": []}
    with quiet():
        ids = [world.connect(f"user{i}", owner_id=f"owner{i}").connection_id for i in range(RUNS + 1)]
        services.tokens.token_for(ids[-1], None)  # warm-up: clients, profile, data key
        world.tiktok.latency = LATENCY
        world.clock.advance(3 * 86_400)  # idle for three days: every access token (2 h) long expired
        for cid in ids[:RUNS]:
            started = time.perf_counter()
            services.tokens.token_for(cid, None)  # the first read after idleness
            out["idle"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            services.tokens.token_for(cid, None)  # the next read: the token just refreshed
            out["warm"].append((time.perf_counter() - started) * 1000)
        world.tiktok.latency = 0.0
    return out


def monthly(counts: dict[str, Any], *, worker_per: float, api_per: float, fixed: float = 0.0) -> dict[str, float]:
    """Dollars a month for 1 M connections from measured per-connection-per-day counts and per-refresh prices."""
    prices = model.Prices()
    # `worker_per` is (d)'s price of a worker refresh on its cadence (no index write): the index writes of the
    # worker's refreshes are counted (`worker_index_wru`); `api_per` includes a synchronous refresh's Due move.
    per_connection = 30 * (counts["worker"] * worker_per + counts["synchronous"] * api_per
                           + (counts["mark_wru"] + counts.get("worker_index_wru", 0))
                           * prices.dynamodb_per_million_wru / MILLION)
    return {"refreshes": 30 * (counts["worker"] + counts["synchronous"]),
            "marks": 30 * counts["mark_wru"] * prices.dynamodb_per_million_wru, "total": MILLION * per_connection
            + fixed}


def main(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prints the measured policy table and the first-read latency; per-refresh prices from (d) when it ran in
    the same invocation, else (d)'s last published figures."""
    d = (previous or {}).get("d") or {}
    worker_per = d.get("worker_per_million", PUBLISHED_WORKER_PER_MILLION) / MILLION
    api_per = d.get("api_per_million", PUBLISHED_API_PER_MILLION) / MILLION
    source = "(d) of this run" if d else (f"(d)'s published figures (${PUBLISHED_WORKER_PER_MILLION:.2f} worker, "
                                          f"${PUBLISHED_API_PER_MILLION:.2f} in a token read)")
    print(f"{CONNECTIONS} connections, TikTok simulated (2 h access tokens), {ACTIVE_SHARE:.0%} read "
          f"{READS_PER_DAY}x a day, the rest never; {DAYS} days counted after a warm-up day. Priced per refresh "
          f"from {source}; read marks at $0.625 per million WRU.")
    rows, results = [], {}
    for policy in POLICIES:
        counts = measure(policy)
        cost = monthly(counts, worker_per=worker_per, api_per=api_per)
        results[policy] = {**counts, **cost}
        rows.append([policy, f"{counts['worker'] * 30:.1f}", f"{counts['synchronous'] * 30:.1f}",
                     f"{counts['mark_writes'] * 30:.2f} ({counts['mark_failed'] * 30:.2f} failed)",
                     f"{counts['mark_wru'] * 30:.2f}", f"${cost['marks']:,.0f}", f"${cost['total']:,.0f}"])
    print(table(["policy", "worker refreshes / connection / month", "synchronous (in a read)",
                 "read-mark writes", "read-mark WRU", "marks $ (1 M)", "refreshes + marks $ / month (1 M)"], rows))
    modelled = model.adaptive_refreshes_per_month(active_share=ACTIVE_SHARE)
    adaptive = results["adaptive"]
    print(f"Adaptive against its model (local/bench/model.py): worker refreshes {adaptive['worker'] * 30:.1f} "
          f"measured / {modelled['worker']:.1f} modelled a month; read marks {adaptive['mark_writes'] * 30:.2f} / "
          f"{modelled['read_marks']:.2f} (the flip back to eager moves the Due entry in the same write: "
          f"{adaptive['mark_wru'] * 30:.2f} WRU); first reads after idleness in the warm-up day: "
          f"{adaptive['wakeups_per_active']:.2f} synchronous refreshes per active connection (an active connection "
          "stays eager, so a steady mix wakes each once; (d) prices one wake-up per active connection a month).")
    print("Fixed costs (sweep reads, schedule, sweeper, idle polls, metrics, state changes) come on top: under $4 "
          "a month in (d).")
    latency = first_read_latency()
    idle, warm = latency["idle"], latency["warm"]
    ratios = [i / w for i, w in zip(idle, warm, strict=True)]
    print(f"\nToken read under adaptive, in-process, {LATENCY * 1000:.0f} ms added to each TikTok token answer, "
          f"{RUNS} runs: first read after idleness (one synchronous refresh) {spread(idle, '{:.0f} ms')}; warm "
          f"read {spread(warm, '{:.1f} ms')}; ratio {spread(ratios, '{:.0f}x')}.")
    return {"policies": results, "latency": latency, "median_idle_ms": statistics.median(idle),
            "median_warm_ms": statistics.median(warm)}
