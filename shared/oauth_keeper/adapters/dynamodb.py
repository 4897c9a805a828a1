"""DynamoDB through the low-level client: the `ItemStore` port for the Connections table, and item codecs.

Every write is conditional where the logic needs a guard, and a failed guard reads back the competing item
in the same call (ReturnValuesOnConditionCheckFailure), never with a second GetItem. Writes that must land
together (a new connection and its guard item) go in one TransactWriteItems.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

from ..ports import INDEXES, MISSING, PRESENT, AtMost, NotAfter, OneOf, TransactWrite, WriteResult


@cache
def _codecs() -> tuple[Any, Any]:
    # Imported on first use: boto3 costs ~100 ms of cold start, which only paths that talk to AWS should pay.
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    serializer = _codecs()[0]
    return {k: serializer.serialize(_plain(v)) for k, v in data.items() if v is not None}


def to_values(data: dict[str, Any]) -> dict[str, Any]:
    serializer = _codecs()[0]
    return {k: serializer.serialize(_plain(v)) for k, v in data.items()}


def from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    deserializer = _codecs()[1]
    return {k: _native(deserializer.deserialize(v)) for k, v in item.items()}


def is_conditional_failure(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def condition_failure_item(exc: Exception) -> dict[str, Any] | None:
    """The item a failed conditional write found (asked for with ReturnValuesOnConditionCheckFailure=ALL_OLD);
    None when there was no item."""
    return from_item(getattr(exc, "response", {}).get("Item"))


def _expressions(set: dict[str, Any], remove: Iterable[str], expect: dict[str, Any],
                 add: dict[str, int] | None = None) -> dict[str, Any]:
    """UpdateExpression (SETs, None removing; REMOVEs; ADDs), ConditionExpression (`expect`: a value, MISSING:
    absent, PRESENT, NotAfter(v): absent or <= v, AtMost, OneOf) and their name and value maps, as UpdateItem and
    TransactWriteItems take them (absent parts left out)."""
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
    adds = []
    for attr, amount in (add or {}).items():
        placeholder = f":v{len(values)}"
        values[placeholder] = amount
        adds.append(f"{name(attr)} {placeholder}")

    def value(v: Any) -> str:
        placeholder = f":v{len(values)}"
        values[placeholder] = v
        return placeholder

    conditions = []
    for attr, expected in expect.items():
        if expected is MISSING:
            conditions.append(f"attribute_not_exists({name(attr)})")
        elif isinstance(expected, NotAfter):
            attribute = name(attr)
            conditions.append(f"(attribute_not_exists({attribute}) OR {attribute} <= {value(expected.value)})")
        elif expected is PRESENT:
            conditions.append(f"attribute_exists({name(attr)})")
        elif isinstance(expected, AtMost):
            conditions.append(f"{name(attr)} <= {value(expected.value)}")
        elif isinstance(expected, OneOf):
            attr_name = name(attr)
            conditions.append(f"{attr_name} IN ({', '.join(value(v) for v in expected.values)})")
        else:
            conditions.append(f"{name(attr)} = {value(expected)}")
    expression = " ".join(part for part in (
        ("SET " + ", ".join(sets)) if sets else "",
        ("REMOVE " + ", ".join(removes)) if removes else "",
        ("ADD " + ", ".join(adds)) if adds else "",
    ) if part)
    args: dict[str, Any] = {"ExpressionAttributeNames": names}
    if not names:
        del args["ExpressionAttributeNames"]  # DynamoDB refuses an empty map
    if expression:
        args["UpdateExpression"] = expression
    if values:
        args["ExpressionAttributeValues"] = to_values(values)
    if conditions:
        args["ConditionExpression"] = " AND ".join(conditions)
    return args


def _lost_transaction(exc: Exception) -> bool:
    """A cancelled transaction that lost a race (a failed condition, a concurrent transaction on an item), not
    one refused for another reason (throttling, validation: raised)."""
    response = getattr(exc, "response", {})
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = {r.get("Code") for r in response.get("CancellationReasons", [])} - {None, "None"}
    return reasons <= {"ConditionalCheckFailed", "TransactionConflict"}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, tuple):
        return list(value)
    return value


def _native(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_native(v) for v in value]
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if hasattr(value, "value") and type(value).__name__ == "Binary":
        return bytes(value.value)
    return value


class DynamoItemStore:
    """The `ItemStore` port on one DynamoDB table (strongly consistent reads, conditional writes)."""

    def __init__(self, dynamodb: Any, table: str, key_name: str = "connection_id") -> None:
        self._db = dynamodb
        self._table = table
        self.key_name = key_name
        self.read_items = 0  # what the index queries returned: the sweep's cost is proportional to it

    def get(self, key: str, attributes: Sequence[str] = ()) -> dict[str, Any] | None:
        projection: dict[str, Any] = {}
        if attributes:  # a projection: IAM can allow a caller these attributes and no others
            names = {f"#p{i}": a for i, a in enumerate(attributes)}
            projection = {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}
        answer = self._db.get_item(TableName=self._table, Key={self.key_name: {"S": key}}, ConsistentRead=True,
                                   **projection)
        return from_item(answer.get("Item"))

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any], add: dict[str, int] | None = None, returning: bool = False) -> WriteResult:
        args: dict[str, Any] = {"TableName": self._table, "Key": {self.key_name: {"S": key}},
                                **_expressions(set, remove, expect, add)}
        if "ConditionExpression" in args:
            args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if returning:  # the item as written comes back with the write: no GetItem (and no read unit) after it
            args["ReturnValues"] = "ALL_NEW"
        try:
            answer = self._db.update_item(**args)
        except Exception as exc:
            if is_conditional_failure(exc):
                return WriteResult(False, condition_failure_item(exc))
            raise
        return WriteResult(True, from_item(answer.get("Attributes")) if returning else None)

    def transact(self, writes: Sequence[TransactWrite]) -> bool:
        """TransactWriteItems: an Update, Delete or ConditionCheck per write. False when a condition failed or
        a concurrent transaction touched one of the items (TransactionConflict): nothing was written."""
        actions = []
        for write in writes:
            action: dict[str, Any] = {"TableName": self._table, "Key": {self.key_name: {"S": write.key}},
                                      **_expressions(write.set if write.action == "update" else {},
                                                     write.remove if write.action == "update" else (),
                                                     write.expect)}
            name = {"update": "Update", "delete": "Delete", "check": "ConditionCheck"}[write.action]
            actions.append({name: action})
        try:
            self._db.transact_write_items(TransactItems=actions)
        except Exception as exc:
            if _lost_transaction(exc):
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

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, range_min: Any = None,
              limit: int | None = None, start: dict[str, Any] | None = None,
              ) -> tuple[list[str], dict[str, Any] | None]:
        hash_attr, range_attr = INDEXES[index]
        condition = "#h = :h"
        names = {"#h": hash_attr}
        values: dict[str, Any] = {":h": hash_value}
        if range_attr and (range_max is not None or range_min is not None):
            names["#r"] = range_attr
            if range_max is not None and range_min is not None:
                condition += " AND #r BETWEEN :lo AND :r"
                values[":lo"], values[":r"] = range_min, range_max
            elif range_max is not None:
                condition += " AND #r <= :r"
                values[":r"] = range_max
            else:
                condition += " AND #r >= :lo"
                values[":lo"] = range_min
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
