"""(c) Refresh throughput of one worker invocation, against a naive sequential refresher.

`oauth_keeper.usecases.worker.process_records` runs on a batch of queued connections (10: the template's SQS batch
size; 50: to see the concurrency bound) against the simulated TikTok over real loopback HTTP (a started
FakeTikTok, a real httpx.Client) with 100 ms added to every token answer. The baseline calls
`refresher.refresh(cid)` one after another on the same connections. Connections become due by moving the
simulated clock 100 minutes forward (2 h tokens refresh ~96 min after issue); each figure is the median of
REPEATS runs, and every run is checked to have refreshed every connection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from oauth_keeper.adapters.provider_http import HTTP_TIMEOUT
from oauth_keeper.usecases.worker import process_records

from local.bench.common import median, quiet, records_for, table, world_services
from local.simulation import World

LATENCY = 0.1
BATCHES = (10, 50)
REPEATS = 3
DUE_STEP = 100 * 60  # past next_refresh_at (~96 min), before the access token ends (120 min)


def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    world = World.create()
    fake = world.tiktok.start()
    http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    try:
        services = world_services(world, http=http, base_url=fake.base_url)
        concurrency = services.settings.refresh_concurrency
        with quiet():
            ids = [world.connect(f"user{i}", owner_id=f"owner{i}").connection_id for i in range(max(BATCHES) + 1)]
            spare, ids = ids[-1], ids[:-1]
            world.clock.advance(DUE_STEP)
            services.refresher.refresh(spare)  # warm-up: client, profile, data key
        fake.latency = LATENCY
        print(f"TikTok latency {LATENCY * 1000:.0f} ms per token answer; worker concurrency "
              f"settings.refresh_concurrency = {concurrency}; median of {REPEATS} runs.\n")

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

        def worker(chosen: list[str]) -> None:
            result = process_records(records_for(chosen), services.refresher, concurrency)
            if result["batchItemFailures"]:
                raise RuntimeError(f"worker reported failures: {result['batchItemFailures']}")

        def sequential(chosen: list[str]) -> None:
            for connection_id in chosen:
                services.refresher.refresh(connection_id)

        rows, results = [], {}
        for batch in BATCHES:
            chosen = ids[:batch]
            worker_runs, sequential_runs = [], []
            for _ in range(REPEATS):
                worker_runs.append(timed(partial(worker, chosen), batch))
                sequential_runs.append(timed(partial(sequential, chosen), batch))
            worker_s, sequential_s = median(worker_runs), median(sequential_runs)
            bound = batch / (math.ceil(batch / concurrency) * LATENCY)
            results[batch] = {"worker_per_s": batch / worker_s, "sequential_per_s": batch / sequential_s,
                              "worker_ms": worker_s * 1000, "sequential_ms": sequential_s * 1000, "bound_per_s": bound}
            rows.append([batch, f"{worker_s * 1000:.0f}", f"{batch / worker_s:.1f}", f"{sequential_s * 1000:.0f}",
                         f"{batch / sequential_s:.1f}", f"{sequential_s / worker_s:.1f}x", f"{bound:.0f}"])
        print(table(["batch", "worker ms", "worker refreshes/s", "sequential ms", "sequential refreshes/s",
                     "speed-up", "bound: batch / (ceil(batch/8) x 100 ms)"], rows))
        print("\nThe bound ignores everything but TikTok's 100 ms; the gap to it is this process's own work per "
              "refresh (HTTP over loopback, AES-GCM, the in-memory table, Python threads on 2 cores).")
        return results
    finally:
        http.close()
        fake.stop()
