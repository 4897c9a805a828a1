"""Provider webhooks (TikTok's `authorization.removed`), authenticated by the provider's HMAC signature, not IAM.

What the signature header is called, which events mean "the user removed the app" and where the account,
reason and creation time are in the body all come from the provider's profile. Deliveries come at least once,
late and out of order: a removal ends only grants older than the event (`domain/provider_events.py`), and a
delivery already handled (same raw body, whatever its signature) changes nothing.

This function is public, so it writes no connection: it queues each verified removal, and the refresh worker
applies it (`usecases/worker.py`). A flaw here can at worst queue a removal, never set a status or a schedule.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

from ..domain.connection import Reason
from ..domain.errors import InvalidInput, NotFound
from ..domain.provider_events import DELIVERY_MEMORY, AccountRemovalRequest, delivery_key, event_time
from ..domain.signatures import verify_signature
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, Credentials, DeliveryLog, ProviderProfiles, RemovalQueue

MAX_BODY = 64 * 1024


class WebhookAnswer(TypedDict):
    received: bool
    handled: bool
    queued: NotRequired[bool]  # the removal is queued for the refresh worker, which applies it within seconds
    duplicate: NotRequired[bool]  # this body was handled before: nothing done


class WebhookReceiver:
    def __init__(self, *, profiles: ProviderProfiles, credentials: Credentials, queue: RemovalQueue,
                 deliveries: DeliveryLog, clock: Clock) -> None:
        self._profiles = profiles
        self._credentials = credentials
        self._queue = queue
        self._deliveries = deliveries
        self._clock = clock

    def receive(self, provider: str, headers: dict[str, str], body: bytes) -> WebhookAnswer:
        """Verify the delivery's signature over the raw `body`, then queue a removal event for the refresh
        worker (answer `queued`): it disconnects every connection of that account granted before the event was
        created (less CLOCK_SKEW_TOLERANCE), reason `user_revoked`, and leaves later grants alone
        (`Disconnection.disconnect_account`). A removal whose body was handled before (within DELIVERY_MEMORY)
        answers `duplicate` and queues nothing. A creation time that is not a number, or is after the signature,
        counts as the signature's timestamp (`provider_events.event_time`). Other events are acknowledged, not
        handled.

        Raises NotFound (provider without webhooks), Unauthorized (401: bad or stale signature), InvalidInput
        (too large, not a JSON object, no account); what the queue raises when it refuses the removal (a 5xx:
        the delivery is not remembered, so the provider's retry queues it)."""
        profile = self._profiles.profile(provider)
        hook = profile.webhook
        if hook is None:
            raise NotFound("This provider sends no webhooks here.", code="unknown_provider", field="provider")
        if len(body) > MAX_BODY:
            raise InvalidInput("The body is too large.", code="too_large", field="body")
        secret = self._credentials.credentials(profile, with_id=False).client_secret
        lowered = {k.lower(): v for k, v in headers.items()}
        signed_at = verify_signature(secret, lowered.get(hook.signature_header.lower()), body, self._clock.now())
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput("The body is not a JSON object.", field="body") from exc
        if payload.get("event") not in hook.removed_events:
            return {"received": True, "handled": False}
        account_id = payload.get(hook.account_field)
        if not isinstance(account_id, str) or not 0 < len(account_id) <= 128:
            raise InvalidInput(f"{hook.account_field} is missing.", field=hook.account_field)
        # The body, not the signature: a retry is signed anew (new timestamp) over the same body.
        key = delivery_key(provider, body)
        if self._deliveries.seen(key, self._clock.now()):
            record_metric("WebhookDuplicates", MetricUnit.Count, 1)
            logger.info("Webhook delivery handled before: ignored", extra={"provider": provider})
            return {"received": True, "handled": True, "duplicate": True}
        created = event_time(_field(payload, hook.created_field), signed_at)
        if not created.plausible and hook.created_field:  # a profile without the field uses the signature's time
            record_metric("WebhookImplausibleEventTime", MetricUnit.Count, 1)
            logger.warning("Webhook event without a plausible creation time", extra={
                "provider": provider, "signed_at": signed_at, "event_time": created.at,
                "event_time_from": "event" if created.from_event else "signature"})
        self._queue.send_removal(AccountRemovalRequest(
            provider, account_id, created.granted_before, Reason.USER_REVOKED,
            _reason_code(payload, hook.reason_field), received_at=int(self._clock.now())))
        logger.info("Authorization removed at the provider: queued", extra={
            "provider": provider, "event_time": created.at,
            "event_time_from": "event" if created.from_event else "signature"})
        try:
            self._deliveries.remember(key, provider, self._clock.now(), int(self._clock.now()) + DELIVERY_MEMORY)
        except Exception:  # noqa: BLE001 - the removal is queued; a retry of it would be applied like a repeat
            logger.exception("Webhook delivery not remembered")
        return {"received": True, "handled": True, "queued": True}


def _field(payload: dict[str, Any], path: str | None) -> Any:
    """The value at a dotted path (None when absent); a JSON string on the way is decoded (TikTok's `content`
    is JSON inside JSON)."""
    if not path:
        return None
    data: Any = payload
    for key in path.split("."):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return None
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _reason_code(payload: dict[str, Any], path: str | None) -> int | None:
    """The provider's reason number at a dotted path, or None."""
    data = _field(payload, path)
    try:
        return int(data) if data is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
