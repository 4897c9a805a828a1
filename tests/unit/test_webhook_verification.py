"""Provider webhook signatures (`t=<unix>,s=<hex HMAC-SHA256(secret, t + "." + body)>`), checked with no I/O."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from oauth_keeper.domain.errors import Unauthorized
from oauth_keeper.domain.signatures import TOLERANCE, verify_signature

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
SECRET = "client-secret"
BODY = b'{"event":"authorization.removed","user_openid":"acct-1","content":"{\\"reason\\":1}"}'


def signed(body: bytes = BODY, *, secret: str = SECRET, at: int = NOW) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},s={digest}"


@pytest.mark.parametrize("header", [
    signed(),
    signed(at=NOW - TOLERANCE),  # at the edge of the tolerance, either way
    signed(at=NOW + TOLERANCE),
    signed().upper().replace("T=", "t=").replace(",S=", ",s="),  # upper-case hex
], ids=["now", "oldest_accepted", "newest_accepted", "upper_case_hex"])
def test_a_correctly_signed_delivery_is_accepted(header):
    verify_signature(SECRET, header, BODY, NOW)  # raises when refused


@pytest.mark.parametrize(("header", "body"), [
    (signed(secret="another-secret"), BODY),
    (signed(), BODY.replace(b"acct-1", b"acct-2")),
    (signed(), BODY + b" "),
], ids=["wrong_secret", "tampered_body", "one_byte_added"])
def test_a_signature_that_does_not_match_is_refused(header, body):
    with pytest.raises(Unauthorized) as refused:
        verify_signature(SECRET, header, body, NOW)
    assert (refused.value.code, refused.value.status) == ("invalid_signature", 401)


@pytest.mark.parametrize("at", [NOW - TOLERANCE - 1, NOW - 3600, NOW + TOLERANCE + 1],
                         ids=["just_too_old", "replayed_an_hour_later", "from_the_future"])
def test_a_correct_signature_outside_the_tolerance_is_refused_as_stale(at):
    with pytest.raises(Unauthorized) as refused:
        verify_signature(SECRET, signed(at=at), BODY, NOW)
    assert (refused.value.code, refused.value.status) == ("stale_signature", 401)


_DIGEST = signed().split(",s=")[1]


@pytest.mark.parametrize("header", [
    None,
    "",
    f"s={_DIGEST}",  # no timestamp
    f"t={NOW}",  # no signature
    f"t=soon,s={_DIGEST}",
    f"t={NOW},s={_DIGEST[:-2]}",  # truncated
    f"t={NOW},s={_DIGEST[:-1]}g",  # not hex
    f"sha256={_DIGEST}",
    "t=1,s=deadbeef",  # malformed is said before stale
], ids=["absent", "empty", "no_timestamp", "no_signature", "timestamp_not_a_number", "truncated", "not_hex",
        "another_scheme", "old_and_malformed"])
def test_a_missing_or_malformed_signature_header_is_refused(header):
    with pytest.raises(Unauthorized) as refused:
        verify_signature(SECRET, header, BODY, NOW)
    assert (refused.value.code, refused.value.status) == ("invalid_signature", 401)
