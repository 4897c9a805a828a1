"""Provider webhooks (TikTok's `authorization.removed`), authenticated by the provider's HMAC signature, not IAM.

What the signature header is called, which events mean "the user removed the app" and where the account
and reason are in the body all come from the provider's profile.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

from ..domain.connection import Reason
from ..domain.errors import InvalidInput, NotFound
from ..domain.signatures import verify_signature
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, Credentials, ProviderProfiles
from .disconnect import Disconnection

MAX_BODY = 64 * 1024


class WebhookAnswer(TypedDict):
    received: bool
    handled: bool
    disconnected: NotRequired[int]


class WebhookReceiver:
    def __init__(self, *, profiles: ProviderProfiles, credentials: Credentials, disconnection: Disconnection,
                 clock: Clock) -> None:
        self._profiles = profiles
        self._credentials = credentials
        self._disconnection = disconnection
        self._clock = clock

    def receive(self, provider: str, headers: dict[str, str], body: bytes) -> WebhookAnswer:
        """Verify the delivery's signature over the raw `body`, then act on a removal event: every connection
        of that account is disconnected (reason `user_revoked`). Other events are acknowledged, not handled.

        Raises NotFound (provider without webhooks), Unauthorized (401: bad or stale signature), InvalidInput
        (too large, not a JSON object, no account)."""
        profile = self._profiles.profile(provider)
        hook = profile.webhook
        if hook is None:
            raise NotFound("This provider sends no webhooks here.", code="unknown_provider", field="provider")
        if len(body) > MAX_BODY:
            raise InvalidInput("The body is too large.", code="too_large", field="body")
        secret = self._credentials.credentials(profile, with_id=False).client_secret
        lowered = {k.lower(): v for k, v in headers.items()}
        verify_signature(secret, lowered.get(hook.signature_header.lower()), body, self._clock.now())
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
        provider_reason = _reason_code(payload, hook.reason_field)
        disconnected = self._disconnection.disconnect_account(provider, account_id, Reason.USER_REVOKED,
                                                              extra={"provider_reason": provider_reason})
        record_metric("WebhookDisconnects", MetricUnit.Count, disconnected)
        logger.info("Authorization removed at the provider", extra={"provider": provider,
                                                                     "connections": disconnected})
        return {"received": True, "handled": True, "disconnected": disconnected}


def _reason_code(payload: dict[str, Any], path: str | None) -> int | None:
    """The provider's reason number at a dotted path; a JSON string on the way is decoded (TikTok's
    `content` is JSON inside JSON)."""
    data: Any = payload
    for key in (path or "").split(".") if path else []:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return None
        data = data.get(key) if isinstance(data, dict) else None
    try:
        return int(data) if data is not None else None
    except (TypeError, ValueError):
        return None
