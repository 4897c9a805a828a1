"""Data-deletion requests a provider sends for one of its accounts: their confirmation code and what it names.

A provider's data-deletion callback (Meta's) must be answered with a status URL and a confirmation code the user
can follow. The code is derived, not stored: an HMAC under the provider's app secret of the signed request, so a
retry of the same request gets the same code, nobody without the secret can make one, and it says nothing about
the account. What the service keeps about a request (the account-erasure operation, the receipt) is found by
one-way hashes of the code, so no log line or operation id gives a code back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

CODE_LENGTH = 26  # base32 characters: 130 bits of the HMAC
CODE = re.compile(rf"[a-z2-7]{{{CODE_LENGTH}}}")
# What the status URL says: the request is received and queued; the erasure job runs; the job has finished.
RECEIVED, IN_PROGRESS, COMPLETED = "received", "in_progress", "completed"


def confirmation_code(secret: str, provider: str, payload_part: str) -> str:
    """The confirmation code of a data-deletion request: CODE_LENGTH lower-case base32 characters (a-z, 2-7) of
    HMAC-SHA256 under the app secret `secret` over the provider and the signed request's payload part (the
    base64url text after the `.`, as received)."""
    digest = hmac.new(secret.encode(), f"data-deletion:{provider}:{payload_part}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:CODE_LENGTH]


def normalized_code(value: str) -> str | None:
    """A code as a user may type it (any case, surrounding spaces), or None when it cannot be one."""
    code = value.strip().lower()
    return code if CODE.fullmatch(code) else None


def deletion_operation_id(provider: str, code: str) -> str:
    """The id of the account-erasure operation a request's code names: `op_` and 32 base64url characters of
    SHA-256 over the provider and the code (one-way)."""
    digest = hashlib.sha256(f"data-deletion-operation:{provider}:{code}".encode()).digest()
    return "op_" + base64.urlsafe_b64encode(digest).decode("ascii")[:32]


def receipt_key(provider: str, code: str) -> str:
    """The key a received request is remembered under until its job has begun (a `delivery#` key of the Flows
    table, the only keys the public function may read and write there)."""
    return "delivery#" + hashlib.sha256(f"data-deletion:{provider}:{code}".encode()).hexdigest()
