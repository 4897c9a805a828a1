"""(c) Refresh throughput of one worker invocation, against a naive refresher, at 100 ms TikTok latency.

Both run in this process, over the same item store, against the same simulated TikTok over real loopback HTTP
(a started FakeTikTok, a real httpx.Client) with 100 ms added to every token answer. The worker is the product's
`process_records` on N queued connection ids with a given concurrency (the parameters `RefreshWorker` passes on;
the product code is not changed). The naive baseline (local/bench/naive.py) is a Scan for due items, a
sequential refresh over httpx and an UpdateItem each. Connections become due by moving the simulated clock
100 minutes (2 h tokens refresh ~96 min after issue). Every run is checked to have refreshed exactly N
connections at TikTok. Each round measures the naive baseline, then the worker at every concurrency, so every
ratio is worker / naive from the same round; figures are min/median/max over the rounds.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
from oauth_keeper.adapters.provider_http import HTTP_TIMEOUT
from oauth_keeper.usecases.worker import process_records

from local.bench.common import median, quiet, records_for, spread, table, world_services
from local.bench.naive import NaiveRefresher
from local.simulation import World

LATENCY = 0.1
DUE = tuple(int(n) for n in os.environ.get("BENCH_DUE", "50,200,1000").split(","))
CONCURRENCY = (8, 32, 64)
MOTO_DUE = (50, 200)
REPEATS = 3
DUE_STEP = 100 * 60  # past next_refresh_at (~96 min), before the access token ends (120 min)
GOAL = 20.0


@contextlib.contextmanager
def started_world(store: str) -> Iterator[tuple[World, Any, Any]]:
    """(world, started FakeTikTok, container) over the in-memory store or moto's DynamoDB (in-process)."""
    world = World.create()
    # http.server listens with a backlog of 5: 32-64 connections opened at once would wait for SYN retries (1 s)
    # or time out. A real TikTok front end has no such limit, so the simulated one gets a deeper queue.
    backlog = ThreadingHTTPServer.request_queue_size
    ThreadingHTTPServer.request_queue_size = 256
    try:
        fake = world.tiktok.start()
    finally:
        ThreadingHTTPServer.request_queue_size = backlog
    http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,  # the product's limits (new_http_client)
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    try:
        if store == "memory":
            yield world, fake, world_services(world, http=http, base_url=fake.base_url)
        else:
            import boto3
            from moto import mock_aws
            from oauth_keeper.adapters.dynamodb import DynamoItemStore

            from local import cfn
            from local.bench.sweep_reads import _dummy_aws_env
            from local.stack import REGION, atomic_dynamodb

            with _dummy_aws_env(), mock_aws(), atomic_dynamodb():
                client = boto3.client("dynamodb", region_name=REGION)
                client.create_table(**cfn.table_definition("ConnectionsTable", "bench-connections"))
                items = DynamoItemStore(client, "bench-connections")
                yield world, fake, world_services(world, items=items, http=http, base_url=fake.base_url)
    finally:
        http.close()
        fake.stop()


def measure(store: str, due: tuple[int, ...], concurrencies: tuple[int, ...], rounds: int) -> dict[str, Any]:
    """Per N: the naive baseline's and the worker's refreshes per second at each concurrency, per round."""
    with started_world(store) as (world, fake, services):
        with quiet():
            ids = [world.connect(f"user{i}", owner_id=f"owner{i}").connection_id for i in range(max(due) + 1)]
            spare, ids = ids[-1], ids[:-1]
            world.clock.advance(DUE_STEP)
            services.refresher.refresh(spare)  # warm-up: client, profile, data key
        fake.latency = LATENCY
        naive = NaiveRefresher(services.connections, services.http, fake.base_url + "/v2/oauth/token/",
                               world.ssm)

        def timed(run: Callable[[], Any], count: int) -> float:
            before = fake.stats["refresh_successes"]
            world.clock.advance(DUE_STEP)
            with quiet():
                started = time.perf_counter()
                run()
                elapsed = time.perf_counter() - started
            refreshed = fake.stats["refresh_successes"] - before
            if refreshed != count:
                raise RuntimeError(f"expected {count} refreshes, TikTok saw {refreshed}")
            return elapsed

        def worker(chosen: list[str], concurrency: int) -> None:
            result = process_records(records_for(chosen), services.refresher, concurrency)
            if result["batchItemFailures"]:
                raise RuntimeError(f"worker reported failures: {result['batchItemFailures']}")

        results: dict[int, dict[str, Any]] = {}
        for _ in range(rounds):
            for n in due:
                chosen = ids[:n]
                entry = results.setdefault(n, {"naive": [], **{c: [] for c in concurrencies}})
                naive_s = timed(lambda chosen=chosen: naive.run(int(world.clock.now()), set(chosen)), n)
                entry["naive"].append(n / naive_s)
                for c in concurrencies:
                    entry[c].append(n / timed(lambda chosen=chosen, c=c: worker(chosen, c), n))
        return {"results": results, "scanned": naive.scanned}


def print_table(store: str, measured: dict[str, Any], concurrencies: tuple[int, ...]) -> list[dict[str, Any]]:
    rows, flat = [], []
    for n, entry in measured["results"].items():
        naive_rates = entry["naive"]
        for c in concurrencies:
            ratios = [w / b for w, b in zip(entry[c], naive_rates, strict=True)]
            bound = n / (math.ceil(n / c) * LATENCY)
            flat.append({"store": store, "n": n, "c": c, "worker_per_s": median(entry[c]),
                         "naive_per_s": median(naive_rates), "ratios": ratios, "bound_per_s": bound,
                         "bound_ratio": bound / median(naive_rates)})
            rows.append([n, c, spread(entry[c], "{:.0f}"), spread(naive_rates, "{:.1f}"), spread(ratios, "{:.1f}x"),
                         f"{bound:.0f}", "yes" if min(ratios) >= GOAL else ("median" if median(ratios) >= GOAL
                                                                                 else "no")])
    print(table(["N due", "concurrency", "worker /s (min/med/max)", "naive /s (min/med/max)",
                 "worker / naive (min/med/max)", "bound /s: N / (ceil(N/c) x 100 ms)", f">= {GOAL:.0f}x"], rows))
    return flat


def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    print(f"TikTok latency {LATENCY * 1000:.0f} ms per token answer; {REPEATS} rounds; timings on a shared 2-core "
          "machine are noisy, which is why every figure is a ratio to the naive baseline measured in the same "
          "round (min/median/max over the rounds).\n")
    print("In-memory store (MemoryItemStore; the naive Scan reads every item):")
    memory = measure("memory", DUE, CONCURRENCY, REPEATS)
    flat = print_table("memory", memory, CONCURRENCY)
    print("\nmoto's DynamoDB in-process (DynamoItemStore through botocore; moto's calls serialised as DynamoDB's "
          "conditional writes are atomic):")
    moto = measure("moto", MOTO_DUE, CONCURRENCY, REPEATS)
    flat += print_table("moto", moto, CONCURRENCY)
    print("\nOn moto every DynamoDB call costs milliseconds of this process's CPU (request signing, moto parsing, "
          "its table walk) and holds the GIL: the worker's two calls per refresh (the lease returning the item, the "
          "commit) and "
          "the naive's one are CPU, not waiting, so moto measures this machine's CPU, not the design. The memory "
          "rows show the design; in AWS those calls are 3-10 ms of waiting each, overlapped by the threads.")
    best = max((r for r in flat if r["store"] == "memory"), key=lambda r: median(r["ratios"]))
    from local.bench.tuning import template_defaults

    defaults = template_defaults()
    batch, concurrency = defaults["WorkerBatchSize"], defaults["RefreshConcurrency"]
    print(f"\nGoal: one worker invocation >= {GOAL:.0f}x the naive baseline at 100 ms. Best on memory: N {best['n']}, "
          f"concurrency {best['c']}: {spread(best['ratios'], '{:.1f}x')} (the 100 ms bound alone allows "
          f"{best['bound_ratio']:.0f}x). As deployed, one invocation sees WorkerBatchSize records (template default "
          f"{batch}) at RefreshConcurrency {concurrency}: the rows with c {concurrency} and N near {batch} are "
          "the ones that apply, on Lambda's CPU share at WorkerMemorySize (section g).")
    return {"rows": flat, "best": best}
