"""Late, repeated and re-signed provider webhook deliveries: when an event happened, which grants it ends, its key.

A provider delivers at least once and retries for days (TikTok: up to 72 h, each attempt signed anew), so a
removal can arrive after the user has connected again, twice, or out of order. The rules here decide, with no
I/O, what such a delivery may still change.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from .connection import Connection, Reason

# How much newer than a grant an event must be to end it. It absorbs the skew between the provider's clock and
# ours and the provider's lag between the user's action and the event's stamp. Erring this way is the one that
# heals: a genuine removal within a minute of connecting is left alone (the next refresh meets `invalid_grant`
# and marks the connection `needs_reauth`); erring the other way ends a fresh reconnect and orphans its live
# grant at the provider. Nobody consents in the provider's screen and removes the app again within a minute.
CLOCK_SKEW_TOLERANCE = 60  # seconds

RETRY_WINDOW = 72 * 3600  # TikTok retries a delivery for up to 72 h
# An event creation time further before its delivery's signature than this is not one the provider still
# retries: it is counted as implausible (a day's margin over the retry window).
MAX_EVENT_AGE = RETRY_WINDOW + 86_400  # seconds
# How long a handled delivery's body hash is remembered: past any retry the provider sends of it, with margin
# for retries queued late at the provider. One small item per removal.
DELIVERY_MEMORY = 7 * 86_400  # seconds


@dataclass(frozen=True)
class EventTime:
    """When a provider event happened at the latest, as far as the delivery tells (epoch seconds).

    `from_event`: taken from the event's own creation time; otherwise it is the delivery's signed timestamp.
    `plausible`: the creation time was a number within [signed - MAX_EVENT_AGE, signed + CLOCK_SKEW_TOLERANCE]."""

    at: int
    from_event: bool
    plausible: bool

    @property
    def granted_before(self) -> int:
        """A removal at this time ends only grants made before this moment (epoch seconds)."""
        return self.at - CLOCK_SKEW_TOLERANCE


def event_time(created: Any, signed_at: int) -> EventTime:
    """The latest moment the event can have happened, from its body's creation time `created` (a JSON value:
    seconds since the epoch) and the delivery's signed timestamp `signed_at` (epoch seconds, already checked
    against our clock).

    - Not a number (missing, null, a boolean, NaN, text other than ASCII digits): `signed_at`, the latest moment
      the provider can have created it. A removal then ends only grants older than its signature.
    - A number after `signed_at` (milliseconds, a clock far ahead): `signed_at`, for the same reason.
    - A number before `signed_at`, however old: itself. An old creation time can only keep more grants; if it
      is wrong, the grant it keeps is refused at its next refresh (`needs_reauth`), while taking the delivery's
      time instead would end reconnects made since and orphan their live grants.
    """
    seconds = _seconds(created)
    if seconds is None:
        return EventTime(signed_at, from_event=False, plausible=False)
    plausible = signed_at - MAX_EVENT_AGE <= seconds <= signed_at + CLOCK_SKEW_TOLERANCE
    if seconds > signed_at:
        return EventTime(signed_at, from_event=False, plausible=plausible)
    return EventTime(seconds, from_event=True, plausible=plausible)


def _seconds(value: Any) -> int | None:
    """Whole seconds from a JSON number or a string of ASCII digits (as `protocol.bounded_lifetime` reads
    provider numbers); None for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value)
    return None


def granted_at(connection: Connection) -> int:
    """When the user consented to the connection's latest grant (connect or reconnect; a claimed grant: at its
    callback, not at the claim), epoch seconds."""
    return connection.connected_at if connection.connected_at is not None else connection.created_at


def removal_applies(connection: Connection, granted_before: int) -> bool:
    """A removal ends this connection only if its latest grant was made before `granted_before` (see
    `EventTime.granted_before`); a later grant is a new authorization the event knows nothing of."""
    return granted_at(connection) < granted_before


def delivery_key(provider: str, body: bytes, *, callback: str | None = None) -> str:
    """The key a delivery is remembered under: SHA-256 of the provider and the raw body, never the signature (a
    provider re-signs each retry with a new timestamp; the body stays the same). `callback` tells apart the
    routes one signed body can reach (`deauthorize`); None is the webhook's key."""
    label = f"delivery:{provider}:" if callback is None else f"delivery:{provider}:{callback}:"
    return "delivery#" + hashlib.sha256(label.encode() + body).hexdigest()


# -- a removal handed from the public webhook to the refresh worker ---------------------------------------------
# The webhook verifies a delivery and queues it; the worker, whose role may write connections, applies it. So the
# public function writes nothing in the Connections table, and no flaw in it can set a connection's status.
# Version 1 ends grants; version 2 (a data-deletion request) erases the account's data through the account-erasure
# job. A worker that reads only version 1 refuses a version 2 message: it goes back to the queue, then to the
# dead-letter queue, never dropped or applied as a plain removal.
REMOVAL_MESSAGE_VERSION = 1
ERASURE_MESSAGE_VERSION = 2
MAX_ACCOUNT_ID = 128
_REASONS = frozenset(r.value for r in Reason)


@dataclass(frozen=True)
class AccountRemovalRequest:
    """A verified removal, as queued for the worker: every grant of `account_id` at `provider` made before
    `granted_before` (epoch seconds) ends, for `reason` (ours, e.g. `user_revoked`); `provider_reason` is the
    provider's own reason number, when it sent one; `received_at` (epoch seconds) when the webhook took the
    delivery: no removal is about a grant made after it (`effective_before`). With `operation_id` it is a
    data-deletion request: those connections (and grants waiting for a claim) are erased by the account-erasure
    job under that operation id (`Disconnection.request_account_erasure`), and `reason` is `account_erased`."""

    provider: str
    account_id: str
    granted_before: int
    reason: str
    provider_reason: int | None = None
    received_at: int | None = None
    operation_id: str | None = None

    @property
    def effective_before(self) -> int:
        """`granted_before`, capped at `received_at`: a provider clock ahead of ours (a signature up to the
        tolerance in the future) never reaches a reconnect made after the delivery, even when SQS delivers the
        message again later."""
        return self.granted_before if self.received_at is None else min(self.granted_before, self.received_at)

    def message(self) -> str:
        """The queue message's body: `{"removal": {...}, "version": 1}` (JSON); version 2 with `operation_id`
        for an erasure."""
        removal: dict[str, Any] = {
            "provider": self.provider, "account_id": self.account_id, "granted_before": self.granted_before,
            "reason": self.reason, "provider_reason": self.provider_reason, "received_at": self.received_at}
        if self.operation_id is None:
            return json.dumps({"version": REMOVAL_MESSAGE_VERSION, "removal": removal})
        return json.dumps({"version": ERASURE_MESSAGE_VERSION,
                           "removal": {**removal, "operation_id": self.operation_id}})


def removal_request_of(data: Any) -> AccountRemovalRequest | None:
    """The removal a decoded queue message carries, or None when it carries none or a malformed one (a newer
    `version` than this code reads is malformed too: the message goes to the dead-letter queue, not applied half
    understood)."""
    if not isinstance(data, dict) or not isinstance(data.get("removal"), dict):
        return None
    version = data.get("version")
    if version not in (REMOVAL_MESSAGE_VERSION, ERASURE_MESSAGE_VERSION) or isinstance(version, bool):
        return None
    body = data["removal"]
    provider, account_id, before, reason = (body.get("provider"), body.get("account_id"),
                                             body.get("granted_before"), body.get("reason"))
    provider_reason, received_at = body.get("provider_reason"), body.get("received_at")
    operation_id = body.get("operation_id") if version == ERASURE_MESSAGE_VERSION else None
    if version == ERASURE_MESSAGE_VERSION and not (isinstance(operation_id, str) and 0 < len(operation_id) <= 64):
        return None
    if not (isinstance(provider, str) and 0 < len(provider) <= 64 and isinstance(reason, str) and reason in _REASONS
            and isinstance(account_id, str) and 0 < len(account_id) <= MAX_ACCOUNT_ID
            and isinstance(before, int) and not isinstance(before, bool)
            and all(value is None or (isinstance(value, int) and not isinstance(value, bool))
                    for value in (provider_reason, received_at))):
        return None
    return AccountRemovalRequest(provider, account_id, before, reason, provider_reason, received_at, operation_id)
