"""The handlers keep openapi.yaml's promises: schemathesis sends generated requests through the local API Gateway.

Every request goes in-process through `local.gateway.Gateway` (template.yaml's routes and auth) to the real
handlers over moto and the simulated TikTok. Requests to IAM routes are signed (SigV4) by the local identity,
as the app's backend signs them; the webhook gets no valid signature, so it must answer 401 (404 for a
provider that sends no webhooks). Each operation runs in a fresh world seeded with real connections (see
conftest.py), and `{connection_id}` / `owner_id` are drawn from the seeded values as well as generated
(missing) ones.

Checks (support.CHECKS): no 5xx, a documented status code, the documented content type, a body valid against
its schema, the documented headers. Known violations are pinned in test_known_violations.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from local import apigw
from tests.contract.support import BASE, CHECKS, SEEDED, iam, op, schema, send, through_gateway

pytestmark = pytest.mark.integration


# -- generation: seeded ids as well as generated (missing) ones ------------------------------------------------
# Visible ASCII that Powertools' router cannot match in a path segment, or that splits the path: an owner id
# holding one is valid (the OwnerId pattern, POST /connect-sessions) but answers a 500 or the gateway's 404.
# Pinned in test_known_violations.py; kept out of the fuzzing so that it finds new violations.
UNROUTABLE_IN_PATH = set('"#/?\\`')


@schema.hook
def filter_path_parameters(context, path_parameters):
    # The values arrive percent-encoded, as they go on the wire.
    return not any(set(unquote(str(value))) & UNROUTABLE_IN_PATH for value in (path_parameters or {}).values())


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Existing and missing ids alike: each seeded id is drawn about as often as a generated one."""
    path_parameters = path_parameters or {}
    if "connection_id" in path_parameters and SEEDED.connection_ids:
        ids = st.sampled_from([*SEEDED.connection_ids, path_parameters["connection_id"]])
        return ids.map(lambda cid: {**path_parameters, "connection_id": cid})
    if "owner_id" in path_parameters and SEEDED.owner_id:
        owners = st.sampled_from([SEEDED.owner_id, path_parameters["owner_id"]])
        return owners.map(lambda owner: {**path_parameters, "owner_id": owner})
    if "provider" in path_parameters:  # mostly the providers that do send webhooks and signed callbacks
        providers = st.sampled_from(["tiktok", "meta_test", path_parameters["provider"]])
        return providers.map(lambda name: {**path_parameters, "provider": name})
    return st.just(path_parameters)


@schema.hook
def flatmap_query(context, query):
    if query and "owner_id" in query and SEEDED.owner_id:
        return st.sampled_from([SEEDED.owner_id, query["owner_id"]]).map(lambda owner: {**query, "owner_id": owner})
    return st.just(query)


# -- the fuzzing: every operation, a fresh seeded world each ---------------------------------------------------
@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.filter_too_much])
def test_the_api_keeps_the_documents_promises(case, seeded):
    response = send(case)
    case.validate_response(response, checks=CHECKS)
    if iam(case.operation):
        assert response.status_code != 403, f"the gateway refused a signed call: {response.text}"
    else:  # the provider callbacks: nobody signed these bodies; the status: no code was issued
        assert response.status_code in _UNSIGNED[(case.operation.method.upper(), case.operation.path)].get(
            case.path_parameters["provider"], {404}), response.text


# What an unsigned (or made-up) call answers, by route and provider; any other provider: 404.
_UNSIGNED = {
    ("POST", "/webhooks/{provider}"): {"tiktok": {401}},
    ("POST", "/deauthorize/{provider}"): {"meta_test": {400, 401}},
    ("POST", "/data-deletion/{provider}"): {"meta_test": {400, 401}},
    ("GET", "/data-deletion/{provider}"): {"meta_test": {400, 404}},
}


# -- explicit requests: every documented answer at least once, with the seeded ids -----------------------------
def _json(body: dict) -> dict:
    return {"body": body, "media_type": "application/json"}


IAM_OPERATIONS = [(o.method.upper(), o.path) for o in (r.ok() for r in schema.get_all_operations()) if iam(o)]


SESSION = {"provider": "tiktok", "return_to": "https://app.example.com/settings"}
# (name, method, path, case arguments from the seeded world, expected status), played in this order in one
# world: the calls that change it (disconnect, erase) come last.
def _operation_of_a_disconnect(connection_id: str) -> str:
    """The operation id a disconnect answers with (each call a new one once the connection is disconnected)."""
    answer = apigw.invoke("DELETE", f"/connections/{connection_id}")
    return json.loads(answer["body"])["operation_id"]


EXPLICIT = [
    ("list", "GET", "/connections", lambda s: {"query": {"owner_id": s.owner_id, "limit": 1}}, 200),
    ("list-unknown-owner", "GET", "/connections", lambda s: {"query": {"owner_id": "tenant:7+user~x"}}, 200),
    ("list-bad-cursor", "GET", "/connections", lambda s: {"query": {"owner_id": s.owner_id, "cursor": "x"}}, 400),
    ("list-limit-0", "GET", "/connections", lambda s: {"query": {"owner_id": s.owner_id, "limit": 0}}, 400),
    ("get", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 200),
    ("get-needs-reauth", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["needs_reauth"]}}, 200),
    ("get-missing", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": "con_" + "a" * 32}}, 404),
    ("get-own", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": s.owner_id}}, 200),
    ("get-another-owners", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "owner-2"}}, 404),
    ("get-malformed-owner", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "a b"}}, 400),
    ("token", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 200),
    ("token-refreshed-first", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"min_valid_seconds": 3600}},
     200),
    ("token-out-of-range", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"min_valid_seconds": 3601}},
     400),
    ("token-disconnected", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["disconnected"]}}, 409),
    ("token-needs-reauth", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["needs_reauth"]}}, 409),
    ("token-missing", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": "con_" + "b" * 32}}, 404),
    ("token-own", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": s.owner_id}}, 200),
    ("token-another-owners", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "owner-2"}}, 404),
    ("token-unknown-channel", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"channel_id": "1"}}, 404),
    ("token-malformed-channel", "GET", "/connections/{connection_id}/token",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"channel_id": "a b"}}, 400),
    ("channels", "GET", "/connections/{connection_id}/channels",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": s.owner_id}}, 200),
    ("channels-without-owner", "GET", "/connections/{connection_id}/channels",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 400),
    ("channels-another-owners", "GET", "/connections/{connection_id}/channels",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "owner-2"}}, 404),
    ("refresh", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 200),
    ("refresh-missing", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": "con_" + "c" * 32}}, 404),
    ("refresh-another-owners", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "owner-2"}}, 404),
    ("refresh-malformed-owner", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "a b"}}, 400),
    ("refresh-needs-reauth", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": s.by_status["needs_reauth"]}}, 409),
    ("session", "POST", "/connect-sessions", lambda s: _json({**SESSION, "owner_id": s.owner_id, "mode": "popup"}),
     201),
    ("session-upgrade", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": s.owner_id, "scopes": ["video.publish"],
                      "connection_id": s.by_status["active"]}), 201),
    ("session-upgrade-foreign", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": "owner-2", "connection_id": s.by_status["active"]}), 404),
    ("session-unknown-provider", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": s.owner_id, "provider": "myspace"}), 404),
    ("session-foreign-origin", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": s.owner_id, "return_to": "https://evil.example/x"}), 400),
    ("session-unknown-field", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": s.owner_id, "admin": True}), 400),
    ("webhook-unsigned", "POST", "/webhooks/{provider}",
     lambda s: {"path_parameters": {"provider": "tiktok"}, **_json({"event": "x"})}, 401),
    ("webhook-too-large", "POST", "/webhooks/{provider}",
     lambda s: {"path_parameters": {"provider": "tiktok"}, **_json({"content": "x" * 70_000})}, 400),
    ("webhook-unknown-provider", "POST", "/webhooks/{provider}",
     lambda s: {"path_parameters": {"provider": "myspace"}, **_json({})}, 404),
    ("deauthorize-unsigned", "POST", "/deauthorize/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, **_form("AAAA.eyJ1c2VyX2lkIjoieCJ9")}, 400),
    ("deauthorize-forged", "POST", "/deauthorize/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, **_form(_forged())}, 401),
    ("deauthorize-no-callbacks", "POST", "/deauthorize/{provider}",
     lambda s: {"path_parameters": {"provider": "tiktok"}, **_form(_forged())}, 404),
    ("deletion-unsigned", "POST", "/data-deletion/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, **_form("x")}, 400),
    ("deletion-forged", "POST", "/data-deletion/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, **_form(_forged())}, 401),
    ("deletion-unknown-provider", "POST", "/data-deletion/{provider}",
     lambda s: {"path_parameters": {"provider": "myspace"}, **_form(_forged())}, 404),
    ("deletion-status-not-a-code", "GET", "/data-deletion/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, "query": {"code": "abc123"}}, 400),
    ("deletion-status-none", "GET", "/data-deletion/{provider}",
     lambda s: {"path_parameters": {"provider": "meta_test"}, "query": {"code": "a" * 26}}, 404),
    ("disconnect-missing", "DELETE", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": "con_" + "d" * 32}}, 404),
    ("disconnect-another-owners", "DELETE", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "owner-2"}}, 404),
    ("disconnect-malformed-owner", "DELETE", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": "a b"}}, 400),
    ("disconnect", "DELETE", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}, "query": {"owner_id": s.owner_id}}, 202),
    ("disconnect-again", "DELETE", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 202),
    ("get-disconnecting", "GET", "/connections/{connection_id}",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 200),
    ("get-operation", "GET", "/operations/{operation_id}",
     lambda s: {"path_parameters": {"operation_id": _operation_of_a_disconnect(s.by_status["needs_reauth"])}}, 200),
    ("get-operation-missing", "GET", "/operations/{operation_id}",
     lambda s: {"path_parameters": {"operation_id": "op_unknown"}}, 404),
    ("refresh-disconnected", "POST", "/connections/{connection_id}/refresh",
     lambda s: {"path_parameters": {"connection_id": s.by_status["active"]}}, 409),
    ("claim", "POST", "/connections/claims",
     lambda s: _json({"claim": s.claims["mine"], "owner_id": s.owner_id}), 200),
    ("claim-again", "POST", "/connections/claims",
     lambda s: _json({"claim": s.claims["mine"], "owner_id": s.owner_id}), 200),
    ("claim-by-another-owner", "POST", "/connections/claims",
     lambda s: _json({"claim": s.claims["foreign"], "owner_id": "owner-2"}), 409),
    ("claim-burned", "POST", "/connections/claims",
     lambda s: _json({"claim": s.claims["foreign"], "owner_id": s.owner_id}), 410),
    ("claim-unknown", "POST", "/connections/claims", lambda s: _json({"claim": "A" * 43, "owner_id": "x"}), 404),
    ("claim-malformed", "POST", "/connections/claims", lambda s: _json({"claim": "not a code"}), 400),
    ("erase-account-unknown-provider", "DELETE", "/providers/{provider}/accounts/{account_id}/connections",
     lambda s: {"path_parameters": {"provider": "nope", "account_id": "acct-1"}}, 404),
    ("erase-account-invalid", "DELETE", "/providers/{provider}/accounts/{account_id}/connections",
     lambda s: {"path_parameters": {"provider": "tiktok", "account_id": "a%20b"}}, 400),
    ("erase-account-none", "DELETE", "/providers/{provider}/accounts/{account_id}/connections",
     lambda s: {"path_parameters": {"provider": "tiktok", "account_id": "acct-nobody"}}, 202),
    ("erase-unroutable-owner", "DELETE", "/owners/{owner_id}/connections",
     lambda s: {"path_parameters": {"owner_id": "a%23b"}}, 404),
    ("erase-invalid-owner", "DELETE", "/owners/{owner_id}/connections",
     lambda s: {"path_parameters": {"owner_id": "a%20b"}}, 400),
    ("erase-nobody", "DELETE", "/owners/{owner_id}/connections", lambda s: {"path_parameters": {"owner_id": "x"}},
     202),
    ("erase", "DELETE", "/owners/{owner_id}/connections", lambda s: {"path_parameters": {"owner_id": s.owner_id}},
     202),
    # In the erasure's own second (the clock does not move here): refused, nothing stored.
    ("session-owner-being-erased", "POST", "/connect-sessions",
     lambda s: _json({**SESSION, "owner_id": s.owner_id}), 409),
]


def _form(value: str) -> dict:
    return {"body": {"signed_request": value}, "media_type": "application/x-www-form-urlencoded"}


def _forged() -> str:
    from local.signed_request import signed_request

    return signed_request("not-the-app-secret", {"algorithm": "HMAC-SHA256", "issued_at": 1, "user_id": "x"})


def test_every_documented_answer_conforms(seeded):
    """One world, one call per documented answer; every problem is reported, not only the first."""
    problems, statuses = [], set()
    for name, method, path, build, status in EXPLICIT:
        case = op(method, path).Case(**build(seeded))
        response = send(case)
        statuses.add((method, path, response.status_code))
        if response.status_code != status:
            problems.append(f"{name}: {method} {path} answered {response.status_code}, not {status}: {response.text}")
            continue
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # noqa: BLE001 - collected, reported below
            problems.append(f"{name}: {exc}")
    assert problems == []
    documented = {(o.method.upper(), o.path, int(code)) for o in (r.ok() for r in schema.get_all_operations())
                  for code in o.definition.raw["responses"]}
    # Each has its own test below: 403 (unsigned), signed webhooks (200), 503 (a provider outage).
    statuses |= {(m, p, 403) for m, p in IAM_OPERATIONS} | {("POST", "/webhooks/{provider}", 200),
                                                             ("GET", "/connections/{connection_id}/token", 503)}
    statuses |= {("POST", "/deauthorize/{provider}", 200), ("POST", "/data-deletion/{provider}", 200),
                 ("GET", "/data-deletion/{provider}", 200)}  # test_signed_callbacks_conform
    assert documented - statuses == set(), "documented answers no explicit call produced"


def test_every_page_of_a_listing_conforms(seeded):
    operation = op("GET", "/connections")
    cursor, seen = None, []
    while True:
        case = operation.Case(query={"owner_id": seeded.owner_id, "limit": 1, **({"cursor": cursor} if cursor else {})})
        response = send(case)
        case.validate_response(response, checks=CHECKS)
        page = response.json()
        seen += [c["connection_id"] for c in page["connections"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(seeded.connection_ids)


def test_signed_webhooks_conform(seeded, tiktok, clock):
    """authorization.removed, its repeat, another event, and a signed body that is not a JSON object."""
    alice = tiktok.users["alice"].open_id
    clock.advance(3600)  # the user removes the app in TikTok an hour after connecting
    deliveries = [tiktok.signed_webhook(alice), tiktok.signed_webhook(alice),
                  tiktok.signed_webhook(alice, event="video.publish.complete"), _signed(tiktok, b"[]")]
    answers = []
    for body, headers in deliveries:
        response = through_gateway("POST", f"{BASE}/webhooks/tiktok", body, headers)
        case = op("POST", "/webhooks/{provider}").Case(
            path_parameters={"provider": "tiktok"}, headers={"TikTok-Signature": headers["TikTok-Signature"]},
            **_json(json.loads(body) if body.startswith(b"{") else {}))
        case.validate_response(response, checks=CHECKS)
        answers.append((response.status_code, response.json()))
    assert answers[:3] == [(200, {"received": True, "handled": True, "queued": True}),
                           (200, {"received": True, "handled": True, "duplicate": True}),
                           (200, {"received": True, "handled": False})]
    assert answers[3][0] == 400 and answers[3][1]["error"]["field"] == "body"


def test_signed_callbacks_conform(seeded, meta, clock):
    """A deauthorization, its repeat, a data-deletion request and its status, as JSON and as a page."""
    from local.signed_request import signed_request
    from tests.integration.conftest import META_SECRET

    clock.advance(3600)
    payload = {"algorithm": "HMAC-SHA256", "issued_at": int(clock.now()), "user_id": meta.users["alice"].open_id}
    answers = []
    for path in ("/deauthorize/{provider}", "/deauthorize/{provider}", "/data-deletion/{provider}"):
        case = op("POST", path).Case(path_parameters={"provider": "meta_test"},
                                     **_form(signed_request(META_SECRET, payload)))
        response = send(case)
        case.validate_response(response, checks=CHECKS)
        answers.append((response.status_code, response.json()))
    assert answers[0] == (200, {"received": True, "handled": True, "queued": True})
    assert answers[1] == (200, {"received": True, "handled": True, "duplicate": True})
    assert answers[2][0] == 200
    code = answers[2][1]["confirmation_code"]
    for accept in ("application/json", "text/html"):
        case = op("GET", "/data-deletion/{provider}").Case(
            path_parameters={"provider": "meta_test"}, query={"code": code}, headers={"Accept": accept})
        response = send(case)
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=CHECKS)


def _signed(tiktok, body: bytes) -> tuple[bytes, dict[str, str]]:
    t = str(int(tiktok.clock()))
    signature = hmac.new(tiktok.client_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "TikTok-Signature": f"t={t},s={signature}"}


def test_a_token_the_provider_cannot_refresh_gets_the_documented_503(seeded, tiktok, clock):
    clock.advance(7200 + 60)  # the access token has expired
    tiktok.set_outage("5xx")
    case = op("GET", "/connections/{connection_id}/token").Case(
        path_parameters={"connection_id": seeded.by_status["active"]})
    response = send(case)
    assert response.status_code == 503, response.text
    case.validate_response(response, checks=[c for c in CHECKS if c.__name__ != "not_a_server_error"])
    assert response.json()["error"]["retryable"] is True


def test_an_unsigned_call_gets_the_documented_403_and_the_same_call_signed_does_not(seeded):
    for method, path in IAM_OPERATIONS:
        parameters = {"connection_id": seeded.by_status["active"], "owner_id": seeded.owner_id,
                      "operation_id": "op_unknown", "provider": "tiktok", "account_id": "acct-nobody"}
        case = op(method, path).Case(
            path_parameters={k: v for k, v in parameters.items() if f"{{{k}}}" in path} or None,
            query={"owner_id": seeded.owner_id} if path == "/connections" else None,
            **(_json({**SESSION, "owner_id": seeded.owner_id}) if path == "/connect-sessions"
               else _json({"claim": "A" * 43, "owner_id": "x"}) if path == "/connections/claims" else {}),
        )
        response = send(case, sign=False)
        assert response.status_code == 403, (method, path)
        case.validate_response(response, checks=CHECKS)
        assert send(case).status_code != 403, (method, path)
