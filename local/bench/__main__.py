"""`make bench`: eight benchmark sections, each with its baseline measured in the same run, then a summary.

Benchmarks print figures; nothing here asserts a time.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from local.bench import adaptive, coldstart, cost, imports, sweep_reads, throughput, tuning, writes
from local.bench.common import median, spread

SECTIONS = {
    "a": ("Cold import time", imports.main),
    "b": ("Sweep read cost", sweep_reads.main),
    "c": ("Refresh throughput against a naive refresher", throughput.main),
    "d": ("Cost model, all-in", cost.main),
    "e": ("Write units per refresh and item size", writes.main),
    "f": ("Cold start, measured whole", coldstart.main),
    "g": ("Refresh policies at a usage mix, and the first read after idleness", adaptive.main),
    "h": ("Worker tuning as deployed: batch, concurrency, memory", tuning.main),
}
NEEDS_EARLIER = {"g"}  # takes the results of the parts before it (g prices with (d)'s per-refresh costs)


def summary(results: dict[str, Any]) -> list[str]:
    lines = []
    a = results.get("a")
    if a:
        handlers = {label: ms for (label, mode), ms in a["results"].items()
                    if mode == "layer-only" and ms is not None and "(" in label}
        boto3 = a["results"].get(("bare `import boto3`", "layer-only"))
        if handlers and boto3:
            lines.append(f"(a) handler imports {min(handlers.values()):.0f}-{max(handlers.values()):.0f} ms "
                         f"(layer-only, bytecode cached); a bare `import boto3` is {boto3:.0f} ms and "
                         f"{len(a['chains'])} of {len(handlers)} handlers pull boto3 in at import time "
                         "(see the chains above).")
    b = results.get("b")
    if b:
        biggest = max(b["runs"], key=lambda r: r["count"])
        moto = b.get("moto")
        lines.append(f"(b) one sweep over {biggest['count']:,} connections returned {biggest['returned']:,} items for "
                     f"{biggest['due']:,} due (a Scan would read {biggest['scan_items']:,})"
                     + (f"; moto at 10,000 returned {moto['returned']} like memory" if moto else "") + ".")
    c = results.get("c")
    if c:
        goal = throughput.GOAL
        for store in ("memory", "moto"):
            rows = [r for r in c["rows"] if r["store"] == store]
            if not rows:
                continue
            best = max(rows, key=lambda r: median(r["ratios"]))
            cells = "; ".join(f"N {r['n']} c {r['c']}: {spread(r['ratios'], '{:.1f}x')}" for r in rows
                              if r["c"] in (8, 64) and r["n"] in (50, 1000 if store == "memory" else 200))
            lines.append(f"(c) worker / naive at 100 ms, {store} (min/median/max over {throughput.REPEATS} rounds): "
                         f"{cells}; best N {best['n']} c {best['c']} {spread(best['ratios'], '{:.1f}x')} "
                         f"-> goal >= {goal:.0f}x {'met' if min(best['ratios']) >= goal else 'missed'}"
                         + (" (moto's CPU is the bottleneck)" if store == "moto" else "") + ".")
        lines.append("    One invocation sees WorkerBatchSize records (template default "
                     f"{tuning.template_defaults()['WorkerBatchSize']}): that N is the row that applies as deployed.")
    d = results.get("d")
    if d:
        monthly = d["monthly"]
        lines.append(f"(d) per worker refresh {d['wru']:.2f} WRU (Cadence index), {d['rru']:.2f} RRU, "
                     f"{d['sqs']:.1f} SQS requests, "
                     f"{d['kms_at_scale']:.4f} KMS calls at scale, {d['log_bytes']:.0f} log bytes: "
                     f"${d['worker_per_million']:.2f} per million all-in (goal $2.50: "
                     f"{d['worker_per_million'] / 2.5:.2f}x); "
                     f"naive ${d['naive_per_million']:.2f} ({d['worker_per_million'] / d['naive_per_million']:.2f}x).")
        lines.append("    1 M connections a month: " + ", ".join(
            f"{name.split(' (')[0].split(',')[0]} ${value:,.0f}" for name, value in monthly.items())
            + f" (goals: eager $1,200 -> {monthly['eager'] / 1200:.2f}x; "
            "adaptive $400 at 20% active, measured in (g)).")
    e = results.get("e")
    if e:
        units = e["units"]["ordinary refresh"]
        changed = e["units"]["refresh with a state change"]
        lines.append(f"(e) an ordinary refresh: {units['wru']:g} WRU ({units['table_wru']:g} table: lease + commit; "
                     f"{units['index_wru']:g} index: on its cadence), {units['rru']:g} RRU; with a state change "
                     f"{changed['wru']:g} WRU. Item {e['item_bytes']} bytes (real-size KMS blob); crosses 1 KB at "
                     f"{e['crossing_length']}-character tokens (TikTok's examples: 35). The lease returns the item "
                     "(ReturnValues=ALL_NEW): no GetItem, no round trip before it.")
    f = results.get("f")
    if f:
        worst = max(f["results"].items(), key=lambda kv: median(kv[1]["ratios"]))
        best = min(f["results"].items(), key=lambda kv: median(kv[1]["ratios"]))
        lines.append(f"(f) cold start / minimal boto3 GetItem handler ({f['reference_ms']:.0f} ms): "
                     f"{median(best[1]['ratios']):.2f}x ({best[0]}) to {median(worst[1]['ratios']):.2f}x ({worst[0]}); "
                     f"goal <= {coldstart.GOAL}x met by "
                     + (", ".join(n for n, r in f["results"].items() if median(r["ratios"]) <= coldstart.GOAL)
                        or "no handler") + " (medians).")
    g = results.get("g")
    if g:
        cells = ", ".join(f"{name} ${row['total']:,.0f}" for name, row in g["policies"].items())
        lines.append(f"(g) 1 M connections at 20% active daily, refreshes + read marks a month (measured): {cells} "
                     f"(+ fixed costs, see (d)); first read after idleness {g['median_idle_ms']:.0f} ms median "
                     f"(one synchronous refresh, 100 ms TikTok) against {g['median_warm_ms']:.1f} ms warm.")
    h = results.get("h")
    if h:
        chosen, defaults = h["chosen"], h["defaults"]
        lines.append(f"(h) as deployed (CPU {h['cpu_ms']:.2f} ms per refresh measured, Lambda's CPU share modelled): "
                     f"batch {chosen['batch']}, concurrency {chosen['concurrency']}, {chosen['memory_mb']} MB -> "
                     f"{chosen['ratio']:.1f}x the naive at 256 MB; template defaults "
                     f"{defaults['WorkerBatchSize']}/{defaults['RefreshConcurrency']}/"
                     f"{defaults['WorkerMemorySize']} MB, "
                     f"window {defaults['WorkerBatchingWindowSeconds']} s; at most {h['bound']} provider calls in "
                     "flight per deployment (WorkerMaxConcurrency x RefreshConcurrency).")
    return lines


def main(argv: list[str]) -> int:
    chosen = [s for s in (argv or list(SECTIONS)) if s in SECTIONS]
    print(f"oauth-keeper benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{_cores()} cores, Python {platform.python_version()}, load average {_load()}\n")
    results: dict[str, Any] = {}
    failed = []
    started = time.perf_counter()
    for key in chosen:
        title, run = SECTIONS[key]
        print("=" * 100)
        section_started = time.perf_counter()
        try:
            results[key] = run(results) if key in NEEDS_EARLIER else run()
        except Exception:  # noqa: BLE001 - report it and go on with the other sections
            traceback.print_exc()
            failed.append(key)
        print(f"\n[{key}) {title}: {time.perf_counter() - section_started:.0f} s]\n")
    print("=" * 100)
    print("Summary")
    for line in summary(results):
        print(line)
    if failed:
        print(f"Failed sections: {', '.join(failed)}")
    print(f"Total {time.perf_counter() - started:.0f} s; load average now {_load()} (other work on this machine "
          "skews timings, not counts).")
    return 1 if failed else 0


def _load() -> str:
    import os

    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
