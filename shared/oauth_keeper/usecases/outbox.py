"""Publishing a connection's outbox: the one path by which every connection event leaves the service."""

from __future__ import annotations

from ..domain.connection import Connection
from ..observability import logger
from ..ports import ConnectionRepository, EventPublisher


class OutboxRelay:
    """Events are written into the connection item with the state they describe (the outbox); this sends them.

    The callback, the API, the refresher and the sweep's workers all publish through here. A crash between the
    write and the publish loses nothing: the sweep finds the item through the sparse Outbox index.
    """

    def __init__(self, connections: ConnectionRepository, publisher: EventPublisher) -> None:
        self._connections = connections
        self._publisher = publisher

    def publish(self, connection: Connection) -> Connection:
        """Publish what waits in `connection.outbox`, then clear what was accepted.

        Returns the connection with the accepted events removed from its outbox. Never raises for a
        publishing or clearing failure: what is left is published on a later pass (consumers dedupe on
        `event_id`)."""
        if not connection.outbox:
            return connection
        sent = self._publisher.publish(list(connection.outbox.values()))
        if sent:
            try:
                self._connections.clear_outbox(connection, sent)
            except Exception:  # noqa: BLE001 - left for the next pass; consumers dedupe on event_id
                logger.exception("Clearing the outbox failed")
                return connection
            connection.outbox = {k: v for k, v in connection.outbox.items() if k not in sent}
        return connection
