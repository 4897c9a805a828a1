"""The `OwnerKeys` port on KMS: an owner's keyed hash is KMS GenerateMac (HMAC-SHA-256) under the stack's HMAC key.

The key never leaves KMS, so nobody holding a table or a backup can test a guessed owner id against a tombstone
or the ByOwnerKey index without the right to call GenerateMac on that key. GenerateMac is deterministic for one
key and message, so a warm container remembers the hashes it made (bounded, LRU): an owner id maps to the same
hash for as long as the key exists (KMS does not rotate HMAC keys).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAC_ALGORITHM = "HMAC_SHA_256"
_DOMAIN = b"oauth-keeper/owner:"  # what is being hashed, should the key ever sign anything else


class KmsOwnerKeys:
    def __init__(self, kms: Callable[[], Any], key_arn: str, *, remembered: int = 1024) -> None:
        """`kms` makes the KMS client (on first use); `key_arn` names an HMAC_256 key."""
        self._kms = kms
        self._key_arn = key_arn
        self._remembered = remembered
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.kms_calls = 0

    def owner_key(self, owner_id: str) -> str:
        """64 hex digits. Raises whatever the KMS client raises (the caller's request then fails as a 5xx: no
        check can be skipped for want of the hash)."""
        with self._lock:
            if owner_id in self._known:
                self._known.move_to_end(owner_id)
                return self._known[owner_id]
        answer = self._kms().generate_mac(KeyId=self._key_arn, Message=_DOMAIN + owner_id.encode(),
                                          MacAlgorithm=MAC_ALGORITHM)
        key = bytes(answer["Mac"]).hex()
        with self._lock:
            self.kms_calls += 1
            self._known[owner_id] = key
            while len(self._known) > self._remembered:
                self._known.popitem(last=False)
        return key
