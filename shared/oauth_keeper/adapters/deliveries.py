"""The `DeliveryLog` port on DynamoDB: handled provider webhook deliveries, one small item each in the Flows table.

The Flows table already expires its items by TTL (`purge_at`), which is all a delivery marker needs. Its keys
start with `delivery#` (`provider_events.delivery_key`); the webhook function's IAM policy allows it those keys
alone (`dynamodb:LeadingKeys`), so it can read no connect session or OAuth flow.
"""

from __future__ import annotations

from typing import Any

from .dynamodb import from_item, to_item


class DynamoDeliveryLog:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def seen(self, key: str, now: float) -> bool:
        # TTL deletes lazily (up to days late): an item past its purge_at is forgotten here already.
        answer = self._db.get_item(TableName=self._table, Key={"flow_key": {"S": key}}, ConsistentRead=True,
                                   ProjectionExpression="purge_at")
        item = from_item(answer.get("Item")) or {}
        return int(item.get("purge_at", 0)) > now

    def remember(self, key: str, provider: str, now: float, until: int) -> None:
        # Unconditional: a concurrent copy of the same delivery writes the same facts.
        self._db.put_item(TableName=self._table, Item=to_item({
            "flow_key": key, "kind": "delivery", "provider": provider, "received_at": int(now), "purge_at": until,
        }))
