"""Tokens sealed as every version before issue 13 sealed them (format 1), to seed tables with what a deployed
stack holds: a copy of that code, kept here because the service itself no longer writes it."""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def seal_v1(kms: Any, key_arn: str, tokens: dict[str, Any], *, connection_id: str, provider: str) -> bytes:
    """`EnvelopeCipher.seal` of format 1: a data key from KMS without an encryption context, the associated data
    `oauth-keeper/v1|<provider>|<connection_id>`; format byte, key length, wrapped key, nonce, ciphertext."""
    answer = kms.generate_data_key(KeyId=key_arn, KeySpec="AES_256")
    key, wrapped = answer["Plaintext"], answer["CiphertextBlob"]
    nonce = os.urandom(12)
    plaintext = json.dumps(tokens, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plaintext, f"oauth-keeper/v1|{provider}|{connection_id}".encode())
    return bytes([1]) + len(wrapped).to_bytes(2, "big") + wrapped + nonce + sealed
