"""The storage seam under the Connections table: get, guarded update, index queries.

Everything the refresh logic needs from DynamoDB fits in these three operations, so the same logic runs on
DynamoDB (production, moto) and on an in-memory table (long simulations in tests and benchmarks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Protocol

from .dynamo import from_item, is_conditional_failure, to_item, to_values


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # an `expect` value meaning "this attribute must not exist"

# index name -> (hash attribute, range attribute or None); the template defines the same.
INDEXES: dict[str, tuple[str, str | None]] = {
    "Due": ("due_shard", "next_refresh_at"),
    "Outbox": ("outbox_shard", None),
    "ByAccount": ("account_key", None),
    "ByOwner": ("owner_id", "created_at"),
}


class ItemStore(Protocol):
    key_name: str

    def get(self, key: str) -> dict[str, Any] | None: ...

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any]) -> bool:
        """Apply SETs (None means remove) and REMOVEs only if every `expect` attribute has that value
        (MISSING: absent). False when the expectation failed; nothing is written then."""
        ...

    def delete(self, key: str, *, expect: dict[str, Any]) -> bool: ...

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, limit: int | None = None,
              start: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any] | None]:
        """Keys in one index partition (range <= range_max when given), one page; the cursor or None."""
        ...


class DynamoItemStore:
    def __init__(self, dynamodb: Any, table: str, key_name: str = "connection_id") -> None:
        self._db = dynamodb
        self._table = table
        self.key_name = key_name
        self.read_items = 0  # what the index queries returned: the sweep's cost is proportional to it

    def get(self, key: str) -> dict[str, Any] | None:
        answer = self._db.get_item(TableName=self._table, Key={self.key_name: {"S": key}}, ConsistentRead=True)
        return from_item(answer.get("Item"))

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any]) -> bool:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attr: str) -> str:
            placeholder = f"#n{len(names)}"
            names[placeholder] = attr
            return placeholder

        sets, removes = [], [name(a) for a in remove]
        for attr, value in set.items():
            if value is None:
                removes.append(name(attr))
            else:
                placeholder = f":v{len(values)}"
                values[placeholder] = value
                sets.append(f"{name(attr)} = {placeholder}")
        conditions = []
        for attr, value in expect.items():
            if value is MISSING:
                conditions.append(f"attribute_not_exists({name(attr)})")
            else:
                placeholder = f":v{len(values)}"
                values[placeholder] = value
                conditions.append(f"{name(attr)} = {placeholder}")
        expression = " ".join(part for part in (
            ("SET " + ", ".join(sets)) if sets else "",
            ("REMOVE " + ", ".join(removes)) if removes else "",
        ) if part)
        args: dict[str, Any] = {
            "TableName": self._table, "Key": {self.key_name: {"S": key}},
            "UpdateExpression": expression, "ExpressionAttributeNames": names,
        }
        if values:
            args["ExpressionAttributeValues"] = to_values(values)
        if conditions:
            args["ConditionExpression"] = " AND ".join(conditions)
        try:
            self._db.update_item(**args)
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def delete(self, key: str, *, expect: dict[str, Any]) -> bool:
        names = {f"#e{i}": attr for i, attr in enumerate(expect)}
        values = {f":e{i}": value for i, value in enumerate(expect.values())}
        args: dict[str, Any] = {"TableName": self._table, "Key": {self.key_name: {"S": key}}}
        if expect:
            args["ConditionExpression"] = " AND ".join(f"#e{i} = :e{i}" for i in range(len(expect)))
            args["ExpressionAttributeNames"] = names
            args["ExpressionAttributeValues"] = to_values(values)
        try:
            self._db.delete_item(**args)
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, limit: int | None = None,
              start: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any] | None]:
        hash_attr, range_attr = INDEXES[index]
        condition = "#h = :h"
        names = {"#h": hash_attr}
        values: dict[str, Any] = {":h": hash_value}
        if range_max is not None and range_attr:
            condition += " AND #r <= :r"
            names["#r"] = range_attr
            values[":r"] = range_max
        args: dict[str, Any] = {
            "TableName": self._table, "IndexName": index, "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": to_values(values),
        }
        if limit:
            args["Limit"] = limit
        if start:
            args["ExclusiveStartKey"] = to_item(start)
        answer = self._db.query(**args)
        keys = [item[self.key_name]["S"] for item in answer.get("Items", [])]
        self.read_items += len(keys)
        last = answer.get("LastEvaluatedKey")
        return keys, from_item(last) if last else None


class MemoryItemStore:
    """The same contract in memory, atomic under one lock: for simulations of days and thousands of items."""

    def __init__(self, key_name: str = "connection_id") -> None:
        self.key_name = key_name
        self._items: dict[str, dict[str, Any]] = {}
        # index -> hash value -> keys, kept like a GSI so a query reads one partition, not the table
        self._partitions: dict[str, dict[Any, set[str]]] = {name: {} for name in INDEXES}
        self._lock = threading.Lock()
        self.read_items = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            return dict(item) if item is not None else None

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any]) -> bool:
        with self._lock:
            current = self._items.get(key)
            for attr, value in expect.items():
                actual = current.get(attr, MISSING) if current is not None else MISSING
                if value is MISSING:
                    if actual is not MISSING:
                        return False
                elif actual is MISSING or actual != value:
                    return False
            item = dict(current) if current is not None else {self.key_name: key}
            for attr in remove:
                item.pop(attr, None)
            for attr, value in set.items():
                if value is None:
                    item.pop(attr, None)
                else:
                    item[attr] = value
            self._reindex(key, current, item)
            self._items[key] = item
            return True

    def delete(self, key: str, *, expect: dict[str, Any]) -> bool:
        with self._lock:
            current = self._items.get(key)
            if current is None:
                return True
            if any(current.get(attr, MISSING) != value for attr, value in expect.items()):
                return False
            self._reindex(key, current, {})
            del self._items[key]
            return True

    def _reindex(self, key: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for index, (hash_attr, _) in INDEXES.items():
            before = (old or {}).get(hash_attr, MISSING)
            after = new.get(hash_attr, MISSING)
            if before == after:
                continue
            partitions = self._partitions[index]
            if before is not MISSING:
                partitions.get(before, set()).discard(key)
            if after is not MISSING:
                partitions.setdefault(after, set()).add(key)

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, limit: int | None = None,
              start: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any] | None]:
        hash_attr, range_attr = INDEXES[index]
        with self._lock:
            partition = [self._items[k] for k in self._partitions[index].get(hash_value, ())]
            matches = [
                item for item in partition
                if (range_attr is None or range_attr in item)
                and (range_max is None or range_attr is None or item[range_attr] <= range_max)
            ]
        matches.sort(key=lambda i: (i.get(range_attr, 0) if range_attr else 0, i[self.key_name]))
        if start:
            keys = [m[self.key_name] for m in matches]
            matches = matches[keys.index(start[self.key_name]) + 1:] if start[self.key_name] in keys else []
        page = matches[:limit] if limit else matches
        cursor = {self.key_name: page[-1][self.key_name]} if limit and len(matches) > limit else None
        self.read_items += len(page)
        return [m[self.key_name] for m in page], cursor

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self._items.values()]
