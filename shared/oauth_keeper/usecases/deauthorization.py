"""Signed deauthorize and data-deletion callbacks (Meta's `signed_request`), verified with the provider's app secret.

Which format the provider signs in, and where the account and the request's time are in the payload, come from
the profile's `deauthorization` section; the secret is the provider's own `client_secret` (each Meta app,
Facebook, Instagram or Threads, has its own). Like the TikTok webhook (`usecases/webhooks.py`) this public code
writes no connection: it queues what it verified, and the refresh worker applies it (`usecases/worker.py`).

- Deauthorize: a removal, ordered by the request's time against each connection's latest grant and remembered by
  its signed payload, exactly as the webhook's (docs/decisions/0015).
- Data deletion: an erasure of everything kept for the account, by the account-erasure job under an operation id
  the confirmation code names (`domain/data_deletion.py`); answered with the status URL and the code, as Meta
  requires. The status URL says only whether the request is received, in progress or completed.
"""

from __future__ import annotations

from typing import Any, TypedDict
from urllib.parse import parse_qsl

from ..domain.connection import Reason
from ..domain.data_deletion import (
    COMPLETED,
    IN_PROGRESS,
    RECEIVED,
    confirmation_code,
    deletion_operation_id,
    normalized_code,
    receipt_key,
)
from ..domain.errors import InvalidInput, NotFound
from ..domain.provider_events import DELIVERY_MEMORY, AccountRemovalRequest, EventTime, delivery_key, event_time
from ..domain.providers import DeauthorizationFields, ProviderProfile
from ..domain.signatures import MAX_SIGNED_REQUEST, verify_signed_request
from ..domain.validation import valid_account_id
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, Credentials, DeliveryLog, ItemStore, ProviderProfiles, RemovalQueue
from .disconnect import OPERATION_PREFIX
from .webhooks import WebhookAnswer

MAX_FORM = MAX_SIGNED_REQUEST + 1024  # bytes of the form body: the signed_request and a little room
FORM_FIELD = "signed_request"


class DeletionAnswer(TypedDict):
    """What Meta requires from a data-deletion callback: where the user follows the request, and its code."""

    url: str
    confirmation_code: str


class DeletionStatus(TypedDict):
    status: str  # received | in_progress | completed (domain/data_deletion.py)


class DeauthorizationCallbacks:
    def __init__(self, *, profiles: ProviderProfiles, credentials: Credentials, queue: RemovalQueue,
                 deliveries: DeliveryLog, operations: ItemStore, clock: Clock) -> None:
        """`operations`: the Connections table, read only for a data-deletion operation's `kind` and `result`
        (the public function's IAM allows it `op#` items and those attributes alone)."""
        self._profiles = profiles
        self._credentials = credentials
        self._queue = queue
        self._deliveries = deliveries
        self._operations = operations
        self._clock = clock

    def deauthorize(self, provider: str, body: bytes) -> WebhookAnswer:
        """`POST /deauthorize/{provider}`, a form body `signed_request=<signature>.<payload>`: once verified,
        queue a removal for the refresh worker (answer `queued`), which disconnects, reason `user_revoked`, every
        connection of the payload's account granted before the request's time (less CLOCK_SKEW_TOLERANCE) and
        keeps later grants (`Disconnection.disconnect_account`). A request whose signed payload was handled
        before (within DELIVERY_MEMORY) answers `duplicate` and queues nothing.

        Raises NotFound (a provider without these callbacks), InvalidInput (too large, no or a malformed
        signed_request, another algorithm, no account), Unauthorized (a signature that does not match); what
        the queue raises when it refuses (a 5xx: nothing remembered, so the provider's retry queues it)."""
        section, payload, payload_part, _ = self._verified(provider, body)
        account_id = _account(section, payload)
        key = delivery_key(provider, payload_part.encode("ascii"), callback="deauthorize")
        now = self._clock.now()
        if self._deliveries.seen(key, now):
            record_metric("WebhookDuplicates", MetricUnit.Count, 1)
            logger.info("Deauthorization handled before: ignored", extra={"provider": provider})
            return {"received": True, "handled": True, "duplicate": True}
        created = self._event_time(provider, section, payload)
        self._queue.send_removal(AccountRemovalRequest(provider, account_id, created.granted_before,
                                                       Reason.USER_REVOKED, received_at=int(now)))
        logger.info("Deauthorized at the provider: queued", extra={
            "provider": provider, "event_time": created.at,
            "event_time_from": "event" if created.from_event else "receipt"})
        self._remember(key, provider)
        return {"received": True, "handled": True, "queued": True}

    def request_deletion(self, provider: str, body: bytes, *, base_url: str) -> DeletionAnswer:
        """`POST /data-deletion/{provider}`, a form body `signed_request=<signature>.<payload>`: once verified,
        queue the erasure of everything kept for the payload's account (its connections, any owner, and its
        grants waiting for a claim; one granted after the request is a new consent and stays) as the
        account-erasure job, and answer `{"url": "<base_url>/data-deletion/<provider>?code=<code>",
        "confirmation_code": "<code>"}` (Meta's data-deletion callback). The same signed request again gets
        the same answer and queues nothing more within DELIVERY_MEMORY; later, the job it names is only
        continued.

        Raises NotFound (a provider without data-deletion callbacks), InvalidInput, Unauthorized (as
        `deauthorize`); what the queue raises when it refuses (a 5xx: nothing remembered)."""
        section, payload, payload_part, secret = self._verified(provider, body, deletion=True)
        account_id = _account(section, payload)
        code = confirmation_code(secret, provider, payload_part)
        answer: DeletionAnswer = {"url": f"{base_url}/data-deletion/{provider}?code={code}",
                                  "confirmation_code": code}
        key = receipt_key(provider, code)
        operation_id = deletion_operation_id(provider, code)  # one-way: safe in a log line
        if self._deliveries.seen(key, self._clock.now()):
            record_metric("WebhookDuplicates", MetricUnit.Count, 1)
            logger.info("Data-deletion request handled before: ignored", extra={
                "provider": provider, "operation_id": operation_id})
            return answer
        created = self._event_time(provider, section, payload)
        self._queue.send_removal(AccountRemovalRequest(provider, account_id, created.granted_before,
                                                       Reason.ACCOUNT_ERASED, received_at=int(self._clock.now()),
                                                       operation_id=operation_id))
        record_metric("DataDeletionRequests", MetricUnit.Count, 1)
        logger.info("Data deletion requested at the provider: queued", extra={
            "provider": provider, "operation_id": operation_id, "event_time": created.at})
        self._remember(key, provider)
        return answer

    def deletion_status(self, provider: str, code: str) -> DeletionStatus:
        """`GET /data-deletion/{provider}?code=`: `received` (queued, its job not begun), `in_progress` or
        `completed`, and nothing else (no account, owner, count or time). Codes are compared case-blind.

        Raises NotFound (a provider without data-deletion callbacks; no request with this code: never received,
        or its operation is older than OPERATION_KEPT), InvalidInput (not a code's shape)."""
        self._section(self._profiles.profile(provider), deletion=True)
        normalized = normalized_code(code)
        if normalized is None:
            raise InvalidInput("A confirmation code is 26 letters and digits.", field="code")
        operation = self._operations.get(OPERATION_PREFIX + deletion_operation_id(provider, normalized),
                                         ("kind", "result"))
        if operation is not None and operation.get("kind") == "erase_account":
            return {"status": COMPLETED if operation.get("result") == "succeeded" else IN_PROGRESS}
        if self._deliveries.seen(receipt_key(provider, normalized), self._clock.now()):
            return {"status": RECEIVED}
        raise NotFound("No data-deletion request has this confirmation code.", code="deletion_not_found",
                       field="code")

    # -- internals ---------------------------------------------------------------------------------------------
    def _section(self, profile: ProviderProfile, *, deletion: bool = False) -> DeauthorizationFields:
        """The profile's callbacks, before anything is read: NotFound when it has none (or, for `deletion`, no
        data-deletion requests)."""
        section = profile.deauthorization
        if section is None or (deletion and not section.data_deletion):
            raise NotFound("This provider sends no such callbacks here.", code="unknown_provider", field="provider")
        return section

    def _verified(self, provider: str, body: bytes, *,
                  deletion: bool = False) -> tuple[DeauthorizationFields, dict[str, Any], str, str]:
        """(the profile's section, the verified payload, its payload part, the app secret)."""
        profile = self._profiles.profile(provider)
        section = self._section(profile, deletion=deletion)
        if len(body) > MAX_FORM:
            raise InvalidInput("The body is too large.", code="too_large", field="body")
        try:
            fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=10, strict_parsing=True)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput("The body must be a form: signed_request=<signature>.<payload>.",
                               field="body") from exc
        values = [value for name, value in fields if name == FORM_FIELD]
        if len(values) > 1:
            raise InvalidInput("signed_request may be given once.", field=FORM_FIELD)
        secret = self._credentials.credentials(profile, with_id=False).client_secret
        payload, payload_part = verify_signed_request(secret, values[0] if values else None,
                                                      algorithm=section.algorithm)
        return section, payload, payload_part, secret

    def _event_time(self, provider: str, section: DeauthorizationFields, payload: dict[str, Any]) -> EventTime:
        """When the request was issued at the latest: its time field when a number not after now, else now
        (the receipt: nothing later signs it). An old time is believed, as the webhook's (it can only keep more
        grants); an implausible one is counted."""
        received = int(self._clock.now())
        created = event_time(payload.get(section.time_field) if section.time_field else None, received)
        if not created.plausible and section.time_field:
            record_metric("WebhookImplausibleEventTime", MetricUnit.Count, 1)
            logger.warning("Deauthorization without a plausible issue time", extra={
                "provider": provider, "received_at": received, "event_time": created.at,
                "event_time_from": "event" if created.from_event else "receipt"})
        return created

    def _remember(self, key: str, provider: str) -> None:
        now = self._clock.now()
        try:
            self._deliveries.remember(key, provider, now, int(now) + DELIVERY_MEMORY)
        except Exception:  # noqa: BLE001 - queued; a retry would be queued again and applied like a repeat
            logger.exception("Deauthorization not remembered")


def _account(section: DeauthorizationFields, payload: dict[str, Any]) -> str:
    account_id = payload.get(section.account_field)
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        account_id = str(account_id)  # an id Meta sends as a JSON number is the same account as its digits
    if not valid_account_id(account_id):
        raise InvalidInput(f"{section.account_field} is missing or not an account id.", field=section.account_field)
    return str(account_id)
