"""Instants as the service shows them: epoch seconds inside, ISO 8601 UTC in events and the API."""

from __future__ import annotations

from datetime import UTC, datetime


def iso8601(epoch: float | int | None) -> str | None:
    """Epoch seconds (as DynamoDB stores them) to ISO 8601 UTC with a `Z`, e.g. `2027-01-15T08:00:00Z`.

    None stays None, and so does an instant outside 1970-9999 (no stored value can make a read fail).
    """
    if epoch is None or isinstance(epoch, bool) or not 0 <= epoch <= _LAST:
        return None
    return datetime.fromtimestamp(int(epoch), tz=UTC).isoformat().replace("+00:00", "Z")


_LAST = 253_402_300_799  # 9999-12-31T23:59:59Z
