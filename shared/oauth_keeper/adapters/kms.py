"""The `TokenCipher` port: envelope encryption with KMS data keys and AES-256-GCM, the connection bound in as AAD."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..domain.errors import TokenDecryptionError

_FORMAT = 1
_NONCE_BYTES = 12


class DataKeys:
    """Data keys from KMS, cached in the warm container.

    A refresh would otherwise cost two KMS calls, about as much as all its DynamoDB writes. One data key
    encrypts for a bounded time and number of uses (far below AES-GCM's random-nonce limit); unwrapped keys
    are remembered (bounded, LRU) so reading a token usually needs no KMS call either.
    """

    def __init__(
        self,
        kms: Callable[[], Any],
        key_arn: str,
        now: Callable[[], float],
        *,
        max_age: float = 300.0,
        max_uses: int = 10_000,
        max_unwrapped: int = 256,
    ) -> None:
        self._kms = kms
        self._key_arn = key_arn
        self._now = now
        self._max_age = max_age
        self._max_uses = max_uses
        self._max_unwrapped = max_unwrapped
        self._current: tuple[bytes, bytes, float, int] | None = None  # plaintext, wrapped, born, uses
        self._unwrapped: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self._in_flight: dict[bytes, _Flight] = {}
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
            answer = self._kms().generate_data_key(KeyId=self._key_arn, KeySpec="AES_256")
            self.kms_calls += 1
            key, wrapped = answer["Plaintext"], answer["CiphertextBlob"]
            self._current = (key, wrapped, now, 1)
            self._remember(wrapped, key, now)
            return key, wrapped

    def for_decryption(self, wrapped: bytes) -> bytes:
        """The plaintext data key for a wrapped one: from the cache, else one KMS Decrypt however many threads
        of a cold batch ask for the same key at once (the others wait for its answer).

        Raises TokenDecryptionError when KMS refuses the blob (not ours, or another key)."""
        with self._lock:
            now = self._now()
            cached = self._unwrapped.get(wrapped)
            if cached and now - cached[1] < 3600:
                self._unwrapped.move_to_end(wrapped)
                return cached[0]
            flight = self._in_flight.get(wrapped)
            leader = flight is None
            if flight is None:
                flight = self._in_flight[wrapped] = _Flight()
        if not leader:
            return flight.result()
        try:
            key = self._unwrap(wrapped)
        except BaseException as exc:
            with self._lock:
                self._in_flight.pop(wrapped, None)
            flight.fail(exc)
            raise
        with self._lock:  # cached before the flight ends: a thread arriving now finds the key, not a new flight
            self._remember(wrapped, key, now)
            self._in_flight.pop(wrapped, None)
        flight.succeed(key)
        return key

    def _unwrap(self, wrapped: bytes) -> bytes:
        try:
            answer = self._kms().decrypt(CiphertextBlob=wrapped, KeyId=self._key_arn)
        except Exception as exc:  # KMS refuses a blob it did not make: same outcome as a bad tag
            if type(exc).__name__ in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise TokenDecryptionError("Stored token key could not be unwrapped.") from exc
            raise
        with self._lock:
            self.kms_calls += 1
        return answer["Plaintext"]

    def _remember(self, wrapped: bytes, key: bytes, now: float) -> None:
        self._unwrapped[wrapped] = (key, now)
        self._unwrapped.move_to_end(wrapped)
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


def associated_data(connection_id: str, provider: str) -> bytes:
    return f"oauth-keeper/v1|{provider}|{connection_id}".encode()


def secret_associated_data(bound_to: str) -> bytes:
    """Another prefix than the tokens': a token blob never opens as a secret, nor the other way round."""
    return f"oauth-keeper/secret/v1|{bound_to}".encode()


class EnvelopeCipher:
    """Seals a connection's tokens into one blob: format byte, wrapped key, nonce, AES-GCM ciphertext.

    The associated data names the connection and provider, so a blob copied onto another item never opens.
    `seal_secret` seals one short secret (a flow's PKCE verifier) the same way, bound to where it is stored."""

    def __init__(self, keys: DataKeys) -> None:
        self._keys = keys

    def prepare(self, for_seconds: float) -> None:
        """Sealing within the next `for_seconds` will need no KMS call."""
        self._keys.prepare(for_seconds)

    def seal(self, tokens: dict[str, Any], *, connection_id: str, provider: str) -> bytes:
        plaintext = json.dumps(tokens, separators=(",", ":")).encode()
        return self._seal(plaintext, associated_data(connection_id, provider))

    def open(self, blob: bytes, *, connection_id: str, provider: str) -> dict[str, Any]:
        return json.loads(self._open(blob, associated_data(connection_id, provider), "tokens"))

    def seal_secret(self, value: str, *, bound_to: str) -> bytes:
        """`value` sealed (same format as tokens), opening only with the same `bound_to` (e.g. the item's key)."""
        return self._seal(value.encode(), secret_associated_data(bound_to))

    def open_secret(self, blob: bytes, *, bound_to: str) -> str:
        """Raises TokenDecryptionError when the blob is malformed, tampered with or bound to something else."""
        return self._open(blob, secret_associated_data(bound_to), "secret").decode()

    def _seal(self, plaintext: bytes, associated: bytes) -> bytes:
        key, wrapped = self._keys.for_encryption()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated)
        return bytes([_FORMAT]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed

    def _open(self, blob: bytes, associated: bytes, what: str) -> bytes:
        try:
            if not blob or blob[0] != _FORMAT:
                raise ValueError("unknown format")
            size = int.from_bytes(blob[1:3], "big")
            wrapped = blob[3 : 3 + size]
            nonce = blob[3 + size : 3 + size + _NONCE_BYTES]
            sealed = blob[3 + size + _NONCE_BYTES :]
            if len(wrapped) != size or len(nonce) != _NONCE_BYTES or not sealed:
                raise ValueError("truncated")
        except (ValueError, IndexError) as exc:
            raise TokenDecryptionError(f"Stored {what}: malformed.") from exc
        key = self._keys.for_decryption(wrapped)
        try:
            return AESGCM(key).decrypt(nonce, sealed, associated)
        except InvalidTag as exc:
            raise TokenDecryptionError(f"Stored {what}: failed authentication.") from exc
