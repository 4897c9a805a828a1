"""The `TokenCipher` port: envelope encryption with KMS data keys and AES-256-GCM, the item bound in as AAD.

Two formats, told apart by the first byte. v1 (before issue 13): AAD names the connection and provider, data keys
carry no KMS encryption context. v2 (every write since): AAD names connection, provider, owner, account and token
version, and data keys carry the stack's constant encryption context. Both read; only v2 is written."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..domain.connection import TokenBinding
from ..domain.errors import TokenDecryptionError
from ..observability import MetricUnit, logger, record_metric

V1, V2 = 1, 2  # the format byte
_NONCE_BYTES = 12
PURPOSE = "oauth-keeper/tokens"


# Seconds an unwrapped data key stays cached from its unwrapping (or making): a key read back later costs a KMS
# Decrypt again, so a revoked grant on the KMS key takes effect within the hour. Eager refreshes of 2 h tokens open
# tokens sealed 96 min earlier: past this, so each container unwraps its own keys too (local/bench/model.py).
UNWRAPPED_MAX_AGE = 3600


def encryption_context(stack: str) -> dict[str, str]:
    """The KMS encryption context of every v2 data key: the same for the whole stack, never per connection, so
    one data key seals many connections (the cache) and the key policy can require it."""
    return {"purpose": PURPOSE, "stack": stack}


class DataKeys:
    """Data keys from KMS, cached in the warm container.

    A refresh would otherwise cost two KMS calls, about as much as all its DynamoDB writes. One data key
    encrypts for a bounded time and number of uses (far below AES-GCM's random-nonce limit); unwrapped keys
    are remembered (bounded, LRU) so reading a token usually needs no KMS call either.

    New data keys carry `encryption_context(stack)`; a wrapped key is unwrapped with that context, or without one
    (`with_context=False`) for v1 blobs, whose keys were made before it existed. The two are cached apart.
    """

    def __init__(
        self,
        kms: Callable[[], Any],
        key_arn: str,
        now: Callable[[], float],
        *,
        stack: str = "oauth-keeper",
        max_age: float = 300.0,
        max_uses: int = 10_000,
        max_unwrapped: int = 256,
    ) -> None:
        self._kms = kms
        self._key_arn = key_arn
        self._context = encryption_context(stack)
        self._now = now
        self._max_age = max_age
        self._max_uses = max_uses
        self._max_unwrapped = max_unwrapped
        self._current: tuple[bytes, bytes, float, int] | None = None  # plaintext, wrapped, born, uses
        self._unwrapped: OrderedDict[tuple[bool, bytes], tuple[bytes, float]] = OrderedDict()
        self._in_flight: dict[tuple[bool, bytes], _Flight] = {}
        self._lock = threading.Lock()
        self.kms_calls = 0

    def prepare(self, for_seconds: float) -> None:
        """Make sure a data key is at hand that stays usable `for_seconds` more: sealing within that time
        needs no KMS call (the refresher calls this before taking a lease, so nothing under it waits on KMS)."""
        with self._lock:
            if self._current:
                _, _, born, uses = self._current
                if uses < self._max_uses - 100 and self._now() + for_seconds - born < self._max_age:
                    return
            self._current = None
        self.for_encryption()

    def for_encryption(self) -> tuple[bytes, bytes]:
        with self._lock:
            now = self._now()
            if self._current:
                key, wrapped, born, uses = self._current
                if uses < self._max_uses and now - born < self._max_age:
                    self._current = (key, wrapped, born, uses + 1)
                    return key, wrapped
            answer = self._kms().generate_data_key(KeyId=self._key_arn, KeySpec="AES_256",
                                                   EncryptionContext=self._context)
            self.kms_calls += 1
            key, wrapped = answer["Plaintext"], answer["CiphertextBlob"]
            self._current = (key, wrapped, now, 1)
            self._remember((True, wrapped), key, now)
            return key, wrapped

    def for_decryption(self, wrapped: bytes, *, with_context: bool = True) -> bytes:
        """The plaintext data key for a wrapped one: from the cache, else one KMS Decrypt however many threads
        of a cold batch ask for the same key at once (the others wait for its answer). `with_context`: the key
        was made with the stack's encryption context (v2); False for a v1 blob's key, made without one.

        Raises TokenDecryptionError when KMS refuses the blob (not ours, another key, another context)."""
        entry = (with_context, wrapped)
        with self._lock:
            now = self._now()
            cached = self._unwrapped.get(entry)
            if cached and now - cached[1] < UNWRAPPED_MAX_AGE:
                self._unwrapped.move_to_end(entry)
                return cached[0]
            flight = self._in_flight.get(entry)
            leader = flight is None
            if flight is None:
                flight = self._in_flight[entry] = _Flight()
        if not leader:
            return flight.result()
        try:
            key = self._unwrap(wrapped, with_context)
        except BaseException as exc:
            with self._lock:
                self._in_flight.pop(entry, None)
            flight.fail(exc)
            raise
        with self._lock:  # cached before the flight ends: a thread arriving now finds the key, not a new flight
            self._remember(entry, key, now)
            self._in_flight.pop(entry, None)
        flight.succeed(key)
        return key

    def _unwrap(self, wrapped: bytes, with_context: bool) -> bytes:
        context = {"EncryptionContext": self._context} if with_context else {}
        try:
            answer = self._kms().decrypt(CiphertextBlob=wrapped, KeyId=self._key_arn, **context)
        except Exception as exc:  # KMS refuses a blob it did not make: same outcome as a bad tag
            if type(exc).__name__ in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise TokenDecryptionError("Stored token key could not be unwrapped.") from exc
            raise
        with self._lock:
            self.kms_calls += 1
        return answer["Plaintext"]

    def _remember(self, entry: tuple[bool, bytes], key: bytes, now: float) -> None:
        self._unwrapped[entry] = (key, now)
        self._unwrapped.move_to_end(entry)
        while len(self._unwrapped) > self._max_unwrapped:
            self._unwrapped.popitem(last=False)


class _Flight:
    """One KMS Decrypt in progress, its answer shared with every thread that asked for the same key meanwhile."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._key: bytes | None = None
        self._error: BaseException | None = None

    def succeed(self, key: bytes) -> None:
        self._key = key
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def result(self) -> bytes:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._key is not None
        return self._key


def associated_data(binding: TokenBinding, version: int = V2) -> bytes:
    """The AEAD associated data of a blob in format `version`. v1 bound only the connection id and provider; v2 is
    a JSON array (unambiguous whatever characters the ids hold) of a label, the five bound values and the version.
    """
    if version == V1:
        return f"oauth-keeper/v1|{binding.provider}|{binding.connection_id}".encode()
    return json.dumps([f"{PURPOSE}/v2", binding.connection_id, binding.provider, binding.owner_id,
                       binding.account_id, int(binding.token_version)], separators=(",", ":")).encode()


def secret_associated_data(bound_to: str) -> bytes:
    """Another label than the tokens': a token blob never opens as a secret, nor the other way round."""
    return json.dumps([f"{PURPOSE}/secret/v2", bound_to], separators=(",", ":")).encode()


class EnvelopeCipher:
    """Seals a connection's tokens into one blob: format byte, wrapped key, nonce, AES-GCM ciphertext.

    The associated data binds the blob to its item (`TokenBinding`), so a blob copied onto another item, written
    back over newer tokens, or left on an item whose owner or account was rewritten never opens. Every failure
    to open counts in the `TokenIntegrityFailures` metric (its alarm: template.yaml). `seal_secret` seals one
    short secret (a flow's PKCE verifier) in the same v2 format, bound to where it is stored."""

    def __init__(self, keys: DataKeys) -> None:
        self._keys = keys

    def prepare(self, for_seconds: float) -> None:
        """Sealing within the next `for_seconds` will need no KMS call."""
        self._keys.prepare(for_seconds)

    def seal(self, tokens: dict[str, Any], binding: TokenBinding) -> bytes:
        """`tokens` (JSON-serialisable) as a v2 blob bound to `binding`, whose `token_version` must be the one the
        same write stores."""
        key, wrapped = self._keys.for_encryption()
        nonce = os.urandom(_NONCE_BYTES)
        plaintext = json.dumps(tokens, separators=(",", ":")).encode()
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data(binding, V2))
        return bytes([V2]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed

    def open(self, blob: bytes, binding: TokenBinding) -> dict[str, Any]:
        """The tokens of a v1 or v2 blob stored on the item `binding` describes (as read).

        Raises TokenDecryptionError when the blob is malformed, tampered with, moved, rolled back or its item
        rewritten; other KMS errors (throttling, access denied) pass through unchanged."""
        try:
            return self._open(blob, binding)
        except TokenDecryptionError as exc:
            record_metric("TokenIntegrityFailures", MetricUnit.Count, 1)
            logger.warning("Stored tokens refused", extra={"format": blob[0] if blob else None, "cause": str(exc)})
            raise

    def seal_secret(self, value: str, *, bound_to: str) -> bytes:
        """`value` as a v2 blob, opening only with the same `bound_to` (e.g. the item's key)."""
        key, wrapped = self._keys.for_encryption()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, value.encode(), secret_associated_data(bound_to))
        return bytes([V2]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed

    def open_secret(self, blob: bytes, *, bound_to: str) -> str:
        """Raises TokenDecryptionError when the blob is malformed, tampered with or bound to something else."""
        wrapped, nonce, sealed, version = self._parts(blob)
        if version != V2:
            raise TokenDecryptionError("Stored secret: unknown format.")
        key = self._keys.for_decryption(wrapped, with_context=True)
        try:
            return AESGCM(key).decrypt(nonce, sealed, secret_associated_data(bound_to)).decode()
        except InvalidTag as exc:
            raise TokenDecryptionError("Stored secret failed authentication.") from exc

    @staticmethod
    def _parts(blob: bytes) -> tuple[bytes, bytes, bytes, int]:
        """(wrapped key, nonce, ciphertext, format) of a blob. Raises TokenDecryptionError when malformed."""
        try:
            version = blob[0] if blob else None
            if version not in (V1, V2):
                raise ValueError("unknown format")
            size = int.from_bytes(blob[1:3], "big")
            wrapped = blob[3 : 3 + size]
            nonce = blob[3 + size : 3 + size + _NONCE_BYTES]
            sealed = blob[3 + size + _NONCE_BYTES :]
            if len(wrapped) != size or len(nonce) != _NONCE_BYTES or not sealed:
                raise ValueError("truncated")
        except (ValueError, IndexError) as exc:
            raise TokenDecryptionError("Stored tokens are malformed.") from exc
        return wrapped, nonce, sealed, version

    def _open(self, blob: bytes, binding: TokenBinding) -> dict[str, Any]:
        wrapped, nonce, sealed, version = self._parts(blob)
        key = self._keys.for_decryption(wrapped, with_context=version == V2)
        try:
            plaintext = AESGCM(key).decrypt(nonce, sealed, associated_data(binding, version))
        except InvalidTag as exc:
            raise TokenDecryptionError("Stored tokens failed authentication.") from exc
        return json.loads(plaintext)
