"""Meta's `signed_request` (deauthorize and data-deletion callbacks), its profile section and the data-deletion
codes, checked with no I/O (issue 15, section 4)."""

from __future__ import annotations

import json

import pytest
from oauth_keeper.domain.data_deletion import (
    CODE,
    confirmation_code,
    deletion_operation_id,
    normalized_code,
    receipt_key,
)
from oauth_keeper.domain.errors import InvalidInput, Unauthorized
from oauth_keeper.domain.provider_events import AccountRemovalRequest, removal_request_of
from oauth_keeper.domain.providers import DeauthorizationFields, profile_from_data
from oauth_keeper.domain.signatures import MAX_SIGNED_REQUEST, verify_signed_request
from oauth_keeper.usecases.disconnect import _plausible_id

from local.signed_request import signed_request
from tests.meta_profile import meta_test_data

pytestmark = pytest.mark.unit

SECRET = "app-secret"
PAYLOAD = {"algorithm": "HMAC-SHA256", "expires": 1_800_003_600, "issued_at": 1_800_000_000, "user_id": "218471"}


@pytest.mark.parametrize("value", [
    signed_request(SECRET, PAYLOAD),
    signed_request(SECRET, PAYLOAD, padded=True),  # Meta's signature has been seen with a `=`
    signed_request(SECRET, {**PAYLOAD, "algorithm": "hmac-sha256"}),
], ids=["bare", "padded_signature", "algorithm_in_lower_case"])
def test_a_request_signed_with_the_app_secret_is_accepted_and_read(value):
    payload, part = verify_signed_request(SECRET, value)
    assert payload["user_id"] == "218471" and value.endswith("." + part)


def _swap_payload(value: str, payload: dict) -> str:
    return value.split(".")[0] + "." + signed_request(SECRET, payload).split(".")[1]


@pytest.mark.parametrize("value", [
    signed_request("another-app-secret", PAYLOAD),
    _swap_payload(signed_request(SECRET, PAYLOAD), {**PAYLOAD, "user_id": "999"}),
    _swap_payload(signed_request(SECRET, PAYLOAD), {**PAYLOAD, "algorithm": "none"}),
    signed_request(SECRET, PAYLOAD)[:-1] + ("A" if not signed_request(SECRET, PAYLOAD).endswith("A") else "B"),
], ids=["another_apps_secret", "tampered_account", "tampered_to_algorithm_none", "one_character_changed"])
def test_a_signature_that_does_not_match_is_401(value):
    with pytest.raises(Unauthorized) as refused:
        verify_signed_request(SECRET, value)
    assert (refused.value.status, refused.value.code) == (401, "invalid_signature")


_GOOD = signed_request(SECRET, PAYLOAD)
_SIG, _BODY = _GOOD.split(".")


@pytest.mark.parametrize("value", [
    None, "", _SIG, f"{_SIG}.", f".{_BODY}", f"{_SIG}.{_BODY}.{_BODY}", f"{_SIG[:-4]}.{_BODY}",
    f"{_SIG}.{_BODY}!", f"{_SIG} .{_BODY}", f"{_SIG}.{_BODY}===", "é." + _BODY,
], ids=["absent", "empty", "no_payload", "empty_payload", "no_signature", "three_parts", "short_signature",
        "not_base64url", "a_space", "too_much_padding", "not_ascii"])
def test_a_malformed_signed_request_is_400(value):
    with pytest.raises(InvalidInput) as refused:
        verify_signed_request(SECRET, value)
    assert refused.value.status == 400


@pytest.mark.parametrize("payload", [b"[1]", b"not json", b"\xff\xfe", b'"text"'],
                         ids=["array", "not_json", "not_utf8", "string"])
def test_a_signed_payload_that_is_not_a_json_object_is_400(payload):
    with pytest.raises(InvalidInput) as refused:
        verify_signed_request(SECRET, signed_request(SECRET, payload))
    assert (refused.value.status, refused.value.field) == (400, "signed_request")


@pytest.mark.parametrize("algorithm", ["HMAC-SHA1", "none", None, 256], ids=["sha1", "none", "absent", "number"])
def test_a_correctly_signed_payload_naming_another_algorithm_is_400(algorithm):
    payload = {k: v for k, v in {**PAYLOAD, "algorithm": algorithm}.items() if v is not None}
    with pytest.raises(InvalidInput) as refused:
        verify_signed_request(SECRET, signed_request(SECRET, payload))
    assert (refused.value.status, refused.value.code) == (400, "unsupported_algorithm")


def test_an_oversized_signed_request_is_400_before_any_hmac():
    value = signed_request(SECRET, {**PAYLOAD, "padding": "p" * MAX_SIGNED_REQUEST})
    with pytest.raises(InvalidInput) as refused:
        verify_signed_request(SECRET, value)
    assert refused.value.code == "too_large"


# -- the profile section ---------------------------------------------------------------------------------------
def test_the_deauthorization_section_is_read_from_the_profile_and_is_optional():
    profile = profile_from_data(meta_test_data())
    assert profile.deauthorization == DeauthorizationFields(format="signed_request")
    assert profile_from_data({**meta_test_data(), "deauthorization": None}).deauthorization is None


@pytest.mark.parametrize("section", [{"format": "jwt"}, {"format": "signed_request", "acount_field": "x"}, {}],
                         ids=["unknown_format", "typo_in_a_key", "no_format"])
def test_a_deauthorization_section_it_cannot_follow_is_refused(section):
    with pytest.raises((ValueError, TypeError)):
        profile_from_data({**meta_test_data(), "deauthorization": section or {"account_field": "id"}})


# -- confirmation codes ------------------------------------------------------------------------------------------
def test_a_confirmation_code_is_the_same_for_the_same_request_and_nobody_else_can_make_it():
    code = confirmation_code(SECRET, "facebook", _BODY)
    assert code == confirmation_code(SECRET, "facebook", _BODY)  # a retry is answered the same
    assert CODE.fullmatch(code) and code.isalnum()
    others = {confirmation_code("another-secret", "facebook", _BODY), confirmation_code(SECRET, "instagram", _BODY),
              confirmation_code(SECRET, "facebook", signed_request(SECRET, {**PAYLOAD, "issued_at": 1}).split(".")[1])}
    assert code not in others and len(others) == 3


def test_what_a_code_names_never_gives_the_code_back():
    code = confirmation_code(SECRET, "facebook", _BODY)
    operation_id = deletion_operation_id("facebook", code)
    assert _plausible_id(operation_id) and code not in operation_id
    assert operation_id != deletion_operation_id("instagram", code)
    assert receipt_key("facebook", code).startswith("delivery#") and code not in receipt_key("facebook", code)
    assert normalized_code(f" {code.upper()} ") == code
    assert normalized_code("abc123") is None and normalized_code(code + "a") is None


# -- the queue message -------------------------------------------------------------------------------------------
def test_an_erasure_travels_as_version_2_which_a_version_1_reader_refuses():
    erasure = AccountRemovalRequest("facebook", "218471", 1_799_999_940, "account_erased", operation_id="op_abc")
    data = json.loads(erasure.message())
    assert data["version"] == 2 and removal_request_of(data) == erasure
    # What a worker from before this change checked: version 1 only, so it parks the message, never drops it.
    assert data.get("version") != 1 and "removal" in data
    plain = AccountRemovalRequest("facebook", "218471", 1_799_999_940, "user_revoked")
    assert json.loads(plain.message())["version"] == 1 and removal_request_of(json.loads(plain.message())) == plain


@pytest.mark.parametrize("data", [
    {"version": 2, "removal": {"provider": "f", "account_id": "a", "granted_before": 1, "reason": "account_erased"}},
    {"version": 2, "removal": {"provider": "f", "account_id": "a", "granted_before": 1, "reason": "account_erased",
                               "operation_id": ""}},
    {"version": True, "removal": {"provider": "f", "account_id": "a", "granted_before": 1, "reason": "user_revoked"}},
    {"version": 3, "removal": {"provider": "f", "account_id": "a", "granted_before": 1, "reason": "user_revoked"}},
], ids=["erasure_without_operation", "empty_operation", "boolean_version", "newer_version"])
def test_a_message_it_cannot_read_is_not_applied(data):
    assert removal_request_of(data) is None
