"""Instants as the service shows them: epoch seconds inside, ISO 8601 UTC in events and the API."""

from __future__ import annotations

from datetime import UTC, datetime


def iso8601(epoch: float | int | None) -> str | None:
    """Epoch seconds (as DynamoDB stores them) to ISO 8601 UTC with a `Z`, e.g. `2027-01-15T08:00:00Z`.

    None stays None. Raises ValueError (or OverflowError) for an instant outside years 1-9999.
    """
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC).isoformat().replace("+00:00", "Z")
