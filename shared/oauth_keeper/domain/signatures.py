"""Provider callback signatures: TikTok's webhook header `t=<unix>,s=<hex HMAC-SHA256(secret, t + "." + raw body)>`
and the `signed_request` (`<base64url HMAC-SHA256>.<base64url JSON>`) of Meta's deauthorize and data-deletion
callbacks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Any

from .errors import InvalidInput, Unauthorized

TOLERANCE = 300  # seconds between the signature's timestamp and now
# A signed_request's length at most (characters). Meta's hold an algorithm, two times and an id (~200 characters);
# the bound keeps a hostile one from costing more than a small decode.
MAX_SIGNED_REQUEST = 4096
_BASE64URL_PART = r"[A-Za-z0-9_-]+={0,2}"
_SIGNED_REQUEST = re.compile(rf"({_BASE64URL_PART})\.({_BASE64URL_PART})")


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


def verify_signed_request(secret: str, value: str | None, *, algorithm: str = "HMAC-SHA256") -> tuple[dict[str, Any],
                                                                                                      str]:
    """(the JSON payload, the payload part as received) of a `signed_request`
    `<base64url signature>.<base64url JSON payload>`, accepted only if the signature is the HMAC-SHA256 of the
    payload part exactly as received under `secret` (the app secret; compared in constant time) and the payload
    names `algorithm` (compared without case). `=` padding on either part is accepted: Meta's signature has been
    seen with one. Follows Meta's data-deletion callback documentation
    (https://developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback/).

    The signature is checked before the payload is read: a payload naming another algorithm (`none`) is never
    how it is verified. Raises InvalidInput (400) for a value missing, longer than MAX_SIGNED_REQUEST or not of
    that shape, a payload that is not a base64url JSON object, and with code `unsupported_algorithm` for another
    algorithm; Unauthorized (401, `invalid_signature`) for a signature that does not match."""
    if not value:
        raise InvalidInput("signed_request is missing.", field="signed_request")
    if len(value) > MAX_SIGNED_REQUEST:
        raise InvalidInput("signed_request is too long.", code="too_large", field="signed_request")
    shape = _SIGNED_REQUEST.fullmatch(value)
    signature = _base64url(shape.group(1)) if shape else None
    if shape is None or signature is None or len(signature) != hashlib.sha256().digest_size:
        raise InvalidInput("signed_request must be <signature>.<payload>, both base64url.", field="signed_request")
    payload_part = shape.group(2)
    expected = hmac.new(secret.encode(), payload_part.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("Signature does not match.", code="invalid_signature")
    raw = _base64url(payload_part)
    try:
        payload = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise InvalidInput("The signed_request payload is not a JSON object.", field="signed_request")
    named = payload.get("algorithm")
    if not isinstance(named, str) or named.upper() != algorithm.upper():
        raise InvalidInput(f"The signed_request must be signed with {algorithm}.", code="unsupported_algorithm",
                           field="signed_request")
    return payload, payload_part


def _base64url(part: str) -> bytes | None:
    """Bytes of a base64url part with or without its padding; None when it is not valid base64url."""
    bare = part.rstrip("=")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError):
        return None
