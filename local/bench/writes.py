"""(e) Write units per refresh, recorded call by call, and the connection item's size against the 1 KB write unit.

A refresh runs in the simulated world over the bench's CountingItemStore, which prices every request the refresh
makes with DynamoDB's size rules (local/bench/model.py) from the item before and after it; nothing is guessed.
The KMS stand-in wraps data keys into blobs of real KMS's size (184 bytes) and the simulated TikTok issues tokens
longer than TikTok's documented examples, so the item is the size it would be in AWS. Three refreshes: an
ordinary one (no state change: the connection is on its cadence, ADR 0023), the first after the connect (it moves
the connection from the Due index to its Cadence family, once), and one that publishes an event (at_risk ->
active: Connection Recovered), whose outbox costs its own writes.
"""

from __future__ import annotations

from typing import Any

from oauth_keeper.adapters.connections import connection_from_item

from local.bench import model
from local.bench.common import CountingItemStore, RealSizeKms, quiet, table, world_services
from local.memory import MemoryItemStore
from local.simulation import World

DUE_STEP = 100 * 60
DOCUMENTED_TOKEN = len("act.example12345Example12345Example")  # TikTok's documented example tokens: 35 characters
GETITEM_ROUND_TRIP_MS = 5.0  # assumed: a strongly consistent GetItem in the same region


def _purpose(index: int, entry: dict[str, Any]) -> str:
    if entry["op"] == "GetItem":
        return "read the connection"
    attributes = set(entry.get("attributes", ()))
    if "lease_owner" in attributes and "tokens" not in attributes:
        return "lease (ReturnValues=ALL_NEW: the read)" if entry.get("returning") else "lease"
    if "tokens" in attributes:
        return "commit" + (" (+ outbox event)" if any(a.startswith("ob_") for a in attributes) else "")
    if any(a.startswith("ob_") for a in attributes):
        return "outbox clean-up (after PutEvents)"
    return "other"


def recorded_refresh(at_risk: bool, *, first: bool = False) -> dict[str, Any]:
    """One refresh of a connection, every request it made, priced; the largest item it wrote. The connection has
    been refreshed once before (so it is on its cadence), unless `first` (the refresh after the connect)."""
    world = World.create()
    counting = CountingItemStore(MemoryItemStore())
    services = world_services(world, items=counting, kms=RealSizeKms())
    with quiet():
        connection = world.connect("user", owner_id="owner")
        world.clock.advance(DUE_STEP)
        services.refresher.refresh(world.connect("warm", owner_id="warm").connection_id, force=True)  # data key
        if not first:
            services.refresher.refresh(connection.connection_id)
            planned = counting.inner.get(connection.connection_id)["next_refresh_at"]
            world.clock.advance(planned - world.clock.now())
        if at_risk:
            counting.inner.update(connection.connection_id, set={"status": "at_risk"}, expect={})
        counting.log, counting.largest = [], None
        outcome = services.refresher.refresh(connection.connection_id)
    log = [e for e in counting.log if e["key"] == connection.connection_id]
    item = counting.inner.get(connection.connection_id)
    tokens = services.connections.open_tokens(connection_from_item(item))
    return {"log": log, "outcome": str(outcome.result), "largest": counting.largest, "item": item,
            "token_lengths": (len(tokens["access_token"]), len(tokens["refresh_token"])),
            "cipher": services.cipher, "connection": connection_from_item(item)}


def units_of(log: list[dict[str, Any]]) -> dict[str, float]:
    wru = sum(sum(e["wru"].values()) for e in log if "wru" in e)
    table_wru = sum(e["wru"].get("table", 0) for e in log if "wru" in e)
    return {"wru": wru, "table_wru": table_wru, "index_wru": wru - table_wru,
            "rru": sum(e.get("rru", 0) for e in log), "writes": sum(1 for e in log if "wru" in e),
            "reads": sum(1 for e in log if e["op"] == "GetItem")}


def crossing_token_length(run: dict[str, Any]) -> tuple[int, int]:
    """The token length (access and refresh token alike) at which the largest item a refresh writes passes 1 KB,
    and that item's size with the documented example's length."""
    largest, cipher, connection = run["largest"], run["cipher"], run["connection"]

    def size(length: int) -> int:
        tokens = {"access_token": "a" * length, "refresh_token": "r" * length, "token_type": "Bearer"}
        sealed = cipher.seal(tokens, connection.binding(connection.token_version))
        return model.item_size({**largest, "tokens": sealed})

    length = DOCUMENTED_TOKEN
    while size(length) <= model.WRITE_UNIT_BYTES:
        length += 1
    return length, size(DOCUMENTED_TOKEN)


def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    runs = {"ordinary refresh": recorded_refresh(False),
            "first refresh after the connect (Due -> Cadence, once)": recorded_refresh(False, first=True),
            "refresh with a state change": recorded_refresh(True, first=True)}
    results: dict[str, Any] = {}
    for name, run in runs.items():
        rows = []
        for i, entry in enumerate(run["log"]):
            wru = entry.get("wru", {})
            rows.append([_purpose(i, entry), entry["op"], entry["size"], wru.get("table", "-"),
                         " + ".join(f"{k} {v}" for k, v in wru.items() if k != "table") or "-", entry.get("rru", "-")])
        units = units_of(run["log"])
        print(f"\n{name} ({run['outcome']}): {units['reads']} GetItem, {units['writes']} UpdateItem, "
              f"{units['wru']:g} WRU ({units['table_wru']:g} table + {units['index_wru']:g} index), "
              f"{units['rru']:g} RRU")
        print(table(["purpose", "request", "item bytes", "table WRU", "index WRU", "RRU"], rows))
        results[name] = units
    ordinary = runs["ordinary refresh"]
    length, documented_size = crossing_token_length(ordinary)
    largest = model.item_size(ordinary["largest"])
    access, refresh = ordinary["token_lengths"]
    print(f"\nItem size: the largest item a refresh writes (the lease write) is {largest} bytes with a "
          f"{RealSizeKms.BLOB}-byte KMS blob and the simulated TikTok's tokens ({access} and {refresh} characters; "
          f"TikTok's documented examples are {DOCUMENTED_TOKEN}); {documented_size} bytes at the documented length. "
          f"It crosses 1 KB (one more write unit on every write) at tokens of {length} characters each. "
          f"tests/unit/test_bench_items.py asserts it stays under 1 KB.")
    ordinary_units = results["ordinary refresh"]
    print(f"\nThe lease is one UpdateItem with ReturnValues=ALL_NEW (built, issue 16): no GetItem before it, "
          f"{ordinary_units['rru']:g} RRU per refresh (a strongly consistent GetItem of this item was 1 RRU, $0.125 "
          f"per million refreshes at $0.125 per million RRU, and a round trip, ~{GETITEM_ROUND_TRIP_MS:.0f} ms in "
          "AWS); an UpdateItem's ReturnValues costs no read units. Its condition (a live status, no lease, no "
          "event waiting, due) holds for the messages the sweep queues; a message that fails it (a duplicate, "
          "a connection not due) costs a failed conditional write (1 WRU, $0.625 per million) instead of a 1 RRU "
          "read, and the item the failed condition returns (ReturnValuesOnConditionCheckFailure) is decided on "
          "without a read.")
    print(f"\nThe Cadence index (built, docs/decisions/0023-write-unit-floor.md): an ordinary refresh keeps its "
          f"family and phase, so its commit writes no index key: {ordinary_units['wru']:g} WRU "
          f"({ordinary_units['table_wru']:g} table + {ordinary_units['index_wru']:g} index; the Due index made it "
          "4). Moving between the Due index and a family (after the connect, a retry, a parking) costs the delete "
          "and the put it cost before, once per move.")
    return {"units": results, "item_bytes": largest, "documented_item_bytes": documented_size,
            "crossing_length": length, "token_lengths": (access, refresh), "getitem_rru": ordinary_units["rru"]}
