"""The token envelope (adapters/kms.py): v2 blobs bound to connection, provider, owner, account and token version,
data keys under the stack's constant KMS encryption context, and v1 blobs (before issue 13) still opening."""

import dataclasses

import pytest
from oauth_keeper.adapters.kms import DataKeys, associated_data, encryption_context
from oauth_keeper.adapters.kms import EnvelopeCipher as TokenCipher
from oauth_keeper.domain.connection import TokenBinding
from oauth_keeper.domain.errors import TokenDecryptionError

from local.memory import FakeKms, ManualClock
from tests.v1_tokens import seal_v1

pytestmark = pytest.mark.unit
TOKENS = {"access_token": "act.secret-access", "refresh_token": "rft.secret-refresh", "token_type": "Bearer"}
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
A = TokenBinding("con_a", "tiktok", "owner-1", "open-id-1", 3)


@pytest.fixture
def kms():
    return FakeKms()


@pytest.fixture
def clock():
    return ManualClock(start=1_800_000_000)


def cipher_for(kms, clock, **limits):
    return TokenCipher(DataKeys(lambda: kms, KEY, clock.now, stack="prod", **limits))


def test_sealed_tokens_round_trip_and_hold_no_plaintext(kms, clock):
    cipher = cipher_for(kms, clock)
    blob = cipher.seal(TOKENS, A)
    assert b"secret-access" not in blob and b"secret-refresh" not in blob
    assert blob[0] == 2
    assert cipher.open(blob, A) == TOKENS


@pytest.mark.parametrize("field,other", [
    ("connection_id", "con_b"), ("provider", "other"),
    ("owner_id", "owner-2"),  # an item moved to another owner
    ("account_id", "open-id-2"),  # ...or to another account
    ("token_version", 4),  # newer tokens were written since: this blob is an old one written back
    ("token_version", 2),
])
def test_a_blob_opens_only_on_the_item_it_was_sealed_for(kms, clock, field, other):
    cipher = cipher_for(kms, clock)
    blob = cipher.seal(TOKENS, A)
    with pytest.raises(TokenDecryptionError):
        cipher.open(blob, dataclasses.replace(A, **{field: other}))
    assert cipher.open(blob, A) == TOKENS


def test_the_associated_data_cannot_be_shifted_between_fields():
    # "a|b" + "c" must never equal "a" + "b|c": the v2 encoding is a JSON array, not a joined string.
    one = TokenBinding("con_a", "tiktok", "owner|x", "y", 1)
    two = TokenBinding("con_a", "tiktok", "owner", "x|y", 1)
    assert associated_data(one) != associated_data(two)


@pytest.mark.parametrize("damage", ["flip_last", "truncate", "flip_wrapped_key", "empty", "bad_format",
                                    "downgrade_to_v1"])
def test_a_tampered_ciphertext_is_refused(kms, clock, damage):
    cipher = cipher_for(kms, clock)
    blob = bytearray(cipher.seal(TOKENS, A))
    if damage == "flip_last":
        blob[-1] ^= 1
    elif damage == "truncate":
        blob = blob[:40]
    elif damage == "flip_wrapped_key":
        blob[10] ^= 1
    elif damage == "empty":
        blob = bytearray()
    elif damage == "bad_format":
        blob[0] = 9
    else:  # read as v1: the looser associated data, and the data key unwrapped without its context
        blob[0] = 1
    fresh = cipher_for(kms, clock)  # no cached unwrapped key: KMS must refuse the damaged wrapped key
    with pytest.raises(TokenDecryptionError):
        fresh.open(bytes(blob), A)


def test_a_v1_blob_written_before_the_upgrade_still_opens(kms, clock):
    blob = seal_v1(kms, KEY, TOKENS, connection_id="con_a", provider="tiktok")
    assert blob[0] == 1
    cipher = cipher_for(kms, clock)
    assert cipher.open(blob, A) == TOKENS
    # v1 bound only the connection and provider: those still hold it
    with pytest.raises(TokenDecryptionError):
        cipher.open(blob, dataclasses.replace(A, connection_id="con_b"))
    # its data key was wrapped without an encryption context, and is unwrapped without one
    assert kms.contexts[-1] == {}


def test_data_keys_carry_the_stacks_constant_encryption_context(kms, clock):
    cipher = cipher_for(kms, clock)
    for n in range(5):  # five connections, one data key: the context names no connection
        cipher.seal(TOKENS, dataclasses.replace(A, connection_id=f"con_{n}", owner_id=f"owner-{n}"))
    assert kms.calls == ["GenerateDataKey"]
    assert kms.contexts == [{"purpose": "oauth-keeper/tokens", "stack": "prod"}] == [encryption_context("prod")]
    blob = cipher.seal(TOKENS, A)
    cold = cipher_for(kms, clock)
    assert cold.open(blob, A) == TOKENS
    assert kms.calls[-1] == "Decrypt" and kms.contexts[-1] == encryption_context("prod")


def test_a_data_key_made_for_another_stack_does_not_unwrap(kms, clock):
    blob = TokenCipher(DataKeys(lambda: kms, KEY, clock.now, stack="staging")).seal(TOKENS, A)
    with pytest.raises(TokenDecryptionError):
        cipher_for(kms, clock).open(blob, A)


def test_a_key_unwrapped_for_one_format_is_not_reused_for_the_other(kms, clock):
    """The cache keeps v1 and v2 unwraps apart: a v2 data key cached warm must not make a blob read as v1 skip
    KMS's check of the context."""
    keys = DataKeys(lambda: kms, KEY, clock.now, stack="prod")
    key, wrapped = keys.for_encryption()
    assert keys.for_decryption(wrapped) == key
    with pytest.raises(TokenDecryptionError):
        keys.for_decryption(wrapped, with_context=False)


def test_data_keys_are_reused_within_bounds_then_renewed(kms, clock):
    cipher = cipher_for(kms, clock, max_age=300, max_uses=3)
    for _ in range(3):
        cipher.seal(TOKENS, A)
    assert kms.calls == ["GenerateDataKey"]
    cipher.seal(TOKENS, A)  # fourth use: a new key
    assert kms.calls == ["GenerateDataKey", "GenerateDataKey"]
    clock.advance(301)
    cipher.seal(TOKENS, A)  # too old: a new key
    assert kms.calls.count("GenerateDataKey") == 3


def test_opening_with_a_cached_key_needs_no_kms_call_but_a_cold_container_does(kms, clock):
    warm = cipher_for(kms, clock)
    blob = warm.seal(TOKENS, A)
    warm.open(blob, A)
    assert "Decrypt" not in kms.calls
    cold = cipher_for(kms, clock)
    cold.open(blob, A)
    cold.open(blob, A)
    assert kms.calls.count("Decrypt") == 1
    v1 = seal_v1(kms, KEY, TOKENS, connection_id="con_a", provider="tiktok")
    cold.open(v1, A)
    cold.open(v1, A)
    assert kms.calls.count("Decrypt") == 2  # v1 keys are cached too
