"""The `EventPublisher` port on EventBridge: PutEvents in batches of ten, reporting which events were accepted."""

from __future__ import annotations

import json
from typing import Any

from ..domain.events import SOURCE, PendingEvent
from ..observability import logger


class EventBridgePublisher:
    def __init__(self, events_client: Any, bus_name: str) -> None:
        self._events = events_client
        self._bus = bus_name

    def publish(self, pending: list[PendingEvent]) -> list[str]:
        """Send events; return the ids EventBridge accepted (the rest stay in the outbox for a retry)."""
        sent: list[str] = []
        for start in range(0, len(pending), 10):  # PutEvents takes at most 10 entries
            batch = pending[start : start + 10]
            try:
                answer = self._events.put_events(Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": event["detail_type"],
                        "Detail": json.dumps(event["detail"], separators=(",", ":")),
                        "EventBusName": self._bus,
                    }
                    for event in batch
                ])
            except Exception:
                logger.exception("Publishing connection events failed; they stay in the outbox")
                continue
            for event, result in zip(batch, answer.get("Entries", []), strict=False):
                if result.get("EventId") and not result.get("ErrorCode"):
                    sent.append(event["event_id"])
                else:
                    logger.warning("EventBridge refused an event", extra={
                        "event_id": event["event_id"], "error_code": result.get("ErrorCode"),
                    })
        return sent
