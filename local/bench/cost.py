"""(d) Cost model, all-in: what one refresh costs (DynamoDB, KMS, SQS, Lambda, logs, events), and a month of it.

Measured, not guessed: the simulated world (in-process TikTok, in-memory table and KMS) runs CONNECTIONS
connections through HOURS of sweeps with its item store wrapped in counters that price every GetItem,
UpdateItem and Query with DynamoDB's size rules (local/bench/model.py); FakeKms counts KMS calls in one warm
container; Lambda CPU per refresh is measured in-process with no network latency (the simulated TikTok's own
CPU subtracted), plus botocore's client-side CPU per DynamoDB call measured against canned answers.

The rest of the all-in price: SQS from the batch sizes (model.sqs_requests_per_refresh); KMS per warm container
and cache window at the scale 1 M eager connections need (model.kms_calls_per_month, assumptions printed);
CloudWatch Logs and custom metrics from the worker handler's real output (local/bench/logs.py); a state change's
PutEvents entry and its recorded extra writes (local/bench/writes.py); the sweeper's Lambda time extrapolated
from measured per-id time; the naive design (local/bench/naive.py) measured and priced the same way; the
adaptive policy's refreshes and read marks counted through the real code path at 20% active daily
(local/bench/adaptive.py, part (g)).
"""

from __future__ import annotations

import json
import math
import threading
import time
from base64 import b64encode
from typing import Any

from oauth_keeper.adapters.dynamodb import DynamoItemStore
from oauth_keeper.adapters.kms import UNWRAPPED_MAX_AGE
from oauth_keeper.adapters.sqs import SqsRefreshQueue
from oauth_keeper.domain.schedule import MAX_DUE_SHARDS, SHARD_AUDIT_INTERVAL
from oauth_keeper.usecases.worker import process_records

from local import cfn
from local.bench import adaptive as adaptive_bench
from local.bench import model
from local.bench.common import CountingItemStore, median, quiet, records_for, table, world_services
from local.bench.sweep_reads import _dummy_aws_env
from local.memory import MemoryItemStore
from local.simulation import World

CONNECTIONS = 200
HOURS = 12
DUE_MOVE_WRU = 2  # a changed next_refresh_at in the Due index: delete + put of a KEYS_ONLY entry under 1 KB
WARM_UP = 2  # hours swept before counting: every connection refreshed once, so on its cadence
CPU_CONNECTIONS = 200
CPU_REPEATS = 3
BOTO_CALLS = 300
WAIT_MS = 100.0  # assumed network wait per refresh: TikTok's answer (DynamoDB round trips overlap in threads)
REAL_KMS_BLOB = 184  # bytes: a CiphertextBlob for a 256-bit data key from real KMS (FakeKms's is 60); assumed
ON_DEMAND_READS = 3  # token reads per connection per day
ADAPTIVE_ACTIVE = 0.20  # share of connections whose token is read daily (adaptive's stated usage mix)
FLOOR_PROPOSAL_WRU = 2  # docs/decisions/0023: lease 1 + commit 1, the Cadence entry unchanged (built)
STATE_CHANGES_PER_MONTH = 0.1  # events (at risk, recovered, expiring, needs reauth) per connection, assumed
DUE_STEP = 100 * 60
MILLION = 1_000_000


def template_settings() -> dict[str, Any]:
    """The refresh worker's memory and SQS batch size, and the worker concurrency cap, from template.yaml."""
    template = cfn.template()
    worker = template["Resources"]["RefreshWorkerFunction"]["Properties"]
    parameters = template["Parameters"]

    def value(found: Any) -> int:  # a number, or a parameter's default
        return int(parameters[found["Ref"]]["Default"]) if isinstance(found, dict) and "Ref" in found else int(found)

    memory = value(worker.get("MemorySize", template["Globals"]["Function"]["MemorySize"]))
    batch = value(worker["Events"]["RefreshRequests"]["Properties"].get("BatchSize", 10))
    max_workers = value(parameters.get("WorkerMaxConcurrency", {}).get("Default", 5))
    concurrency = value(parameters.get("RefreshConcurrency", {}).get("Default", 8))
    sweeper = template["Resources"]["SweeperFunction"]["Properties"]
    sweeper_memory = int(sweeper.get("MemorySize", template["Globals"]["Function"]["MemorySize"]))
    return {"memory_mb": memory, "batch": batch, "max_workers": max_workers, "sweeper_memory_mb": sweeper_memory,
            "concurrency": concurrency, "api_memory_mb": value(template["Globals"]["Function"]["MemorySize"])}


# ---- counting a day of refreshes ---------------------------------------------------------------------------

def instrumented_run() -> dict[str, Any]:
    world = World.create()
    counting = CountingItemStore(MemoryItemStore())
    services = world_services(world, items=counting)
    kms = services.data_keys
    with quiet():
        for i in range(CONNECTIONS):  # users connect over two hours, so refreshes spread like in life
            world.connect(f"user{i}", owner_id=f"owner{i}")
            world.clock.advance(7200 / CONNECTIONS)
        # Each connection's first refresh moves it from the Due index to its Cadence family (ADR 0023), once in a
        # life of months: refreshed once before counting, so the run prices ordinary refreshes ((e) shows a move).
        for _ in range(WARM_UP * 3600 // services.settings.sweep_interval):
            world.tick()
    calls0, units0 = counting.snapshot()
    kms0, refreshed0 = kms.kms_calls, world.tiktok.stats["refresh_successes"]
    counting.written_sizes.clear()
    ticks = HOURS * 3600 // services.settings.sweep_interval
    with quiet():
        for _ in range(ticks):
            world.tick()
    calls1, units1 = counting.snapshot()
    calls, units = calls1 - calls0, units1 - units0
    refreshes = world.tiktok.stats["refresh_successes"] - refreshed0
    if world.statuses() != {"active": CONNECTIONS}:
        raise RuntimeError(f"unexpected statuses {world.statuses()}")
    written_max = max(counting.written_sizes)

    # One refresh on its own, call by call.
    connection = min(world.connections(), key=lambda c: c.next_refresh_at or 0)
    world.clock.advance(max(0, (connection.next_refresh_at or 0) - world.clock.now()) + 10)
    counting.log = []
    with quiet():
        services.refresher.refresh(connection.connection_id)
    log, counting.log = counting.log, None
    item = counting.inner.get(connection.connection_id)
    return {"calls": calls, "units": units, "refreshes": refreshes, "ticks": ticks, "kms_calls": kms.kms_calls - kms0,
            "written_max": written_max, "log": log, "item": item}


def item_breakdown(item: dict[str, Any]) -> dict[str, Any]:
    size = model.item_size(item)
    names = sum(len(k.encode()) for k, v in item.items() if v is not None)
    tokens = item.get("tokens") or b""
    wrapped = int.from_bytes(tokens[1:3], "big") if len(tokens) > 3 else 0
    real = size - wrapped + REAL_KMS_BLOB
    largest = sorted(((model.item_size({k: v}), k) for k, v in item.items() if v is not None), reverse=True)[:4]
    return {"size": size, "names": names, "tokens": len(tokens), "wrapped": wrapped, "real_kms_size": real,
            "largest": largest, "attributes": len(item)}


# ---- CPU per refresh -----------------------------------------------------------------------------------------

def cpu_per_refresh() -> dict[str, float]:
    """Process CPU per refresh in the worker (concurrency 8), the simulated TikTok's own CPU taken out."""
    world = World.create()
    fake = world.tiktok
    spent = [0.0]
    lock = threading.Lock()
    original = fake.handle

    def handle(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                spent[0] += time.thread_time() - started

    fake.handle = handle  # type: ignore[method-assign]
    services = world.services
    with quiet():
        ids = [world.connect(f"user{i}", owner_id=f"owner{i}").connection_id for i in range(CPU_CONNECTIONS)]
    runs, fake_share = [], []
    for _ in range(CPU_REPEATS):
        world.clock.advance(DUE_STEP)
        spent[0] = 0.0
        before = fake.stats["refresh_successes"]
        with quiet():
            started = time.process_time()
            process_records(records_for(ids), services.refresher, services.settings.refresh_concurrency)
            total = time.process_time() - started
        if fake.stats["refresh_successes"] - before != len(ids):
            raise RuntimeError("not every connection refreshed")
        runs.append((total - spent[0]) / len(ids) * 1000)
        fake_share.append(spent[0] / len(ids) * 1000)
    return {"ms": median(runs), "fake_ms": median(fake_share)}


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):
        yield self._body


def _wire(value: Any) -> Any:
    """boto3's typed item as DynamoDB's JSON wire format (binary as base64)."""
    if isinstance(value, dict):
        return {k: (b64encode(v).decode() if k == "B" and isinstance(v, bytes) else _wire(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def botocore_cpu(item: dict[str, Any]) -> dict[str, float]:
    """Client-side CPU of one DynamoDB call through DynamoItemStore and botocore (build, sign, send, parse),
    with the HTTP exchange answered by a canned response at botocore's before-send hook: no server, no wait."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from oauth_keeper.adapters.dynamodb import to_item

    from local.stack import REGION

    body = json.dumps({"Item": _wire(to_item(item))}).encode()
    headers = {"x-amzn-requestid": "bench", "content-type": "application/x-amz-json-1.0"}
    with _dummy_aws_env():
        client = boto3.client("dynamodb", region_name=REGION)
        client.meta.events.register("before-send.dynamodb.GetItem",
                                    lambda request, **_: AWSResponse(request.url, 200, headers, _Raw(body)))
        attributes = json.dumps({"Attributes": _wire(to_item(item))}).encode()

        def updated(request: Any, **_: Any) -> AWSResponse:  # the lease asks for the item back (ALL_NEW)
            returning = b'"ReturnValues"' in request.body
            return AWSResponse(request.url, 200, headers, _Raw(attributes if returning else b"{}"))

        client.meta.events.register("before-send.dynamodb.UpdateItem", updated)
        store = DynamoItemStore(client, "bench-connections")
        key = item["connection_id"]
        lease = {"lease_owner": "3f2b0c4e-5d1a-4c3e-9f7a-0b1c2d3e4f50", "lease_expires_at": 1_800_000_020}
        commit = {k: v for k, v in item.items() if k != "connection_id"}
        operations = {
            "GetItem": lambda: store.get(key),
            "UpdateItem (lease)": lambda: store.update(key, set=lease, expect={"revision": 7}, add={"revision": 1},
                                                       returning=True),
            "UpdateItem (commit)": lambda: store.update(key, set=commit, remove=["lease_owner", "lease_expires_at"],
                                                        expect={"revision": 8}),
        }
        sqs = boto3.client("sqs", region_name=REGION)

        def sent(request: Any, **_: Any) -> AWSResponse:
            entries = json.loads(request.body)["Entries"]
            answer = {"Successful": [{"Id": e["Id"], "MessageId": f"m{e['Id']}", "MD5OfMessageBody": "0" * 32}
                                     for e in entries], "Failed": []}
            return AWSResponse(request.url, 200, headers, _Raw(json.dumps(answer).encode()))

        sqs.meta.events.register("before-send.sqs.SendMessageBatch", sent)
        queue = SqsRefreshQueue(sqs, f"https://sqs.{REGION}.amazonaws.com/123456789012/bench-refresh")
        ids = [f"con_{i:032d}" for i in range(10)]
        operations["SendMessageBatch (10 ids)"] = lambda: queue.send(ids)
        result = {}
        for name, call in operations.items():
            for _ in range(20):
                call()
            started = time.process_time()
            for _ in range(BOTO_CALLS):
                call()
            result[name] = (time.process_time() - started) / BOTO_CALLS * 1000
    return result


# ---- putting it together ---------------------------------------------------------------------------------------

def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    settings = template_settings()
    memory_mb, batch, threads = settings["memory_mb"], settings["batch"], settings["concurrency"]
    run = instrumented_run()
    per = max(1, run["refreshes"])
    calls, units = run["calls"], run["units"]
    index_wru = {k[: -len("_write")]: v / per for k, v in units.items() if k.endswith("_write") and k != "table_write"}
    wru = (units["table_write"] + sum(v for k, v in units.items() if k.endswith("_write") and k != "table_write")) / per
    rru = units["read"] / per
    kms_per_refresh = run["kms_calls"] / per
    per_day = run["refreshes"] / CONNECTIONS / (HOURS / 24)
    breakdown = item_breakdown(run["item"])

    print(f"\nSimulated: {CONNECTIONS} connections (eager, 2 h tokens) over {HOURS} h = {run['ticks']} sweeps, "
          f"{run['refreshes']} refreshes ({per_day:.2f} per connection per day; the model's 96 min gives "
          f"{86400 / model.eager_refresh_interval(7200):.2f}).\n")
    print("One refresh, call by call (a warm container; the breaker item is read at most every 5 s):")
    rows = []
    for entry in run["log"]:
        what = entry["op"]
        if entry["op"].startswith("UpdateItem"):
            changed = ", ".join(a for a in entry["attributes"] if not a.startswith("ob_"))
            rows.append([what, entry["key"][:16], entry["size"],
                         " + ".join(f"{n} {c}" for n, c in entry["wru"].items()), "-", changed])
        elif entry["op"] == "GetItem":
            rows.append([what, entry["key"][:16], entry["size"], "-", entry["rru"], ""])
        else:
            rows.append([what, str(entry["key"]), "-", "-", "-", f"returned {entry['returned']}"])
    print(table(["call", "item", "bytes", "WRU (table + index)", "RRU", "attributes written"], rows))

    print(f"\nConnection item after a refresh: {breakdown['size']} bytes by DynamoDB's rule, {breakdown['attributes']} "
          f"attributes (names alone {breakdown['names']} bytes); `tokens` {breakdown['tokens']} bytes of which the "
          f"wrapped data key is {breakdown['wrapped']} (FakeKms). With a real KMS blob (~{REAL_KMS_BLOB} bytes, "
          f"assumed): {breakdown['real_kms_size']} bytes, {1024 - breakdown['real_kms_size']} bytes under 1 KB. "
          f"Largest item written during the run: {run['written_max']} bytes (the lease write; "
          f"~{run['written_max'] - breakdown['wrapped'] + REAL_KMS_BLOB} with a real KMS blob). Largest attributes: "
          + ", ".join(f"{name} {size}" for size, name in breakdown["largest"]) + ".")

    print(f"\nPer refresh over the run ({run['refreshes']} refreshes):")
    calls_rows = [
        ["GetItem (strongly consistent)", calls["get"] / per, f"{rru:.2f} RRU"],
        ["UpdateItem (succeeded)", calls["update"] / per, f"{units['table_write'] / per:.2f} WRU on the table"],
        ["UpdateItem (condition failed)", calls["update_failed"] / per, "(in the table WRU)"],
        *[[f"index {name}", "-", f"{value:.2f} WRU"] for name, value in sorted(index_wru.items())],
        ["KMS (GenerateDataKey + Decrypt)", kms_per_refresh,
         f"{run['kms_calls']} calls in {run['ticks']} sweeps = {run['kms_calls'] / run['ticks']:.2f} per 5 min"],
        ["sweep Query calls", sum(v for k, v in calls.items() if k.startswith("query_")) / run["ticks"],
         "per sweep, not per refresh (16 Due + 16 Outbox + 16 Cadence, 32 when the phase window wraps; hourly "
         "16 more)"],
        ["sweep's shard span record", calls["span_get"] / run["ticks"],
         f"per sweep: {units['span_read'] / run['ticks']:.2f} RRU; {calls['span_update']} UpdateItem in all"],
        ["sweep's shard probes (Limit=1)", sum(v for k, v in calls.items() if k.startswith("probe_")) / run["ticks"],
         f"per sweep: every shard above 16 up to {MAX_DUE_SHARDS}, at the first sweep, an hour later, then daily"],
    ]
    print(table(["what", "calls per refresh", "units"], calls_rows))

    cpu = cpu_per_refresh()
    boto = botocore_cpu(run["item"])
    updates = calls["update"] / per + calls["update_failed"] / per
    update_ms = (boto["UpdateItem (lease)"] + boto["UpdateItem (commit)"]) / 2
    boto_ms = calls["get"] / per * boto["GetItem"] + updates * update_ms
    cpu_ms = cpu["ms"] + boto_ms
    share = model.lambda_cpu_share(memory_mb)
    worker_s = model.worker_seconds_per_refresh(cpu_ms=cpu_ms, memory_mb=memory_mb, wait_ms=WAIT_MS,
                                                concurrency=threads, batch=batch)
    # The token route's refresh and the naive design run at the Globals memory (the API's functions'; a naive
    # worker would pick the least, its time being waits): their CPU at that share.
    api_share = model.lambda_cpu_share(settings["api_memory_mb"])
    api_s = (cpu_ms / api_share + WAIT_MS) / 1000
    print(f"\nLambda CPU per refresh (x86_64 here): {cpu['ms']:.2f} ms in-process (worker, concurrency 8; the "
          f"simulated TikTok's own {cpu['fake_ms']:.2f} ms taken out) + botocore client side {boto_ms:.2f} ms "
          f"(GetItem {boto['GetItem']:.2f}, lease UpdateItem {boto['UpdateItem (lease)']:.2f}, commit UpdateItem "
          f"{boto['UpdateItem (commit)']:.2f} ms per call) = {cpu_ms:.2f} ms.")
    print(f"At {memory_mb} MB a function gets {share:.3f} of a vCPU ({memory_mb}/{model.LAMBDA_MB_PER_VCPU}): "
          f"{cpu_ms / share:.1f} ms of wall time per refresh for the CPU alone. Network wait assumed {WAIT_MS:.0f} ms "
          f"per refresh (TikTok), overlapped {threads} at a time: a batch of {batch} takes max(CPU {batch} x "
          f"{cpu_ms / share:.1f} ms, waits {-(-batch // threads)} x {WAIT_MS:.0f} ms) = "
          f"{worker_s * batch * 1000:.0f} ms, "
          f"{worker_s * 1000:.1f} ms billed per refresh (sum instead of max: "
          f"{(batch * cpu_ms / share + -(-batch // threads) * WAIT_MS) / batch:.1f} ms). x86 and Graviton differ: "
          f"a rough figure.")

    return price_everything(run=run, settings=settings, wru=wru, rru=rru, index_wru=index_wru,
                            kms_per_refresh=kms_per_refresh, cpu_ms=cpu_ms, cpu=cpu, boto=boto, boto_ms=boto_ms,
                            worker_s=worker_s, api_s=api_s, share=share, breakdown=breakdown, per_day=per_day,
                            calls=calls, per=per, updates=updates)


# ---- the naive design and the sweeper, measured for the model -----------------------------------------------

def naive_run(count: int = 50) -> dict[str, Any]:
    """The naive refresher (local/bench/naive.py) over a counting store: its units and KMS calls per refresh."""
    from local.bench.naive import NaiveRefresher

    world = World.create()
    fake = world.tiktok.start()
    try:
        import httpx

        with httpx.Client() as http:
            counting = CountingItemStore(MemoryItemStore())
            services = world_services(world, items=counting, http=http, base_url=fake.base_url)
            with quiet():
                for i in range(count):
                    world.connect(f"user{i}", owner_id=f"owner{i}")
            world.clock.advance(DUE_STEP)
            naive = NaiveRefresher(services.connections, http, fake.base_url + "/v2/oauth/token/", world.ssm)
            kms0 = services.data_keys.kms_calls
            calls0, units0 = counting.snapshot()
            with quiet():
                done = naive.run(int(world.clock.now()))
            calls, units = (a - b for a, b in zip(counting.snapshot(), (calls0, units0), strict=True))
            wru = sum(v for k, v in units.items() if k.endswith("_write")) / done
            index = {k[: -len("_write")]: v / done for k, v in units.items() if k.endswith("_write")
                     and k != "table_write"}
            return {"refreshed": done, "wru": wru, "table_wru": units["table_write"] / done, "index_wru": index,
                    "kms": (services.data_keys.kms_calls - kms0) / done, "scanned": naive.scanned,
                    "item_bytes": max(counting.written_sizes)}
    finally:
        fake.stop()


def sweep_seconds_per_due(count: int = 20_000, due_share: float = 0.1) -> dict[str, float]:
    """In-process seconds of one sweep per due id (the Due and Outbox queries paged over a MemoryItemStore, the
    ids handed to a list queue), on `count` connections of which `due_share` are due."""
    import random

    from local.bench import sweep_reads

    saved = sweep_reads.DUE_SHARE
    sweep_reads.DUE_SHARE = due_share
    try:
        template = sweep_reads.sample_item()
        result = sweep_reads.run_memory(count, template, random.Random(7))  # noqa: S311 - test data
    finally:
        sweep_reads.DUE_SHARE = saved
    return {"seconds": result["seconds"], "due": result["due"], "per_due": result["seconds"] / result["due"]}


def price_everything(*, run: dict[str, Any], settings: dict[str, Any], wru: float, rru: float,
                     index_wru: dict[str, float], kms_per_refresh: float, cpu_ms: float, cpu: dict[str, float],
                     boto: dict[str, float], boto_ms: float, worker_s: float, api_s: float, share: float,
                     breakdown: dict[str, Any], per_day: float, calls: Any, per: int, updates: float) -> dict[str, Any]:
    """Cost per million refreshes, all-in, and a month at 1 M connections per policy, beside the naive design."""
    from local.bench import logs, writes

    memory_mb, batch, max_workers = settings["memory_mb"], settings["batch"], settings["max_workers"]
    prices, more = model.Prices(), model.MorePrices()
    gb = memory_mb / 1024
    api_gb = settings["api_memory_mb"] / 1024
    connections = MILLION
    sweeps = model.sweeps_per_month()

    # Scale: how many worker containers 1 M eager connections keep busy, and so what KMS costs.
    needed = connections * model.eager_refreshes_per_month(7200) / model.MONTH_SECONDS
    per_invocation = 1 / worker_s
    containers = max(1, math.ceil(needed / per_invocation))
    interval = model.MONTH_SECONDS / model.eager_refreshes_per_month(7200)  # seconds between eager refreshes
    kms_month = model.kms_calls_per_month(containers, refresh_interval=interval, unwrapped_max_age=UNWRAPPED_MAX_AGE)
    kms_at_scale = kms_month / (connections * model.eager_refreshes_per_month(7200))

    # Logs and metrics: a warm worker invocation's real output.
    output = logs.worker_invocation_output(batch)
    log_bytes = model.log_bytes_per_refresh(batch_bytes=output["bytes"], batch_lines=output["lines"], batch=batch)
    metrics_seen = len(output["metrics"])

    # Events: a state change's own writes, recorded (writes.py), and one PutEvents entry.
    ordinary = writes.units_of(writes.recorded_refresh(False)["log"])
    changed = writes.units_of(writes.recorded_refresh(True, first=True)["log"])  # a recovery: back from Due
    event_extra_wru = changed["wru"] - ordinary["wru"]

    sqs = model.sqs_requests_per_refresh(batch=batch)
    worker_usage = model.RefreshUsage(write_units=wru, read_units=rru, kms_requests=kms_at_scale, sqs_requests=sqs,
                                      lambda_gb_seconds=gb * worker_s, lambda_requests=1 / batch)
    # An on_demand refresh plans from the Due index (ADR 0023: only eager ones go on a cadence), so its commit
    # moves its Due entry: a delete and a put, as (e) recorded for every refresh before the Cadence index.
    api_usage = model.RefreshUsage(write_units=wru + DUE_MOVE_WRU, read_units=rru, kms_requests=1.0, sqs_requests=0,
                                   lambda_gb_seconds=api_gb * api_s, lambda_requests=0)
    worker_cost = model.cost_per_refresh(worker_usage, prices)
    worker_cost["logs"] = model.logs_cost(log_bytes, more)
    api_cost = model.cost_per_refresh(api_usage, prices)
    # A token read's refresh logs what a worker refresh does; the request's own platform lines are the read's.
    api_cost["logs"] = model.logs_cost((output["bytes"] + output["lines"] * model.LOG_EVENT_OVERHEAD) / batch, more)

    # The naive design, priced the same way: measured units, a sequential invocation, a Scan per sweep.
    naive = naive_run()
    naive_s = api_s  # one refresh after another: CPU and the wait add up
    naive_usage = model.RefreshUsage(write_units=naive["wru"], read_units=0, kms_requests=naive["kms"],
                                     sqs_requests=0, lambda_gb_seconds=api_gb * naive_s, lambda_requests=0)
    naive_cost = model.cost_per_refresh(naive_usage, prices)
    naive_cost["logs"] = 0.0
    naive_bare = dict(naive_cost, dynamodb_writes=naive["table_wru"] * prices.dynamodb_per_million_wru / MILLION)

    print(f"\nScale assumptions (1 M eager connections): {needed:.0f} refreshes/s on average; one worker invocation "
          f"does ~{per_invocation:.0f}/s (batch {batch}, concurrency {settings['concurrency']}, {WAIT_MS:.0f} ms "
          f"TikTok), so ~{containers} "
          f"containers stay warm (WorkerMaxConcurrency default {max_workers}). KMS: each makes one data key per "
          f"5-minute cache window and unwraps every container's keys once (its own too: they leave its cache "
          f"after {UNWRAPPED_MAX_AGE / 60:.0f} min, and a refresh opens tokens sealed {interval / 60:.0f} min "
          f"earlier): {kms_month:,.0f} calls a month, "
          f"{kms_at_scale:.5f} per refresh (one warm container at low load counted {kms_per_refresh:.2f}; "
          "containers assumed to live the month: each recycled container adds a window's GenerateDataKey and "
          f"up to {containers * 20} Decrypts).")
    print(f"SQS: send in batches of 10 (0.1) + the poller's ReceiveMessage of up to {batch} (1/{batch}) + its "
          f"DeleteMessageBatch (1/{batch}) = {sqs:.2f} requests per refresh; idle long polls (5 pollers x 20 s) "
          f"{model.sqs_idle_polls_per_month():,.0f} a month, fixed.")
    print(f"Logs, measured: a warm worker invocation of {batch} refreshes at LogLevel INFO printed {output['bytes']:,} "
          f"bytes in {output['lines']} lines ({output['emf_lines']} EMF metric lines, {output['log_lines']} log "
          f"lines); + {model.LOG_EVENT_OVERHEAD} bytes per line billed + Lambda's START/END/REPORT "
          f"(~{model.LAMBDA_PLATFORM_LOG_BYTES} bytes, assumed) = {log_bytes:.0f} bytes per refresh.")
    print(f"Custom metrics (EMF): {metrics_seen} distinct metrics in an ordinary batch ("
          + ", ".join(name + ("(" + ",".join(f"{d}={v}" for d, v in dims if d != "service") + ")"
                                  if len(dims) > 1 else "") for _, name, dims in output["metrics"])
          + f"); each name + dimension set is ${more.custom_metric_per_month:.2f} a month whatever the volume; "
          "every other outcome and reason seen adds one.")
    print(f"Events: an ordinary refresh publishes none. A state change (e.g. Connection Recovered) costs 1 PutEvents "
          f"entry and {event_extra_wru:g} more WRU, recorded: the event in the commit and the outbox clean-up after "
          f"PutEvents, both over 1 KB with the event in the item ({ordinary['wru']:g} -> {changed['wru']:g} WRU). "
          f"Assumed {STATE_CHANGES_PER_MONTH} state changes per connection per month.")

    labels = {"dynamodb_writes": "DynamoDB writes", "dynamodb_reads": "DynamoDB reads", "kms": "KMS",
              "sqs": "SQS", "lambda_duration": "Lambda duration", "lambda_requests": "Lambda requests",
              "logs": "CloudWatch Logs"}
    rows = [[labels[k], worker_cost[k] * MILLION, api_cost[k] * MILLION, naive_cost[k] * MILLION] for k in labels]
    worker_per, api_per, naive_per = (sum(c.values()) for c in (worker_cost, api_cost, naive_cost))
    rows.append(["total", worker_per * MILLION, api_per * MILLION, naive_per * MILLION])
    print("\nPrices: " + "; ".join(f"{a} {b}" for a, b in [*prices.rows(), *more.rows()]) + " (us-east-1 list "
          "prices as of 2024-2025; free tiers ignored).")
    print(f"\nCost per million refreshes, dollars (worker {wru:.2f} WRU, naive {naive['wru']:.2f} WRU measured on "
          f"the same table: {naive['table_wru']:.0f} for the item, {sum(naive['index_wru'].values()):.0f} for the "
          "Due index it keeps in step):")
    print(table(["service", "worker refresh (sweep -> SQS -> worker)", "on-demand refresh (in a token read)",
                 "naive (Scan + sequential)"], rows))
    print(f"Naive without the Due index (a table of its own): ${sum(naive_bare.values()) * MILLION:.2f} per million. "
          f"It logs nothing and publishes nothing (favouring it); its Scan is priced per sweep below. "
          f"Worker / naive cost per refresh: {worker_per / naive_per:.2f}x.")
    print(f"Goal <= $2.50 per million worker refreshes all-in: ${worker_per * MILLION:.2f} "
          f"({worker_per * MILLION / 2.5:.2f}x the goal); DynamoDB writes alone are "
          f"${worker_cost['dynamodb_writes'] * MILLION:.2f} ({wru:.2f} WRU x $0.625; 4 WRU, $2.50, before the "
          "Cadence index of docs/decisions/0023).")
    floor_saving = (wru - FLOOR_PROPOSAL_WRU) * prices.dynamodb_per_million_wru / MILLION
    if floor_saving > 0:  # a run whose refreshes moved between indexes (state changes) more than ordinary ones
        print(f"Against the floor of docs/decisions/0023-write-unit-floor.md ({FLOOR_PROPOSAL_WRU} WRU per "
              f"ordinary refresh, single-flight kept): ${(worker_per - floor_saving) * MILLION:.2f} per million "
              f"worker refreshes; eager 1 M a month "
              f"${floor_saving * connections * model.eager_refreshes_per_month(7200):,.0f} less (below).")

    # The sweeper's own Lambda time at 1 M, extrapolated from measured per-id time.
    sweep = sweep_seconds_per_due()
    sweeper_memory = settings.get("sweeper_memory_mb", memory_mb)
    due = connections * model.eager_refreshes_per_month(7200) / sweeps
    sends = math.ceil(due / 10)
    sweep_s = model.sweeper_seconds_per_sweep(due=due, seconds_per_due=sweep["per_due"], sends=sends,
                                              send_cpu_ms=boto["SendMessageBatch (10 ids)"], send_wait_ms=10,
                                              threads=8, memory_mb=sweeper_memory)
    sweeper_month = sweep_s * sweeper_memory / 1024 * sweeps * prices.lambda_arm64_per_gb_second
    print("\nSweeper Lambda time at 1 M eager (extrapolated, not measured at that size): "
          f"{sweep['per_due'] * 1e6:.0f} us in-process per due id (measured: {sweep['due']:,} due in "
          f"{sweep['seconds'] * 1000:.0f} ms) and "
          f"{boto['SendMessageBatch (10 ids)']:.2f} ms client CPU per SendMessageBatch, at {sweeper_memory} MB "
          f"({model.lambda_cpu_share(sweeper_memory):.3f} vCPU), + 10 ms per send over 8 threads: {due:,.0f} ids, "
          f"{sweep_s:.1f} s a sweep, ${sweeper_month:,.2f} a month.")

    # A month at 1 M connections.
    due_entry = model.item_size({"connection_id": run["item"]["connection_id"], "due_shard": 15,
                                 "next_refresh_at": 1_800_005_700})

    def fixed(worker_refreshes: float) -> dict[str, float]:
        swept = connections * worker_refreshes / sweeps
        queries = 2 * 16 + int(swept // 500)
        sweep_rru = model.query_read_units(int(swept * due_entry), queries=queries) * sweeps
        sweep_rru += model.read_units(100) * sweeps
        sweep_rru += model.query_read_units(0, queries=2 * (MAX_DUE_SHARDS - 16)) * 30 * 86_400 / SHARD_AUDIT_INTERVAL
        scale = worker_refreshes / model.eager_refreshes_per_month(7200)
        return {
            "sweep reads + schedule": sweep_rru * prices.dynamodb_per_million_rru / MILLION
            + model.scheduler_cost_per_month(prices),
            "sweeper Lambda": sweeper_month * scale + sweeps * prices.lambda_per_million_requests / MILLION,
            "SQS idle polls": model.sqs_idle_polls_per_month() * prices.sqs_per_million_requests / MILLION,
            "custom metrics": metrics_seen * more.custom_metric_per_month,
            "state changes": connections * STATE_CHANGES_PER_MONTH * (
                more.eventbridge_per_million_events + event_extra_wru * prices.dynamodb_per_million_wru) / MILLION,
        }

    # Counted in the simulated world through the real sweep, worker and token route (part (g)), per connection a
    # day, at the stated mix; plus each active connection waking once a month (one synchronous refresh).
    measured = adaptive_bench.measure("adaptive")
    adaptive = {"worker": 30 * measured["worker"],
                "synchronous": 30 * measured["synchronous"] + ADAPTIVE_ACTIVE * measured["wakeups_per_active"],
                "read_mark_wru": 30 * measured["mark_wru"],
                # the worker's moves between the Due index and a cadence, and its keep-alives' Due moves (ADR 0023)
                "worker_index_wru": 30 * measured["worker_index_wru"]}
    scenarios = [
        ("eager", model.eager_refreshes_per_month(7200), 0.0, 0.0),
        (f"on_demand ({ON_DEMAND_READS} reads/day, keep-alive pre-empted)", 0.0,
         model.on_demand_refreshes_per_month(ON_DEMAND_READS, 0), 0.0),
        # A keep-alive is planned in the Due index: the worker's price plus the move of its Due entry.
        ("on_demand bound (+1 keep-alive/day)", model.on_demand_refreshes_per_month(0, 1),
         model.on_demand_refreshes_per_month(ON_DEMAND_READS, 0),
         model.on_demand_refreshes_per_month(0, 1) * DUE_MOVE_WRU * prices.dynamodb_per_million_wru / MILLION),
        (f"adaptive, {ADAPTIVE_ACTIVE:.0%} active daily (measured, (g))", adaptive["worker"],
         adaptive["synchronous"],
         (adaptive["read_mark_wru"] + adaptive["worker_index_wru"]) * prices.dynamodb_per_million_wru / MILLION),
    ]
    rows, monthly = [], {}
    for name, worker_refreshes, api_refreshes, extra in scenarios:
        parts = fixed(worker_refreshes)
        refresh_cost = connections * (worker_refreshes * worker_per + api_refreshes * api_per + extra)
        total = refresh_cost + sum(parts.values())
        monthly[name] = total
        rows.append([name, worker_refreshes + api_refreshes, refresh_cost, *parts.values(), total])
    naive_scan_rru = model.read_units(int(connections * naive["item_bytes"]), consistent=False) * sweeps
    naive_month = (connections * model.eager_refreshes_per_month(7200) * naive_per
                   + naive_scan_rru * prices.dynamodb_per_million_rru / MILLION
                   + model.scheduler_cost_per_month(prices))
    rows.append(["naive, eager cadence (Scan every 5 min)", model.eager_refreshes_per_month(7200),
                 connections * model.eager_refreshes_per_month(7200) * naive_per,
                 naive_scan_rru * prices.dynamodb_per_million_rru / MILLION, 0, 0, 0, 0, naive_month])
    monthly["naive"] = naive_month
    print(f"\nA month (30 days) at {connections:,} connections, 2 h access tokens, dollars:")
    print(table(["policy", "refreshes/connection", "refreshes $", *fixed(0).keys(), "total $ / month"], rows))
    goal_eager, goal_adaptive = 1200.0, 400.0
    adaptive_name = scenarios[-1][0]
    eager_floor = monthly["eager"] - floor_saving * connections * model.eager_refreshes_per_month(7200)
    print(f"Goals: eager <= ${goal_eager:,.0f}: ${monthly['eager']:,.0f} ({monthly['eager'] / goal_eager:.2f}x the "
          f"goal, the Cadence index of ADR 0023 built; ${eager_floor:,.0f} at exactly {FLOOR_PROPOSAL_WRU} WRU); "
          f"adaptive <= ${goal_adaptive:,.0f} at {ADAPTIVE_ACTIVE:.0%} active: ${monthly[adaptive_name]:,.0f} "
          f"({monthly[adaptive_name] / goal_adaptive:.2f}x; measured). Adaptive's refreshes and read-mark write "
          f"units are counted in (g) ({adaptive['read_mark_wru']:.2f} WRU per connection a month, and "
          f"{adaptive['worker_index_wru']:.2f} WRU of the worker's index moves), plus each active "
          "connection waking once a month (one synchronous refresh, on-demand price). The naive row cannot run at "
          "this scale: one sequential invocation does "
          f"~{1000 / (naive_s * 1000):.0f} refreshes/s against {needed:.0f}/s needed, and its Scan reads "
          f"{connections * naive['item_bytes'] / 1e9:.2f} GB every 5 minutes. Not included: storage, PITR, the token "
          "reads themselves, data transfer.")
    timeout = int(cfn.template()["Resources"]["SweeperFunction"]["Properties"].get("Timeout", 60))
    return {
        "sweeper_s": sweep_s, "sweeper_timeout": timeout, "needed_per_s": needed, "containers": containers,
        "worker_capacity_per_s": per_invocation * max_workers, "written_max": run["written_max"],
        "item_bytes": breakdown["size"], "item_bytes_real_kms": breakdown["real_kms_size"], "wru": wru, "rru": rru,
        "index_wru": index_wru, "kms_per_refresh": kms_per_refresh, "kms_at_scale": kms_at_scale, "cpu_ms": cpu_ms,
        "cpu_in_process_ms": cpu["ms"], "botocore_ms": boto_ms, "worker_ms_billed": worker_s * 1000,
        "worker_per_million": worker_per * MILLION, "api_per_million": api_per * MILLION,
        "naive_per_million": naive_per * MILLION, "naive_bare_per_million": sum(naive_bare.values()) * MILLION,
        "naive_wru": naive["wru"], "monthly": monthly, "per_day": per_day, "log_bytes": log_bytes,
        "metrics": metrics_seen, "event_extra_wru": event_extra_wru, "sqs": sqs,
        "gets": calls["get"] / per, "updates": updates, "max_workers": max_workers,
        "worker_cpu_wall_ms": cpu_ms / share, "eager_floor": eager_floor,
        "worker_floor_per_million": (worker_per - floor_saving) * MILLION,
        "by_service": {k: v * MILLION for k, v in worker_cost.items()},
    }
