"""Every connection event the code publishes matches its JSON Schema in `docs/events/` (draft 2020-12), as
EventBridge delivers it: each flow below runs on moto with the simulated TikTok, and what an EventBridge rule on
the bus hands to its target (the stack's capture queue) is checked. `tests/conftest.py` also checks every event
any other test makes the code publish; this file makes sure each detail-type and reason is really reached."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from oauth_keeper import root
from oauth_keeper.domain.events import SOURCE, DetailType

from local.stack import install_from_env
from tests.event_schemas import SCHEMAS, problems, schemas
from tests.integration.test_alarm_metrics import (
    _refresh_failing_after_the_access_token_ended,
    _refresh_of_a_revoked_grant,
    _refresh_recovering,
    _work,
)
from tests.integration.test_backend_api import call, connect, run_jobs, webhook
from tests.integration.test_connect_confirmation import claim, connect_and_claim, finish_connect

pytestmark = pytest.mark.integration
DAY = 86_400


def _connect(ctx) -> None:
    connect(ctx.browser, ctx.tiktok)


def _reconnect(ctx) -> None:
    connect(ctx.browser, ctx.tiktok)
    ctx.clock.advance(60)
    connect(ctx.browser, ctx.tiktok)


def _at_risk(ctx) -> None:
    _refresh_failing_after_the_access_token_ended(ctx.tiktok, ctx.browser, ctx.clock)


def _recovered(ctx) -> None:
    _refresh_recovering(ctx.tiktok, ctx.browser, ctx.clock)


def _revoked_grant(ctx) -> None:
    _refresh_of_a_revoked_grant(ctx.tiktok, ctx.browser, ctx.clock)


def _refresh_token_ending(ctx) -> None:
    """TikTok does not extend a refresh token by rotating it: 13 days before its end, a refresh warns."""
    connection_id = connect(ctx.browser, ctx.tiktok)["connection_id"][0]
    ends = root.container().connections.get(connection_id).refresh_expires_at
    ctx.clock.advance(ends - 13 * DAY - ctx.clock.now())
    _work(connection_id)


def _refresh_token_ended(ctx) -> None:
    connection_id = connect(ctx.browser, ctx.tiktok)["connection_id"][0]
    ctx.clock.advance(root.container().connections.get(connection_id).refresh_expires_at + 1 - ctx.clock.now())
    _work(connection_id, force=True)


def _disconnect(ctx) -> None:
    connection_id = connect(ctx.browser, ctx.tiktok)["connection_id"][0]
    assert call("DELETE", f"/connections/{connection_id}")[0] == 202
    run_jobs()


def _removal_webhook(ctx) -> None:
    connect(ctx.browser, ctx.tiktok)
    ctx.clock.advance(3600)
    assert webhook(*ctx.tiktok.signed_webhook(ctx.tiktok.users["alice"].open_id, reason=1))[0] == 200


def _owner_erasure(ctx) -> None:
    connect(ctx.browser, ctx.tiktok)
    assert call("DELETE", "/owners/owner-1/connections")[0] == 202
    run_jobs()


def _account_erasure(ctx) -> None:
    connect(ctx.browser, ctx.tiktok)
    open_id = quote(ctx.tiktok.users["alice"].open_id, safe="")
    assert call("DELETE", f"/providers/tiktok/accounts/{open_id}/connections")[0] == 202
    run_jobs()


def _claimed(ctx) -> None:
    connect_and_claim(ctx.browser, ctx.tiktok)


def _claimed_by_another_owner(ctx) -> None:
    back = finish_connect(ctx.browser, ctx.tiktok, owner_id="owner-1", user="bob")
    assert claim(back["claim"][0], "owner-2")[0] == 409


def _never_claimed(ctx) -> None:
    finish_connect(ctx.browser, ctx.tiktok, user="bob")
    ctx.clock.advance(601)
    run_jobs()


def _reconnect_never_claimed(ctx) -> None:
    """A scope upgrade of an existing connection the owner never claims: the event names that connection."""
    connection_id = connect_and_claim(ctx.browser, ctx.tiktok)
    finish_connect(ctx.browser, ctx.tiktok, connection_id=connection_id)
    ctx.clock.advance(601)
    run_jobs()


def _owner_erased_before_the_claim(ctx) -> None:
    finish_connect(ctx.browser, ctx.tiktok, user="bob")
    assert call("DELETE", "/owners/owner-1/connections")[0] == 202
    run_jobs()


def _account_erased_before_the_claim(ctx) -> None:
    finish_connect(ctx.browser, ctx.tiktok, user="bob")
    open_id = quote(ctx.tiktok.users["bob"].open_id, safe="")
    assert call("DELETE", f"/providers/tiktok/accounts/{open_id}/connections")[0] == 202
    run_jobs()


def _removed_before_the_claim(ctx) -> None:
    """The user removes the app at TikTok after consenting, before anyone claims: the next sweep discards it."""
    finish_connect(ctx.browser, ctx.tiktok, user="bob")
    ctx.clock.advance(120)
    open_id = ctx.tiktok.users["bob"].open_id
    ctx.tiktok.revoke_user(open_id)
    assert webhook(*ctx.tiktok.signed_webhook(open_id))[0] == 200
    run_jobs()


class Flow:
    def __init__(self, run: Callable[..., None], *expected: tuple[str, str], confirmation: bool = False) -> None:
        self.run, self.expected, self.confirmation = run, set(expected), confirmation


# What each flow must publish, at least: (detail-type, reason). With `confirmation`, the stack runs as
# `ConnectConfirmation=required` deploys it (the template's default).
FLOWS = {
    "connect": Flow(_connect, ("Connection Created", "connected")),
    "reconnect": Flow(_reconnect, ("Connection Reconnected", "reconnected")),
    "refresh fails after the access token ended": Flow(_at_risk, ("Connection At Risk", "provider_unavailable")),
    "refresh succeeds again": Flow(_recovered, ("Connection Recovered", "refreshed")),
    "refresh of a revoked grant": Flow(_revoked_grant, ("Connection Needs Reauthorization", "invalid_grant")),
    "refresh token near its end": Flow(_refresh_token_ending, ("Connection Expiring", "refresh_token_expiring")),
    "refresh token ended": Flow(_refresh_token_ended,
                                ("Connection Needs Reauthorization", "refresh_token_expired")),
    "disconnect": Flow(_disconnect, ("Connection Disconnected", "app_disconnected")),
    "removal webhook": Flow(_removal_webhook, ("Connection Disconnected", "user_revoked")),
    "owner erasure": Flow(_owner_erasure, ("Connection Disconnected", "app_disconnected")),
    "account erasure": Flow(_account_erasure, ("Connection Disconnected", "app_disconnected")),
    "claim": Flow(_claimed, ("Connection Created", "connected"), confirmation=True),
    "claim by another owner": Flow(_claimed_by_another_owner, ("Connection Confirmation Failed", "owner_mismatch"),
                                   confirmation=True),
    "never claimed": Flow(_never_claimed, ("Connection Confirmation Failed", "claim_expired"), confirmation=True),
    "upgrade never claimed": Flow(_reconnect_never_claimed, ("Connection Confirmation Failed", "claim_expired"),
                                  confirmation=True),
    "owner erased before the claim": Flow(_owner_erased_before_the_claim,
                                          ("Connection Confirmation Failed", "owner_erased"), confirmation=True),
    "account erased before the claim": Flow(_account_erased_before_the_claim,
                                            ("Connection Confirmation Failed", "account_erased"), confirmation=True),
    "removed at the provider before the claim": Flow(_removed_before_the_claim,
                                                     ("Connection Confirmation Failed", "user_revoked"),
                                                     confirmation=True),
}


class Context:
    def __init__(self, tiktok, browser, clock) -> None:
        self.tiktok, self.browser, self.clock = tiktok, browser, clock


def test_every_detail_type_the_code_publishes_has_a_schema_and_every_schema_a_detail_type():
    assert set(schemas()) == {str(t) for t in DetailType}
    files = {path.name for path in SCHEMAS.glob("*.schema.json")}
    assert files == {f"{t.lower().replace(' ', '-')}.schema.json" for t in DetailType}
    assert set(SCHEMAS.glob("*.json")) == set(SCHEMAS.glob("*.schema.json"))  # no stray file a reader might trust


@pytest.mark.parametrize("detail_type", sorted(str(t) for t in DetailType))
def test_each_schema_is_valid_draft_2020_12_for_our_source_and_its_own_detail_type(detail_type):
    schema = schemas()[detail_type]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == detail_type
    assert schema["properties"]["source"] == {"const": SOURCE}
    detail = schema["properties"]["detail"]
    # Open to fields added within schema_version "1" (consumers accept them); the tests close it
    # (tests/event_schemas.py), so a field the code adds without documenting it still fails.
    assert "additionalProperties" not in detail
    assert detail.get("unevaluatedProperties") is None
    assert detail["properties"]["schema_version"]["const"] == "1"
    assert not {"access_token", "refresh_token", "tokens"} & set(detail["properties"])


def test_every_detail_type_and_reason_is_reached_by_a_flow():
    reached = {detail_type for flow in FLOWS.values() for detail_type, _ in flow.expected}
    assert reached == {str(t) for t in DetailType}
    for detail_type, schema in schemas().items():
        reason = schema["properties"]["detail"]["properties"]["reason"]
        documented = set(reason.get("enum", [reason.get("const")]))
        flowed = {r for flow in FLOWS.values() for t, r in flow.expected if t == detail_type}
        assert flowed, detail_type
        assert flowed <= documented, f"{detail_type}: a flow expects {flowed - documented}, undocumented"


@pytest.mark.parametrize("name", list(FLOWS))
def test_what_eventbridge_delivers_from_each_flow_matches_the_schemas(name, stack, tiktok, browser, clock,
                                                                      monkeypatch):
    flow = FLOWS[name]
    if flow.confirmation:
        monkeypatch.setenv("CONNECT_CONFIRMATION", "required")
        root.reset()
        install_from_env(clock=clock)
    stack.received_events()
    flow.run(Context(tiktok, browser, clock))
    delivered = stack.received_events()
    for event in delivered:
        # moto leaves `account` out of the envelope; EventBridge always sets it (the bus's account).
        event.setdefault("account", "123456789012")
    found = [line for event in delivered for line in problems(event)]
    assert not found, "\n".join(found)
    seen = {(e["detail-type"], e["detail"]["reason"]) for e in delivered}
    assert flow.expected <= seen, f"{name}: expected {flow.expected}, delivered {sorted(seen)}"


# -- the check itself -------------------------------------------------------------------------------------------
def _created() -> dict:
    return {"version": "0", "id": "e1", "detail-type": "Connection Created", "source": "oauth-keeper",
            "account": "123456789012", "time": "2027-01-15T08:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"event_id": "6c1e0b7e-3f0c-4f31-9a55-0d1c8f1b2a10", "schema_version": "1",
                       "connection_id": "con_" + "a" * 32, "owner_id": "user-42", "provider": "tiktok",
                       "account_id": "-000ZU00XEhnGoDbIbdAw7IybygNv4lrYA", "status": "active",
                       "reason": "connected", "retryable": False, "provider_log_id": None,
                       "access_expires_at": "2027-01-15T10:00:00Z", "refresh_expires_at": "2027-07-14T08:00:00Z",
                       "occurred_at": "2027-01-15T08:00:00Z", "scopes_granted": ["user.info.basic"],
                       "missing_scopes": [], "previous_status": None}}


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda e: e["detail"].update(access_token="act.secret"), "Additional properties"),
    (lambda e: e["detail"].update(reason="invalid_grant"), "was expected"),
    (lambda e: e["detail"].update(occurred_at="2027-01-15 08:00"), "date-time"),
    (lambda e: e["detail"].update(event_id="not-a-uuid"), "uuid"),
    (lambda e: e["detail"].pop("missing_scopes"), "'missing_scopes' is a required property"),
    (lambda e: e.update(source="someone-else"), "was expected"),
    (lambda e: e.update({"detail-type": "Connection Teleported"}), "no schema"),
])
def test_the_check_refuses_undocumented_fields_wrong_values_bad_times_and_unknown_types(change, complaint):
    event = _created()
    assert problems(event) == []
    change(event)
    found = problems(event)
    assert found and any(complaint in line for line in found), found


def test_the_readme_sample_event_matches_its_schema():
    from local.cfn import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index('{"source": "oauth-keeper", "detail-type": "Connection Needs Reauthorization",')
    sample = json.loads(readme[start:readme.index("```", start)])
    envelope = {"version": "0", "id": "e1", "account": "123456789012", "time": sample["detail"]["occurred_at"],
                "region": "us-east-1", "resources": [], **sample}
    assert problems(envelope) == []
