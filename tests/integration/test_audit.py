"""The audit trail at LogLevel=ERROR: every backend API call leaves one record naming the caller, never a secret."""

from __future__ import annotations

import json

import pytest
from oauth_keeper import root
from oauth_keeper.domain.timestamps import iso8601
from oauth_keeper.observability import logger

from local import apigw
from local.stack import install_from_env
from tests.integration.conftest import create_session, location_query
from tests.integration.test_backend_api import call, connect, current_grant

pytestmark = pytest.mark.integration

AUDIT_SERVICE = "oauth-keeper-audit"


@pytest.fixture
def error_level(monkeypatch):
    """`LogLevel: ERROR` as the template sets it: POWERTOOLS_LOG_LEVEL, which Powertools applies to the service
    logger when it is built at import (done here by hand: the module is imported already)."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "ERROR")
    before = logger.log_level
    logger.setLevel("ERROR")
    yield
    logger.setLevel(before)


@pytest.fixture
def audited(stack, error_level, log_output):
    """The lines written at ERROR, and the audit records among them."""
    def read() -> tuple[str, list[dict]]:
        out = log_output.getvalue()
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert not [line for line in lines if line.get("service") == "oauth-keeper" and line["level"] == "INFO"], \
            "the service logger still wrote at INFO: the level under test is not in force"
        return out, [line for line in lines if line.get("service") == AUDIT_SERVICE]
    return read


def the_record(records: list[dict], action: str, **expected) -> dict:
    """The one record of `action` matching `expected`."""
    found = [r for r in records if r["audit"] == action and all(r.get(k) == v for k, v in expected.items())]
    assert len(found) == 1, f"{action} {expected}: {found or records}"
    return found[0]


def assert_the_caller(record: dict) -> None:
    assert record["caller"] == apigw.LOCAL_CALLER_ARN
    assert record["caller_account"] == apigw.LOCAL_ACCOUNT and record["caller_id"] == "AIDALOCAL"
    assert record["source_ip"] == "127.0.0.1" and record["correlation_id"]
    assert record["audit_version"] == 1 and record["level"] == "INFO"


def secrets_of(tiktok, *users: str) -> set[str]:
    """Every token TikTok holds for these users now, and the client secret."""
    found = {tiktok.client_secret}
    for user in users:
        for grant in tiktok.grants_for(tiktok.users[user].open_id):
            found |= {grant.access_token, grant.refresh_token, *grant.rotated_refresh_tokens}
    return found


def assert_no_secret(out: str, secrets: set[str], capfd) -> None:
    captured = capfd.readouterr()
    for secret in secrets:
        assert secret not in out and secret not in captured.out and secret not in captured.err


# -- token reads ----------------------------------------------------------------------------------------------
def test_a_served_token_read_is_audited_with_its_caller_at_log_level_error(audited, tiktok, browser, clock, capfd):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(60)
    status, body = call("GET", f"/connections/{connection_id}/token")
    assert status == 200
    out, records = audited()
    record = the_record(records, "token_read")
    assert_the_caller(record)
    assert record["outcome"] == "allowed" and record["http_status"] == 200 and "error_code" not in record
    assert record["connection_id"] == connection_id and record["owner_id"] == "owner-1"
    assert record["at"] == iso8601(clock.now())
    assert_no_secret(out, secrets_of(tiktok, "alice") | {body["access_token"]}, capfd)


def test_refused_token_reads_are_audited_with_the_reason(audited, tiktok, browser, clock, capfd):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    secrets = secrets_of(tiktok, "alice")
    unknown = "con_" + "a" * 32
    assert call("GET", f"/connections/{unknown}/token")[0] == 404
    assert call("GET", f"/connections/{connection_id}/token", raw_query="min_valid_seconds=99999")[0] == 400
    tiktok.revoke_user(tiktok.users["alice"].open_id)
    clock.advance(7200)
    assert call("GET", f"/connections/{connection_id}/token")[0] == 409
    out, records = audited()
    missing = the_record(records, "token_read", connection_id=unknown)
    assert missing["outcome"] == "refused" and missing["http_status"] == 404
    assert missing["error_code"] == "connection_not_found" and "owner_id" not in missing
    bad = the_record(records, "token_read", http_status=400)
    assert bad["outcome"] == "refused" and bad["error_code"] == "invalid_request"
    assert bad["error_field"] == "min_valid_seconds" and bad["connection_id"] == connection_id
    gone = the_record(records, "token_read", http_status=409)
    assert gone["outcome"] == "refused" and gone["error_code"] == "needs_reauth" and gone["reason"] == "invalid_grant"
    assert gone["connection_id"] == connection_id and gone["owner_id"] == "owner-1"
    for record in records:
        assert_the_caller(record)
    assert_no_secret(out, secrets, capfd)


def test_a_token_read_that_fails_is_audited_as_an_error(audited, tiktok, browser, clock, monkeypatch):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    clock.advance(7300)
    tiktok.set_outage("5xx")
    assert call("GET", f"/connections/{connection_id}/token")[0] == 503
    tiktok.set_outage(None)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(root.container().tokens, "token_for", broken)
    assert call("GET", f"/connections/{connection_id}/token")[0] == 500
    _, records = audited()
    outage = the_record(records, "token_read", http_status=503)
    assert outage["outcome"] == "error" and outage["error_code"] == "provider_unavailable"
    assert outage["owner_id"] == "owner-1"
    bug = the_record(records, "token_read", http_status=500)
    assert bug["outcome"] == "error" and bug["error_code"] == "internal_error"
    assert_the_caller(bug)


# -- forced refreshes, disconnects, erasures, operations, reads -----------------------------------------------
def test_forced_refreshes_are_audited(audited, tiktok, browser, capfd):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, body = call("POST", f"/connections/{connection_id}/refresh")
    assert status == 200 and body["result"] == "refreshed"
    secrets = secrets_of(tiktok, "alice")
    assert call("DELETE", f"/connections/{connection_id}")[0] == 202
    assert call("POST", f"/connections/{connection_id}/refresh")[0] == 409
    out, records = audited()
    done = the_record(records, "token_refresh", http_status=200)
    assert done["outcome"] == "allowed" and done["connection_id"] == connection_id and done["owner_id"] == "owner-1"
    assert_the_caller(done)
    refused = the_record(records, "token_refresh", http_status=409)
    assert refused["outcome"] == "refused" and refused["error_code"] == "disconnecting"
    assert refused["reason"] == "app_disconnected"
    assert_the_caller(refused)
    assert_no_secret(out, secrets, capfd)


def test_disconnects_are_audited_with_their_operation(audited, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, operation = call("DELETE", f"/connections/{connection_id}")
    assert status == 202
    assert call("DELETE", "/connections/con_" + "b" * 32)[0] == 404
    _, records = audited()
    done = the_record(records, "connection_disconnect", http_status=202)
    assert done["outcome"] == "allowed" and done["operation_id"] == operation["operation_id"]
    assert done["connection_id"] == connection_id and done["owner_id"] == "owner-1"
    assert_the_caller(done)
    refused = the_record(records, "connection_disconnect", http_status=404)
    assert refused["outcome"] == "refused" and refused["error_code"] == "connection_not_found"
    assert_the_caller(refused)


def test_owner_erasures_are_audited_with_the_owner_and_operation(audited, tiktok, browser):
    connect(browser, tiktok)
    status, operation = call("DELETE", "/owners/owner-1/connections")
    assert status == 202
    too_long = "o" * 129
    assert call("DELETE", f"/owners/{too_long}/connections")[0] == 400
    _, records = audited()
    done = the_record(records, "owner_erasure", http_status=202)
    assert done["outcome"] == "allowed" and done["owner_id"] == "owner-1"
    assert done["operation_id"] == operation["operation_id"]
    assert_the_caller(done)
    refused = the_record(records, "owner_erasure", http_status=400)
    assert refused["outcome"] == "refused" and refused["error_code"] == "invalid_request"
    assert refused["owner_id"] == too_long and refused["error_field"] == "owner_id"
    assert_the_caller(refused)


def test_account_erasures_are_audited_with_the_provider_account_and_operation(audited, tiktok, browser):
    connect(browser, tiktok)
    alice = tiktok.users["alice"].open_id
    every_char_escaped = "".join(f"%{b:02X}" for b in alice.encode())
    status, operation = call("DELETE", f"/providers/tiktok/accounts/{every_char_escaped}/connections")
    assert status == 202
    assert call("DELETE", "/providers/nope/accounts/acct-1/connections")[0] == 404
    _, records = audited()
    done = the_record(records, "account_erasure", http_status=202)
    assert done["outcome"] == "allowed" and (done["provider"], done["account_id"]) == ("tiktok", alice)
    assert done["operation_id"] == operation["operation_id"]
    assert_the_caller(done)
    refused = the_record(records, "account_erasure", http_status=404)
    assert refused["outcome"] == "refused" and refused["error_code"] == "unknown_provider"
    assert (refused["provider"], refused["account_id"]) == ("nope", "acct-1")
    assert_the_caller(refused)


def test_claims_are_audited_never_with_the_claim_code(audited, tiktok, browser, clock, monkeypatch, capfd):
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")  # the template's default
    root.reset()
    install_from_env(clock=clock)
    codes = []
    for _ in range(2):  # two links of owner-1's: the second is claimed by owner-2 (a forwarded link)
        created = create_session(owner_id="owner-1")
        authorize = browser.get(json.loads(created["body"])["connect_url"])
        codes.append(location_query(browser.get(tiktok.approve(authorize["headers"]["Location"])))["claim"][0])
    status, body = call("POST", "/connections/claims", body=json.dumps({"claim": codes[0], "owner_id": "owner-1"}))
    assert status == 200
    refused = call("POST", "/connections/claims", body=json.dumps({"claim": codes[1], "owner_id": "owner-2"}))
    assert refused[0] == 409
    out, records = audited()
    done = the_record(records, "connection_claim", http_status=200)
    assert done["outcome"] == "allowed" and done["owner_id"] == "owner-1"
    assert done["connection_id"] == body["connection"]["connection_id"]
    assert_the_caller(done)
    mismatch = the_record(records, "connection_claim", http_status=409)
    assert mismatch["outcome"] == "refused" and mismatch["error_code"] == "owner_mismatch"
    assert mismatch["owner_id"] == "owner-2" and "connection_id" not in mismatch
    assert mismatch["grant_owner_id"] == "owner-1"  # whose connect it was: the record names both owners...
    assert "owner-1" not in json.dumps(refused[1])  # ...the claimant's answer never names the rightful one
    assert done.get("grant_owner_id") is None
    assert_the_caller(mismatch)
    assert_no_secret(out, {*codes, *secrets_of(tiktok, "alice")}, capfd)


def test_a_refused_claim_that_reconnected_the_claimant_s_own_connection_names_it(audited, tiktok, browser, clock,
                                                                                  monkeypatch):
    """owner-2 holds alice's account; alice finishes owner-1's forwarded link and owner-2's page claims it: refused,
    and the grant reconnects owner-2's own connection. The record says which connection the refusal reached."""
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")
    root.reset()
    install_from_env(clock=clock)
    codes = []
    for owner_id in ("owner-2", "owner-1"):
        created = create_session(owner_id=owner_id)
        authorize = browser.get(json.loads(created["body"])["connect_url"])
        codes.append(location_query(browser.get(tiktok.approve(authorize["headers"]["Location"])))["claim"][0])
    status, body = call("POST", "/connections/claims", body=json.dumps({"claim": codes[0], "owner_id": "owner-2"}))
    assert status == 200
    assert call("POST", "/connections/claims", body=json.dumps({"claim": codes[1], "owner_id": "owner-2"}))[0] == 409
    _, records = audited()
    mismatch = the_record(records, "connection_claim", http_status=409)
    assert mismatch["outcome"] == "refused" and mismatch["error_code"] == "owner_mismatch"
    assert mismatch["connection_id"] == body["connection"]["connection_id"]
    assert (mismatch["owner_id"], mismatch["grant_owner_id"]) == ("owner-2", "owner-1")


def test_operation_reads_are_audited(audited, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    operation_id = call("DELETE", f"/connections/{connection_id}")[1]["operation_id"]
    assert call("GET", f"/operations/{operation_id}")[0] == 200
    assert call("GET", "/operations/op_unknown")[0] == 404
    _, records = audited()
    read = the_record(records, "operation_read", http_status=200)
    assert read["outcome"] == "allowed" and read["operation_id"] == operation_id
    refused = the_record(records, "operation_read", http_status=404)
    assert refused["outcome"] == "refused" and refused["operation_id"] == "op_unknown"
    assert refused["error_code"] == "operation_not_found"
    for record in (read, refused):
        assert_the_caller(record)


def test_connection_reads_and_lists_are_audited(audited, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    assert call("GET", f"/connections/{connection_id}")[0] == 200
    assert call("GET", "/connections", raw_query="owner_id=owner-1")[0] == 200
    _, records = audited()
    read = the_record(records, "connection_read")
    assert read["outcome"] == "allowed" and read["connection_id"] == connection_id and read["owner_id"] == "owner-1"
    listed = the_record(records, "connection_list")
    assert listed["outcome"] == "allowed" and listed["owner_id"] == "owner-1" and "connection_id" not in listed
    for record in (read, listed):
        assert_the_caller(record)


def test_each_call_leaves_exactly_one_record(audited, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    for _ in range(3):
        call("GET", f"/connections/{connection_id}/token")
    _, records = audited()
    assert [r["audit"] for r in records] == ["token_read"] * 3
    assert len({r["correlation_id"] for r in records}) == 3
    assert current_grant(tiktok).access_token  # the connection is untouched by being audited
