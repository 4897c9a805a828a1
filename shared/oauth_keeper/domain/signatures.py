"""Provider webhook signatures: `t=<unix>,s=<hex HMAC-SHA256(secret, t + "." + raw body)>` (TikTok's scheme)."""

from __future__ import annotations

import hashlib
import hmac
import re

from .errors import Unauthorized

TOLERANCE = 300  # seconds between the signature's timestamp and now


def verify_signature(secret: str, header: str | None, body: bytes, now: float) -> int:
    """Accept `header` only if its timestamp is within TOLERANCE of `now` (epoch seconds) and its HMAC over
    the exact raw `body` matches, compared in constant time (TikTok's webhook signature check). Returns the
    signed timestamp (epoch seconds).

    Raises Unauthorized (401) with code `invalid_signature` (missing, malformed or wrong) or `stale_signature`."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    timestamp, signature = parts.get("t", ""), parts.get("s", "")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp) or not re.fullmatch(r"[0-9A-Fa-f]{64}", signature):
        raise Unauthorized("Missing or malformed signature.", code="invalid_signature")
    if abs(now - int(timestamp)) > TOLERANCE:
        raise Unauthorized("Signature timestamp is outside the tolerance.", code="stale_signature")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unauthorized("Signature does not match.", code="invalid_signature")
    return int(timestamp)
