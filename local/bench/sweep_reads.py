"""(b) Sweep read cost: what one sweep's index queries return, against what is due and what a Scan would read.

The connections are written straight into a MemoryItemStore (GSI-like partitions; `read_items` counts what
the queries returned) with the attributes the code writes: a real connection item, taken from the simulated
world after a refresh, cloned with new ids and ConnectionStore.schedule_attributes / shard_of. 1% of them
are due. Then `oauth_keeper.usecases.sweep.Sweep.run` runs once with a list queue. The 10,000 case runs once more on
moto's DynamoDB (the template's own table definition, DynamoItemStore) to show DynamoDB's path returns the
same ids; moto walks every item for a query, so only its counts mean anything, not its time.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any

from oauth_keeper.adapters.dynamodb import DynamoItemStore
from oauth_keeper.domain.connection import derived_connection_id
from oauth_keeper.domain.schedule import MAX_DUE_SHARDS

from local import cfn
from local.bench import model
from local.bench.common import CountingItemStore, environment, quiet, table, world_services
from local.memory import ListQueue, MemoryItemStore
from local.simulation import World
from local.stack import sweep_into

SIZES = (10_000, 100_000)
DUE_SHARE = 0.01
MOTO_SIZE = 10_000
SEED = 7


def sample_item() -> dict[str, Any]:
    """A real connection item as the refresher leaves it: connect, move past the refresh time, refresh."""
    world = World.create(direct_http=True)
    with quiet():
        connection = world.connect("template-user", owner_id="template-owner")
        world.clock.advance(100 * 60)
        world.services.refresher.refresh(connection.connection_id)
    return world.store.items.get(connection.connection_id)


def build_items(count: int, template: dict[str, Any], store_for_shards: Any, now: int,
                rng: random.Random) -> tuple[list[dict[str, Any]], set[str]]:
    """`count` connections cloned from `template`; DUE_SHARE of them due at `now`, the rest later."""
    horizon = now + 300
    due_count = round(count * DUE_SHARE)
    items, due = [], set()
    for i in range(count):
        owner, account = f"owner-{i:09d}", f"-000{i:032d}"  # TikTok open_ids: "-000" + 32 characters
        cid = derived_connection_id(owner, "tiktok", account)  # any id will do: reproducible
        if i < due_count:
            next_at = now - rng.randint(0, 300)
            due.add(cid)
        else:
            next_at = horizon + 1 + rng.randint(0, 5400)
        item = dict(template)
        item.update({"connection_id": cid, "owner_id": owner, "account_id": account,
                     "account_key": f"tiktok#{account}", "created_at": now - rng.randint(0, 86400 * 90)})
        item.update(store_for_shards.schedule_attributes(cid, next_at))
        items.append({k: v for k, v in item.items() if v is not None})
    return items, due


def due_entry_bytes(items: list[dict[str, Any]], ids: set[str]) -> int:
    """Bytes the Due index returns for these ids (KEYS_ONLY: table key + index keys)."""
    keys = ("connection_id", "due_shard", "next_refresh_at")
    return sum(model.item_size({k: item[k] for k in keys}) for item in items if item["connection_id"] in ids)


def run_memory(count: int, template: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    inner = MemoryItemStore()
    counting = CountingItemStore(inner)
    world = World.create(direct_http=True)
    services = world_services(world, items=counting)
    world.clock.advance(600)  # an ordinary tick: the first of each hour also looks for implausible plans
    now = int(services.clock.now())
    items, due = build_items(count, template, services.connections, now, rng)
    for item in items:
        key = item["connection_id"]
        inner.update(key, set={k: v for k, v in item.items() if k != "connection_id"}, expect={})
    with quiet():  # a table's first sweep also audits every shard up to MAX_DUE_SHARDS: measured apart
        sweep_into(ListQueue(), services)
    audit_calls, audit_units = counting.snapshot()
    inner.read_items = 0
    queue = ListQueue()
    started = time.perf_counter()
    with quiet():
        report = sweep_into(queue, services)
    elapsed = time.perf_counter() - started
    calls, units = counting.snapshot()
    queries = sum(v for k, v in (calls - audit_calls).items() if k.startswith("query_"))
    return {
        "count": count, "due": len(due), "returned": inner.read_items, "queued": len(queue.messages),
        "same_ids": set(queue.messages) == due, "queries": queries, "report": report.as_dict(),
        "gets": (calls - audit_calls)["span_get"], "get_rru": (units - audit_units)["span_read"],
        "first_sweep_probes": sum(v for k, v in audit_calls.items() if k.startswith("probe_")),
        "scan_items": count, "scan_bytes": sum(model.item_size(i) for i in items),
        "returned_bytes": due_entry_bytes(items, set(queue.messages)), "seconds": elapsed,
        "items": items, "due_ids": due, "now": now,
    }


@contextmanager
def _dummy_aws_env():
    from local.stack import DUMMY_CREDENTIALS

    with environment(DUMMY_CREDENTIALS):
        yield


def run_moto(items: list[dict[str, Any]], due: set[str], now: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws
    from oauth_keeper.adapters.dynamodb import to_item

    from local.stack import REGION

    with _dummy_aws_env(), mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        table_name = "bench-connections"
        client.create_table(**cfn.table_definition("ConnectionsTable", table_name))
        started = time.perf_counter()
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": to_item(i)}} for i in items[start:start + 25]]
            pending = {table_name: batch}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        write_seconds = time.perf_counter() - started
        store = DynamoItemStore(client, table_name)
        world = World.create(direct_http=True)
        world.clock.advance(now - world.clock.now())
        services = world_services(world, items=store)
        with quiet():
            sweep_into(ListQueue(), services)  # the first sweep's audit, as in run_memory
        store.read_items = 0
        queue = ListQueue()
        with quiet():
            report = sweep_into(queue, services)
        return {"returned": store.read_items, "queued": len(queue.messages), "same_ids": set(queue.messages) == due,
                "write_seconds": write_seconds, "report": report.as_dict()}


def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    rng = random.Random(SEED)  # noqa: S311 - spreading test data, not secrets
    template = sample_item()
    print(f"Template item: {len(template)} attributes, {model.item_size(template)} bytes (DynamoDB size rule); "
          f"{DUE_SHARE:.0%} due; 16 shards; page size 500.\n")
    runs = []
    for count in SIZES:
        runs.append(run_memory(count, template, rng))

    moto = None
    ten_k = next((r for r in runs if r["count"] == MOTO_SIZE), None)
    if ten_k is not None:
        moto = run_moto(ten_k["items"], ten_k["due_ids"], ten_k["now"])

    rows = []
    for r in runs:
        sweep_rru = model.query_read_units(r["returned_bytes"], queries=r["queries"]) + r["get_rru"]
        scan_rru = model.read_units(r["scan_bytes"], consistent=False)
        rows.append(["memory", r["count"], r["due"], r["returned"], r["queued"], r["same_ids"], r["queries"],
                     r["scan_items"], f"{sweep_rru:g}", f"{scan_rru:,.0f}", f"{r['seconds'] * 1000:.0f}"])
    if moto is not None:
        r = ten_k
        rows.append(["moto", r["count"], r["due"], moto["returned"], moto["queued"], moto["same_ids"], "-",
                     r["scan_items"], "-", "-", "(not meaningful)"])
    print(table(["store", "connections", "due", "sweep returned", "queued", "queued = due ids", "queries",
                 "Scan would read", "sweep RRU", "Scan RRU", "sweep ms"], rows))
    print("\nsweep returned = items the Due and Outbox queries returned (read_items). RRU: index queries and a Scan "
          "are eventually consistent (0.5 unit per started 4 KB, at least one unit per query); the Due index is "
          "KEYS_ONLY, so a returned entry is ~60 bytes, while a Scan reads every whole item.")
    first = runs[0]
    print(f"Each sweep also reads the shard span record ({first['gets']} GetItem, {first['get_rru']:g} RRU, in "
          f"'sweep RRU'). A table's first sweep, one an hour later and then one a day also probe every shard above "
          f"16 up to {MAX_DUE_SHARDS} ({first['first_sweep_probes']} more queries with Limit=1, "
          f"{model.query_read_units(0, queries=first['first_sweep_probes']):g} RRU when empty).")
    if moto is not None:
        print(f"moto: {MOTO_SIZE:,} items written with batch_write_item in {moto['write_seconds']:.1f} s; "
              f"DynamoItemStore.read_items = {moto['returned']} (memory: {ten_k['returned']}).")
    for r in runs:
        r.pop("items", None)
        r.pop("due_ids", None)
    return {"runs": runs, "moto": moto, "template_bytes": model.item_size(template)}
