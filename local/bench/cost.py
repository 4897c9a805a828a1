"""(d) Cost model: what one refresh costs in DynamoDB, KMS, SQS and Lambda, and what that makes a month.

Measured, not guessed: the simulated world (in-process TikTok, in-memory table and KMS) runs CONNECTIONS
connections through HOURS of sweeps with its item store wrapped in counters that price every GetItem,
UpdateItem and Query with DynamoDB's size rules (local/bench/model.py); FakeKms counts KMS calls in one warm
container; Lambda CPU per refresh is measured in-process with no network latency (the simulated TikTok's own
CPU subtracted), plus botocore's client-side CPU per DynamoDB call measured against canned answers.
"""

from __future__ import annotations

import json
import threading
import time
from base64 import b64encode
from typing import Any

from oauth_keeper.adapters.dynamodb import DynamoItemStore
from oauth_keeper.adapters.sqs import SqsRefreshQueue
from oauth_keeper.domain.schedule import MAX_DUE_SHARDS, SHARD_AUDIT_INTERVAL
from oauth_keeper.usecases.worker import process_records

from local import cfn
from local.bench import model
from local.bench.common import CountingItemStore, median, quiet, records_for, table, world_services
from local.bench.sweep_reads import _dummy_aws_env
from local.memory import MemoryItemStore
from local.simulation import World

CONNECTIONS = 200
HOURS = 12
CPU_CONNECTIONS = 200
CPU_REPEATS = 3
BOTO_CALLS = 300
WAIT_MS = 100.0  # assumed network wait per refresh: TikTok's answer (DynamoDB round trips overlap in threads)
REAL_KMS_BLOB = 184  # bytes: a CiphertextBlob for a 256-bit data key from real KMS (FakeKms's is 60); assumed
ON_DEMAND_READS = 3  # token reads per connection per day
DUE_STEP = 100 * 60
MILLION = 1_000_000


def template_settings() -> dict[str, Any]:
    """The refresh worker's memory and SQS batch size, and the worker concurrency cap, from template.yaml."""
    template = cfn.template()
    worker = template["Resources"]["RefreshWorkerFunction"]["Properties"]
    memory = int(worker.get("MemorySize", template["Globals"]["Function"]["MemorySize"]))
    batch = next((int(e["Properties"].get("BatchSize", 10)) for e in worker.get("Events", {}).values()
                  if e["Type"] == "SQS"), 10)
    max_workers = int(template["Parameters"].get("WorkerMaxConcurrency", {}).get("Default", 5))
    return {"memory_mb": memory, "batch": batch, "max_workers": max_workers}


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
        client.meta.events.register("before-send.dynamodb.UpdateItem",
                                    lambda request, **_: AWSResponse(request.url, 200, headers, _Raw(b"{}")))
        store = DynamoItemStore(client, "bench-connections")
        key = item["connection_id"]
        lease = {"lease_owner": "3f2b0c4e-5d1a-4c3e-9f7a-0b1c2d3e4f50", "lease_expires_at": 1_800_000_020,
                 "refresh_in_doubt": None, "revision": 8}
        commit = {k: v for k, v in item.items() if k != "connection_id"}
        operations = {
            "GetItem": lambda: store.get(key),
            "UpdateItem (lease)": lambda: store.update(key, set=lease, expect={"revision": 7}),
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
    memory_mb, batch = settings["memory_mb"], settings["batch"]
    prices = model.Prices()
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
         "per sweep, not per refresh (16 Due + 16 Outbox)"],
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
                                                concurrency=8, batch=batch)
    api_s = (cpu_ms / share + WAIT_MS) / 1000
    print(f"\nLambda CPU per refresh (x86_64 here): {cpu['ms']:.2f} ms in-process (worker, concurrency 8; the "
          f"simulated TikTok's own {cpu['fake_ms']:.2f} ms taken out) + botocore client side {boto_ms:.2f} ms "
          f"(GetItem {boto['GetItem']:.2f}, lease UpdateItem {boto['UpdateItem (lease)']:.2f}, commit UpdateItem "
          f"{boto['UpdateItem (commit)']:.2f} ms per call) = {cpu_ms:.2f} ms.")
    print(f"At {memory_mb} MB a function gets {share:.3f} of a vCPU ({memory_mb}/{model.LAMBDA_MB_PER_VCPU}): "
          f"{cpu_ms / share:.1f} ms of wall time per refresh for the CPU alone. Network wait assumed {WAIT_MS:.0f} ms "
          f"per refresh (TikTok), overlapped 8 at a time: a batch of {batch} takes max(CPU {batch} x "
          f"{cpu_ms / share:.1f} ms, waits {-(-batch // 8)} x {WAIT_MS:.0f} ms) = {worker_s * batch * 1000:.0f} ms, "
          f"{worker_s * 1000:.1f} ms billed per refresh (sum instead of max: "
          f"{(batch * cpu_ms / share + -(-batch // 8) * WAIT_MS) / batch:.1f} ms). x86 and Graviton differ: "
          f"a rough figure.")

    gb = memory_mb / 1024
    worker_usage = model.RefreshUsage(write_units=wru, read_units=rru, kms_requests=kms_per_refresh,
                                      sqs_requests=0.1 + 1 + 1, lambda_gb_seconds=gb * worker_s,
                                      lambda_requests=1 / batch)
    api_usage = model.RefreshUsage(write_units=wru, read_units=rru, kms_requests=1.0, sqs_requests=0,
                                   lambda_gb_seconds=gb * api_s, lambda_requests=0)
    worker_cost = model.cost_per_refresh(worker_usage, prices)
    api_cost = model.cost_per_refresh(api_usage, prices)

    print("\nPrices used (us-east-1, on-demand list prices as of 2024-2025; they may change; free tiers ignored):")
    print(table(["service", "price"], prices.rows()))
    labels = {"dynamodb_writes": "DynamoDB writes", "dynamodb_reads": "DynamoDB reads", "kms": "KMS",
              "sqs": "SQS", "lambda_duration": "Lambda duration", "lambda_requests": "Lambda requests"}
    usage_of = {
        "dynamodb_writes": lambda u: f"{u.write_units:.2f} WRU", "dynamodb_reads": lambda u: f"{u.read_units:.2f} RRU",
        "kms": lambda u: f"{u.kms_requests:.3g} requests", "sqs": lambda u: f"{u.sqs_requests:.2g} requests",
        "lambda_duration": lambda u: f"{u.lambda_gb_seconds * 1000:.2f} GB-ms",
        "lambda_requests": lambda u: f"{u.lambda_requests:.2g} invocations",
    }
    rows = [[labels[k], usage_of[k](worker_usage), worker_cost[k] * MILLION, usage_of[k](api_usage),
             api_cost[k] * MILLION] for k in labels]
    rows.append(["total", "", sum(worker_cost.values()) * MILLION, "", sum(api_cost.values()) * MILLION])
    print("\nCost per million refreshes, in dollars:")
    print(table(["service", "worker refresh (sweep -> SQS)", "$ / M", "on-demand refresh (token read)", "$ / M"], rows))
    print("Worker: SQS = send in batches of 10 (0.1) + one receive + one delete per message (Lambda's poller batches "
          "those too: ~0.3 then); KMS as counted in one warm container (lower per refresh at scale: calls go by "
          "container and 5-minute window, not by refresh). On-demand: inside the token-read request (no SQS, no "
          f"extra invocation), not overlapped: CPU + {WAIT_MS:.0f} ms; 1 KMS call assumed (a data key sealed "
          "hours ago).")

    # A month at one million connections.
    worker_per = sum(worker_cost.values())
    api_per = sum(api_cost.values())
    due_entry = model.item_size({"connection_id": run["item"]["connection_id"], "due_shard": 15,
                                 "next_refresh_at": 1_800_005_700})
    sweeps = model.sweeps_per_month()
    connections = MILLION
    scenarios = [
        ("eager", model.eager_refreshes_per_month(7200), 0.0),
        ("on_demand (3 reads/day, keep-alive pre-empted)", 0.0,
         model.on_demand_refreshes_per_month(ON_DEMAND_READS, 0)),
        ("on_demand bound (+1 keep-alive/day)", model.on_demand_refreshes_per_month(0, 1),
         model.on_demand_refreshes_per_month(ON_DEMAND_READS, 0)),
    ]
    rows, monthly = [], {}
    for name, worker_refreshes, api_refreshes in scenarios:
        swept = connections * worker_refreshes / sweeps  # ids returned per sweep
        queries = 2 * 16 + int(swept // 500)
        sweep_rru = model.query_read_units(int(swept * due_entry), queries=queries) * sweeps
        # The shard span record (a strongly consistent GetItem a sweep) and the daily audit of the empty shards
        # above 16 (two queries each).
        sweep_rru += model.read_units(100) * sweeps
        sweep_rru += model.query_read_units(0, queries=2 * (MAX_DUE_SHARDS - 16)) * 30 * 86_400 / SHARD_AUDIT_INTERVAL
        sweep_cost = sweep_rru * prices.dynamodb_per_million_rru / MILLION + model.scheduler_cost_per_month(prices)
        refresh_cost = connections * (worker_refreshes * worker_per + api_refreshes * api_per)
        total = refresh_cost + sweep_cost
        monthly[name] = total
        rows.append([name, worker_refreshes + api_refreshes, (worker_refreshes + api_refreshes) * connections / MILLION,
                     refresh_cost, sweep_cost, total])
    print(f"\nA month (30 days) at {connections:,} connections, 2 h access tokens, one sweep every 5 min "
          f"({sweeps:,.0f} Scheduler invocations):")
    print(table(["policy", "refreshes/connection", "million refreshes", "refresh $", "schedule + sweep reads $",
                 "total $ / month"], rows))
    print("Eager: one refresh per 96 min (access lifetime less max(15 min, 20%)). Not included: storage, PITR, "
          "the token reads themselves, CloudWatch logs and metrics, the sweeper's own Lambda time, data transfer.")
    # Scale check: can the defaults keep up with one million eager connections?
    timeout = int(cfn.template()["Resources"]["SweeperFunction"]["Properties"].get("Timeout", 60))
    due = connections * model.eager_refreshes_per_month(7200) / sweeps
    sends = -(-int(due) // 10)
    send_cpu_s = sends * boto["SendMessageBatch (10 ids)"] / 1000 / share
    send_rtt_s = sends * 10 / 1000
    needed = connections * model.eager_refreshes_per_month(7200) / model.MONTH_SECONDS
    per_invocation = 1 / worker_s
    print(f"\nScale check, eager at {connections:,} connections (estimates from the figures above):")
    print(f"- sweeper: {due:,.0f} ids due every 5 min -> {sends:,} SendMessageBatch calls one after another: "
          f"{send_cpu_s:.0f} s of CPU at {memory_mb} MB (measured {boto['SendMessageBatch (10 ids)']:.2f} ms "
          f"client CPU per call here) + {send_rtt_s:.0f} s of round trips at an assumed 10 ms each, against its "
          f"{timeout} s timeout.")
    print(f"- workers: {needed:.0f} refreshes/s needed on average; one invocation does ~{per_invocation:.0f}/s "
          f"(batch {batch}, {WAIT_MS:.0f} ms TikTok, concurrency 8), WorkerMaxConcurrency default "
          f"{settings['max_workers']} -> ~{per_invocation * settings['max_workers']:.0f}/s.")
    return {
        "sweeper_send_s": send_cpu_s + send_rtt_s, "sweeper_timeout": timeout, "needed_per_s": needed,
        "worker_capacity_per_s": per_invocation * settings["max_workers"], "written_max": run["written_max"],
        "item_bytes": breakdown["size"], "item_bytes_real_kms": breakdown["real_kms_size"], "wru": wru, "rru": rru,
        "index_wru": index_wru, "kms_per_refresh": kms_per_refresh, "cpu_ms": cpu_ms, "cpu_in_process_ms": cpu["ms"],
        "botocore_ms": boto_ms, "worker_ms_billed": worker_s * 1000, "worker_per_million": worker_per * MILLION,
        "api_per_million": api_per * MILLION, "monthly": monthly, "per_day": per_day,
        "gets": calls["get"] / per, "updates": updates, "max_workers": settings["max_workers"],
        "worker_cpu_wall_ms": cpu_ms / share,
    }
