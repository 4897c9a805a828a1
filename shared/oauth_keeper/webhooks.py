"""Provider webhooks (TikTok's `authorization.removed`), authenticated by the provider's HMAC signature, not IAM.

What the signature header is called, which events mean "the user removed the app" and where the account
and reason are in the body all come from the provider's profile.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from .errors import InvalidInput, NotFound, Unauthorized
from .observability import MetricUnit, logger, metrics
from .runtime import services

TOLERANCE = 300  # seconds between the signature's timestamp and now
MAX_BODY = 64 * 1024


def verify_signature(secret: str, header: str | None, body: bytes, now: float) -> None:
    """`<Header>: t=<unix>,s=<hex>` with s = HMAC-SHA256(secret, t + "." + raw body)."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    timestamp, signature = parts.get("t", ""), parts.get("s", "")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp) or not re.fullmatch(r"[0-9A-Fa-f]{64}", signature):
        raise Unauthorized("Missing or malformed signature.", code="invalid_signature")
    if abs(now - int(timestamp)) > TOLERANCE:
        raise Unauthorized("Signature timestamp is outside the tolerance.", code="stale_signature")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unauthorized("Signature does not match.", code="invalid_signature")


def receive(provider: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    svc = services()
    profile = svc.profile(provider)
    hook = profile.webhook
    if hook is None:
        raise NotFound("This provider sends no webhooks here.", code="unknown_provider", field="provider")
    if len(body) > MAX_BODY:
        raise InvalidInput("The body is too large.", code="too_large", field="body")
    secret = svc.credentials(profile, with_id=False).client_secret
    lowered = {k.lower(): v for k, v in headers.items()}
    verify_signature(secret, lowered.get(hook.signature_header.lower()), body, svc.now())
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
    reason = _reason_code(payload, hook.reason_field)
    disconnected = _disconnect_account(provider, account_id, reason)
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


def _disconnect_account(provider: str, account_id: str, provider_reason: int | None) -> int:
    """Every live connection of this account (any owner) becomes disconnected; repeats change nothing."""
    from .connections_api import mark_disconnected

    store = services().connections
    count = 0
    start = None
    while True:
        keys, start = store.items.query("ByAccount", f"{provider}#{account_id}", limit=100, start=start)
        for key in keys:
            if mark_disconnected(key, "user_revoked", extra={"provider_reason": provider_reason}):
                count += 1
        if not start:
            break
    metrics.add_metric("WebhookDisconnects", MetricUnit.Count, count)
    logger.info("Authorization removed at the provider", extra={"provider": provider, "connections": count})
    return count
