"""`make bench`: four benchmark sections, each with its baseline measured in the same run, then a summary.

Benchmarks print figures; nothing here asserts a time.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from local.bench import cost, imports, sweep_reads, throughput

SECTIONS = {
    "a": ("Cold import time", imports.main),
    "b": ("Sweep read cost", sweep_reads.main),
    "c": ("Refresh throughput", throughput.main),
    "d": ("Cost model", cost.main),
}


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
        parts = [f"batch {batch}: {r['worker_per_s']:.0f}/s vs {r['sequential_per_s']:.0f}/s sequential "
                 f"({r['worker_per_s'] / r['sequential_per_s']:.1f}x, bound {r['bound_per_s']:.0f}/s)"
                 for batch, r in c.items()]
        lines.append("(c) worker throughput at 100 ms TikTok latency: " + "; ".join(parts) + ".")
    d = results.get("d")
    if d:
        monthly = d["monthly"]
        indexes = ", ".join(f"{k} {v:.0f}" for k, v in d["index_wru"].items())
        lines.append(f"(d) per refresh {d['wru']:.0f} WRU ({indexes} on indexes), {d['rru']:.2f} RRU, "
                     f"{d['kms_per_refresh']:.2f} KMS calls, {d['cpu_ms']:.1f} ms CPU; "
                     f"${d['worker_per_million']:.2f} per million worker refreshes; 1 M connections a month: "
                     + ", ".join(f"{name.split(' (')[0]} ${value:,.0f}" for name, value in monthly.items()) + ".")
        lines.append(f"    item {d['item_bytes']} bytes ({d['item_bytes_real_kms']} with a real KMS blob), "
                     f"largest write {d['written_max']} bytes: under the 1 KB write unit, with little room.")
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
            results[key] = run()
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
