"""Helpers every benchmark section shares: tables, quiet logs, an instrumented item store, worlds to run in."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from oauth_keeper.adapters.connections import SHARD_SPAN_KEY
from oauth_keeper.ports import INDEXES, ItemStore, TransactWrite, WriteResult
from oauth_keeper.root import Container
from oauth_keeper.settings import Settings

from local.bench import model
from local.memory import FakeKms
from local.simulation import World


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set for the block, each key put back as it was (unset if it was) after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Iterable[float], form: str = "{:.2f}") -> str:
    """min / median / max of repeated runs, e.g. "9.1 / 9.6 / 9.8x"."""
    ordered = sorted(values)
    return " / ".join(form.format(v) for v in (ordered[0], statistics.median(ordered), ordered[-1]))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, columns padded so it also reads in a terminal."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the layer's JSON logs and the EMF metric blobs Powertools prints every 100 values."""
    from oauth_keeper.observability import logger

    level = logger.log_level
    logger.setLevel("CRITICAL")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


class CountingItemStore:
    """Wraps an ItemStore: counts every get/update/query and prices each one with the DynamoDB size rules.

    Sizes come from peeking at the wrapped store before and after each write (peeks are not counted). A
    failed conditional write is priced too: DynamoDB charges for it.
    """

    def __init__(self, inner: ItemStore) -> None:
        self.inner = inner
        self.key_name = inner.key_name
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.units: Counter[str] = Counter()  # "table_write", "<index>_write", "read", "query_items"
        self.written_sizes: list[int] = []
        self.largest: dict[str, Any] | None = None  # the largest item any write left behind
        self.log: list[dict[str, Any]] | None = None  # set to [] to record every call with its units

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            return Counter(self.calls), Counter(self.units)

    def get(self, key: str, attributes: Sequence[str] = ()) -> dict[str, Any] | None:
        item = self.inner.get(key, attributes)
        span = "span_" if key == SHARD_SPAN_KEY else ""  # the sweep's own record: per sweep, not per refresh
        with self._lock:
            self.calls[f"{span}get"] += 1
            self.units[f"{span}read"] += model.read_units(model.item_size(item or {}))  # a miss still costs a unit
            if self.log is not None:
                self.log.append({"op": "GetItem", "key": key, "size": model.item_size(item or {}),
                                 "rru": model.read_units(model.item_size(item or {}))})
        return item

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any], add: dict[str, int] | None = None, returning: bool = False) -> WriteResult:
        remove = list(remove)
        before = self.inner.get(key)
        done = self.inner.update(key, set=set, remove=remove, expect=expect, add=add, returning=returning)
        after = self.inner.get(key) if done else before
        units = model.update_write_units(before, after or {}, table_key=self.key_name,
                                         indexes={n: tuple(k for k in keys if k) for n, keys in INDEXES.items()})
        if not done:
            units = {name: (count if name == "table" else 0) for name, count in units.items()}
        units_copy = {name: count for name, count in units.items() if count}
        span = "span_" if key == SHARD_SPAN_KEY else ""
        with self._lock:
            self.calls[span + ("update" if done else "update_failed")] += 1
            self.units["span_wru" if span else "table_write"] += units.pop("table")
            for index, count in units.items():
                self.units[f"{index}_write"] += count
            if done and after is not None:
                self.written_sizes.append(model.item_size(after))
                if self.largest is None or model.item_size(after) > model.item_size(self.largest):
                    self.largest = dict(after)
            if self.log is not None:
                self.log.append({"op": "UpdateItem" if done else "UpdateItem (condition failed)", "key": key,
                                 "size": max(model.item_size(before or {}), model.item_size(after or {})),
                                 "attributes": sorted([*set, *remove, *(add or {})]), "wru": units_copy,
                                 "returning": returning})
        return done

    def transact(self, writes: Sequence[TransactWrite]) -> bool:
        """TransactWriteItems (a new connection with its guard item): each item is priced as a write, twice, as
        DynamoDB charges transactions; index writes once."""
        before = {write.key: self.inner.get(write.key) for write in writes}
        done = self.inner.transact(writes)
        with self._lock:
            self.calls["transact" if done else "transact_failed"] += 1
            for write in writes:
                after = self.inner.get(write.key) if done else before[write.key]
                units = model.update_write_units(before[write.key], after or {}, table_key=self.key_name,
                                                 indexes={n: tuple(k for k in keys if k)
                                                          for n, keys in INDEXES.items()})
                self.units["table_write"] += 2 * units.pop("table")
                for index, count in units.items():
                    self.units[f"{index}_write"] += count if done else 0
        return done

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, range_min: Any = None,
              limit: int | None = None, start: dict[str, Any] | None = None,
              ) -> tuple[list[str], dict[str, Any] | None]:
        keys, cursor = self.inner.query(index, hash_value, range_max=range_max, range_min=range_min, limit=limit,
                                        start=start)
        with self._lock:  # Limit=1: the sweep probing whether a shard is in use (ConnectionStore.shard_in_use)
            self.calls[f"{'probe' if limit == 1 else 'query'}_{index}"] += 1
            self.units["query_items"] += len(keys)
            if self.log is not None:
                self.log.append({"op": f"Query {index}", "key": hash_value, "returned": len(keys)})
        return keys, cursor

    def items(self) -> list[dict[str, Any]]:
        return self.inner.items()  # type: ignore[attr-defined]


class RealSizeKms(FakeKms):
    """FakeKms whose wrapped data keys are as long as real KMS's: a CiphertextBlob for a 256-bit data key from
    GenerateDataKey is 184 bytes (FakeKms's own is 60). The padding is dropped again before unwrapping."""

    BLOB = 184

    def generate_data_key(self, KeyId: str, KeySpec: str,  # noqa: N803 - boto3's names
                          EncryptionContext: dict[str, str] | None = None) -> dict[str, bytes]:  # noqa: N803
        answer = super().generate_data_key(KeyId, KeySpec, EncryptionContext)
        blob = answer["CiphertextBlob"]
        return {**answer, "CiphertextBlob": blob + b"\0" * (self.BLOB - len(blob))}

    def decrypt(self, CiphertextBlob: bytes, KeyId: str,  # noqa: N803
                EncryptionContext: dict[str, str] | None = None) -> dict[str, bytes]:  # noqa: N803
        return super().decrypt(CiphertextBlob[:60], KeyId, EncryptionContext)


def world_services(world: World, *, items: ItemStore | None = None, http: Any = None, base_url: str | None = None,
                   policy: str = "eager", kms: Any = None) -> Container:
    """A container as World.create builds it, with parts swapped: the item store, the HTTP client, and the
    TikTok endpoint URLs (a started FakeTikTok's base_url for real loopback HTTP)."""
    old = world.services
    overrides = dict(old.settings.provider_overrides.get("tiktok", {}))
    overrides["refresh_policy"] = policy
    if base_url:
        overrides.update(token_url=f"{base_url}/v2/oauth/token/", authorize_url=f"{base_url}/v2/auth/authorize/",
                         userinfo_url=f"{base_url}/v2/user/info/")
    settings = Settings(connections_table="memory", flows_table="memory", token_key_arn="memory",
                        event_bus_name="memory", refresh_queue_url="memory", provider_overrides={"tiktok": overrides},
                        allow_http_endpoints=True)
    from local.memory import MemoryFlowStore, MemoryItemStore, no_sleep

    world.services = Container(
        settings, clock=world.clock, items=items if items is not None else MemoryItemStore(),
        flows=MemoryFlowStore(), http=http if http is not None else old.http,
        kms=kms if kms is not None else FakeKms(),
        publisher=world.publisher, queue=world.queue, credentials=old.credentials, sleep=no_sleep,
    )
    return world.services


def records_for(connection_ids: list[str]) -> list[dict[str, Any]]:
    """SQS records as the worker receives them."""
    import json

    return [{"messageId": f"m{i}", "body": json.dumps({"connection_id": cid})} for i, cid in enumerate(connection_ids)]
