"""Meta's `signed_request`, made as Meta's servers make it for the deauthorize and data-deletion callbacks.

`<base64url HMAC-SHA256(app secret, payload part)>.<base64url JSON payload>`, sent as the form field
`signed_request` (https://developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback/).
The simulator's signer: tests, `make dev` and the demo post what a Meta app would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode


def _part(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def signed_request(secret: str, payload: dict[str, Any] | bytes, *, padded: bool = False) -> str:
    """`payload` (a dict as JSON, or raw bytes for hostile tests) signed with the app `secret`. `padded`: the
    signature keeps a `=`, as Meta's has been seen to."""
    payload_part = _part(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), payload_part.encode("ascii"), hashlib.sha256).digest()
    return _part(signature) + ("=" if padded else "") + "." + payload_part


def callback_body(secret: str, user_id: str, issued_at: int, *, algorithm: str = "HMAC-SHA256",
                  drop: tuple[str, ...] = (), **extra: Any) -> bytes:
    """The form body Meta posts to a deauthorize or data-deletion callback URL for the app user `user_id`
    (app-scoped), issued at `issued_at` (epoch seconds); `drop` leaves payload fields out, `extra` adds some."""
    payload = {"algorithm": algorithm, "expires": issued_at + 3600, "issued_at": issued_at, "user_id": user_id,
               **extra}
    return form(signed_request(secret, {k: v for k, v in payload.items() if k not in drop}))


def form(value: str) -> bytes:
    """`signed_request=<value>`, form-encoded."""
    return urlencode({"signed_request": value}).encode("ascii")
