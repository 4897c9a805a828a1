"""In-memory stand-ins for unit tests: a KMS that wraps data keys under a local master key."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class InvalidCiphertextException(Exception):
    pass


class FakeKms:
    def __init__(self) -> None:
        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self.calls: list[str] = []

    def generate_data_key(self, KeyId: str, KeySpec: str) -> dict:  # noqa: N803 - boto3's names
        self.calls.append("GenerateDataKey")
        key = os.urandom(32)
        nonce = os.urandom(12)
        return {"Plaintext": key, "CiphertextBlob": nonce + self._master.encrypt(nonce, key, KeyId.encode())}

    def decrypt(self, CiphertextBlob: bytes, KeyId: str) -> dict:  # noqa: N803
        self.calls.append("Decrypt")
        try:
            key = self._master.decrypt(CiphertextBlob[:12], CiphertextBlob[12:], KeyId.encode())
        except InvalidTag as exc:
            raise InvalidCiphertextException() from exc
        return {"Plaintext": key}
