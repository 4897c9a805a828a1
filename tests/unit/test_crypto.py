import pytest
from oauth_keeper.adapters.kms import DataKeys
from oauth_keeper.adapters.kms import EnvelopeCipher as TokenCipher
from oauth_keeper.domain.errors import TokenDecryptionError

from local.memory import FakeKms, ManualClock

pytestmark = pytest.mark.unit
TOKENS = {"access_token": "act.secret-access", "refresh_token": "rft.secret-refresh", "token_type": "Bearer"}


@pytest.fixture
def kms():
    return FakeKms()


@pytest.fixture
def clock():
    return ManualClock(start=1_800_000_000)


def cipher_for(kms, clock, **limits):
    return TokenCipher(DataKeys(lambda: kms, "arn:aws:kms:us-east-1:123456789012:key/k", clock.now, **limits))


def test_sealed_tokens_round_trip_and_hold_no_plaintext(kms, clock):
    cipher = cipher_for(kms, clock)
    blob = cipher.seal(TOKENS, connection_id="con_a", provider="tiktok")
    assert b"secret-access" not in blob and b"secret-refresh" not in blob
    assert cipher.open(blob, connection_id="con_a", provider="tiktok") == TOKENS


def test_a_ciphertext_moved_to_another_connection_does_not_open(kms, clock):
    cipher = cipher_for(kms, clock)
    blob = cipher.seal(TOKENS, connection_id="con_a", provider="tiktok")
    with pytest.raises(TokenDecryptionError):
        cipher.open(blob, connection_id="con_b", provider="tiktok")
    with pytest.raises(TokenDecryptionError):
        cipher.open(blob, connection_id="con_a", provider="other")


@pytest.mark.parametrize("damage", ["flip_last", "truncate", "flip_wrapped_key", "empty", "bad_format"])
def test_a_tampered_ciphertext_is_refused(kms, clock, damage):
    cipher = cipher_for(kms, clock)
    blob = bytearray(cipher.seal(TOKENS, connection_id="con_a", provider="tiktok"))
    if damage == "flip_last":
        blob[-1] ^= 1
    elif damage == "truncate":
        blob = blob[:40]
    elif damage == "flip_wrapped_key":
        blob[10] ^= 1
    elif damage == "empty":
        blob = bytearray()
    else:
        blob[0] = 9
    fresh = cipher_for(kms, clock)  # no cached unwrapped key: KMS must refuse the damaged wrapped key
    with pytest.raises(TokenDecryptionError):
        fresh.open(bytes(blob), connection_id="con_a", provider="tiktok")


def test_data_keys_are_reused_within_bounds_then_renewed(kms, clock):
    cipher = cipher_for(kms, clock, max_age=300, max_uses=3)
    for _ in range(3):
        cipher.seal(TOKENS, connection_id="con_a", provider="tiktok")
    assert kms.calls == ["GenerateDataKey"]
    cipher.seal(TOKENS, connection_id="con_a", provider="tiktok")  # fourth use: a new key
    assert kms.calls == ["GenerateDataKey", "GenerateDataKey"]
    clock.advance(301)
    cipher.seal(TOKENS, connection_id="con_a", provider="tiktok")  # too old: a new key
    assert kms.calls.count("GenerateDataKey") == 3


def test_opening_with_a_cached_key_needs_no_kms_call_but_a_cold_container_does(kms, clock):
    warm = cipher_for(kms, clock)
    blob = warm.seal(TOKENS, connection_id="con_a", provider="tiktok")
    warm.open(blob, connection_id="con_a", provider="tiktok")
    assert "Decrypt" not in kms.calls
    cold = cipher_for(kms, clock)
    cold.open(blob, connection_id="con_a", provider="tiktok")
    cold.open(blob, connection_id="con_a", provider="tiktok")
    assert kms.calls.count("Decrypt") == 1
