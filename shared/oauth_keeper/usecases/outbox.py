"""Publishing a connection's outbox: the one path by which every connection event leaves the service."""

from __future__ import annotations

from typing import Protocol

from ..domain import events
from ..domain.connection import ACTIVE, DISCONNECTED, NEEDS_REAUTH, Connection
from ..observability import logger
from ..ports import ConnectionRepository, EventPublisher

# The events that change what a connection's channels can do, and the status each gives them (ADR 0024).
CHANNEL_STATUS = {events.NEEDS_REAUTH: NEEDS_REAUTH, events.DISCONNECTED: DISCONNECTED,
                  events.RECOVERED: ACTIVE, events.RECONNECTED: ACTIVE}
LOSSES = (events.NEEDS_REAUTH, events.DISCONNECTED)


class ChannelMarks(Protocol):
    def parent_changed(self, connection: Connection, status: str) -> tuple[str, ...]: ...


class OutboxRelay:
    """Events are written into the connection item with the state they describe (the outbox); this sends them.

    The callback, the API, the refresher and the sweep's workers all publish through here. A crash between the
    write and the publish loses nothing: the sweep finds the item through the sparse Outbox index.
    """

    def __init__(self, connections: ConnectionRepository, publisher: EventPublisher, *,
                 channels: ChannelMarks | None = None) -> None:
        """`channels` marks a connection's channels when its events say the grant was lost or is back, and
        names them in the lost event (`channels_affected`); None: no channels (tests of other parts)."""
        self._connections = connections
        self._publisher = publisher
        self._channels = channels

    def publish(self, connection: Connection) -> Connection:
        """Publish what waits in `connection.outbox`, then clear what was accepted.

        Returns the connection with the accepted events removed from its outbox. Never raises for a
        publishing or clearing failure: what is left is published on a later pass (consumers dedupe on
        `event_id`)."""
        if not connection.outbox:
            return connection
        if self._channels is not None:
            self._mark_channels(connection)
        sent = self._publisher.publish(list(connection.outbox.values()))
        if sent:
            try:
                self._connections.clear_outbox(connection, sent)
            except Exception:  # noqa: BLE001 - left for the next pass; consumers dedupe on event_id
                logger.exception("Clearing the outbox failed")
                return connection
            connection.outbox = {k: v for k, v in connection.outbox.items() if k not in sent}
        return connection

    def _mark_channels(self, connection: Connection) -> None:
        """One event per connection names every channel the loss affects (`channels_affected`, an additive field
        of Connection Needs Reauthorization and Connection Disconnected), never one event per channel. Computed
        when the event leaves, so every path that ends a connection (refresh, disconnect, webhook, erasure) is
        covered; a republished event names them again."""
        assert self._channels is not None
        for event in connection.outbox.values():
            status = CHANNEL_STATUS.get(event["detail_type"])  # type: ignore[call-overload]
            if status is None:
                continue
            affected = self._channels.parent_changed(connection, status)
            if event["detail_type"] in LOSSES and affected:
                event["detail"]["channels_affected"] = list(affected)
