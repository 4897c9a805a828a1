"""What each public function's role may write in the Connections table, read from template.yaml as data.

The public functions (authorize, callback, webhook) answer the internet. A flaw in one must not let it roll a
connection's tokens back consistently (tokens, token version and revision together: a stale refresh token that
TikTok already rotated, the user blamed) or move a connection to another owner. IAM is what stops it:
- the authorize role writes nothing there;
- the callback role, with connect confirmation (`ConnectConfirmation=required`, the default), writes only held
  (`pending#`) and orphaned (`orphan#`) grants; with `off` it stores connections itself (what `off` gives up);
- the webhook role writes nothing there: it queues each verified removal, and the refresh worker applies it (IAM
  can fence the attributes a role writes, never their values: a webhook allowed to write `status` could set a
  `disconnecting` connection back to `active`).

Three views: the matrix of what each role can and cannot write; every DynamoDB request a whole connection's life
sends, judged against the role of the function that sent it (so a restriction never breaks the code in AWS);
and the rollback itself, written through what each role is allowed, never served.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.adapters import aws

from local import apigw
from tests.integration.test_backend_api import call, current_grant, item, webhook
from tests.integration.test_connect_confirmation import claim, confirming, finish_connect  # noqa: F401 - fixture
from tests.security.iam_policy import Request, allows, requests_of, role_statements

pytestmark = pytest.mark.integration

PUBLIC = ("AuthorizeFunction", "CallbackFunction", "WebhookFunction")
REQUIRED, OFF = {"ConfirmationRequired": True}, {"ConfirmationRequired": False}
CONNECTION = "con_v5kxitzfzikpm6z75y424h33jvfkl3xb"


def update(key: str, set_: dict[str, Any] | None = None, remove: tuple[str, ...] = (), *,
           expect_revision: int | None = 3) -> dict[str, Any]:
    """An UpdateItem's parameters as the adapters write them (placeholders for every name)."""
    names, values, sets = {}, {}, []
    for i, (name, value) in enumerate((set_ or {}).items()):
        names[f"#s{i}"], values[f":s{i}"] = name, value
        sets.append(f"#s{i} = :s{i}")
    for i, name in enumerate(remove):
        names[f"#r{i}"] = name
    expression = " ".join(part for part in (
        "SET " + ", ".join(sets) if sets else "",
        "REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))) if remove else "") if part)
    params = {"TableName": os.environ["CONNECTIONS_TABLE"], "Key": {"connection_id": {"S": key}},
              "UpdateExpression": expression, "ExpressionAttributeNames": names}
    if expect_revision is not None:
        names["#e"] = "revision"
        values[":e"] = {"N": str(expect_revision)}
        params["ConditionExpression"] = "#e = :e"
    if values:
        params["ExpressionAttributeValues"] = values
    return params


def may(function: str, conditions: dict[str, bool], operation: str, params: dict[str, Any]) -> bool:
    statements = role_statements(function, conditions)
    return all(allows(statements, request) for request in requests_of(operation, params))


ROLLBACK = {"tokens": {"B": b"old ciphertext"}, "token_version": {"N": "1"}, "revision": {"N": "2"}}
ATTEMPTS = {
    "roll tokens, version and revision back": ("UpdateItem", lambda: update(CONNECTION, ROLLBACK)),
    "write the tokens alone": ("UpdateItem", lambda: update(CONNECTION, {"tokens": ROLLBACK["tokens"]})),
    "erase the tokens": ("UpdateItem", lambda: update(CONNECTION, remove=("tokens",))),
    "move the connection to another owner": ("UpdateItem", lambda: update(CONNECTION, {"owner_id": {"S": "eve"}})),
    "move it to another account": ("UpdateItem", lambda: update(CONNECTION, {"account_id": {"S": "eve"}})),
    "put a whole connection": ("PutItem", lambda: {"TableName": os.environ["CONNECTIONS_TABLE"], "Item": {
        "connection_id": {"S": CONNECTION}, "owner_id": {"S": "eve"}, **ROLLBACK}}),
    "delete the connection": ("DeleteItem", lambda: {"TableName": os.environ["CONNECTIONS_TABLE"],
                                                     "Key": {"connection_id": {"S": CONNECTION}}}),
    "rewrite a guard item": ("UpdateItem", lambda: update("guard#" + "a" * 64, {"connection": {"S": CONNECTION}},
                                                          expect_revision=None)),
    "mark it disconnected": ("UpdateItem", lambda: update(CONNECTION, {
        "status": {"S": "disconnected"}, "status_reason": {"S": "user_revoked"}, "updated_at": {"N": "1"},
        "revision": {"N": "4"}, "next_refresh_at": {"N": "1"}, "due_shard": {"N": "0"},
        "ob_e1": {"S": "{}"}, "outbox_seq": {"N": "1"}, "outbox_shard": {"N": "0"}},
        remove=("lease_owner", "lease_expires_at", "revoke_attempts"))),
    "hold a pending grant": ("UpdateItem", lambda: update("pending#" + "b" * 48, {
        "tokens": ROLLBACK["tokens"], "owner_id": {"S": "owner-1"}}, expect_revision=None)),
    "end a pending grant by a removal": ("UpdateItem", lambda: update("pending#" + "b" * 48, {
        "removed_at": {"N": "1"}, "next_refresh_at": {"N": "1"}}, expect_revision=None)),
    "settle a pending grant": ("UpdateItem", lambda: update("pending#" + "b" * 48, {
        "state": {"S": "claimed"}, "claimed_connection": {"S": CONNECTION}}, expect_revision=None)),
}
# What each public role may do of ATTEMPTS; everything else it is refused.
MAY = {
    ("AuthorizeFunction", "required"): set(),
    ("CallbackFunction", "required"): {"hold a pending grant", "end a pending grant by a removal",
                                       "settle a pending grant"},
    # `off` keeps the callback storing connections (the README's upgrade notes say what that gives up).
    ("CallbackFunction", "off"): {"roll tokens, version and revision back", "write the tokens alone",
                                  "erase the tokens", "move the connection to another owner",
                                  "move it to another account", "rewrite a guard item", "mark it disconnected",
                                  "hold a pending grant", "end a pending grant by a removal",
                                  "settle a pending grant"},
    # Removals are queued for the worker: nothing at all, not even a status.
    ("WebhookFunction", "required"): set(),
}


@pytest.mark.parametrize(("function", "mode"), list(MAY))
def test_what_each_public_role_can_and_cannot_write(stack, function, mode):
    conditions = REQUIRED if mode == "required" else OFF
    allowed = {what for what, (operation, params) in ATTEMPTS.items()
               if may(function, conditions, operation, params())}
    assert allowed == MAY[(function, mode)]


def test_the_webhook_role_does_not_depend_on_connect_confirmation(stack):
    for what, (operation, params) in ATTEMPTS.items():
        assert may("WebhookFunction", REQUIRED, operation, params()) == may("WebhookFunction", OFF, operation,
                                                                             params()), what


# -- the evaluator itself: it refuses what IAM refuses ----------------------------------------------------------
def test_the_evaluator_judges_conditions_as_iam_does():
    fenced = [{"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": {"Fn::GetAtt": ["T", "Arn"]},
               "Condition": {"ForAllValues:StringLike": {"dynamodb:Attributes": ["id", "ob_*"]}}}]
    assert allows(fenced, Request("dynamodb:UpdateItem", "T", {"dynamodb:Attributes": ["id", "ob_1"]}))
    assert not allows(fenced, Request("dynamodb:UpdateItem", "T", {"dynamodb:Attributes": ["id", "tokens"]}))
    assert not allows(fenced, Request("dynamodb:PutItem", "T", {"dynamodb:Attributes": ["id"]}))
    assert not allows(fenced, Request("dynamodb:UpdateItem", "T/index/X", {"dynamodb:Attributes": ["id"]}))
    # ForAllValues over an absent key holds (IAM's pitfall: why reads need dynamodb:Select as well)
    assert allows(fenced, Request("dynamodb:UpdateItem", "T", {}))
    with pytest.raises(ValueError):
        allows([{**fenced[0], "Condition": {"NumericLessThan": {"x": "1"}}}], Request("dynamodb:UpdateItem", "T"))


def test_the_evaluator_counts_the_legacy_parameters_a_flaw_could_choose(stack):
    """`AttributeUpdates` names attributes as much as an UpdateExpression does: a role fenced to the status may
    not write tokens or owner through it either."""
    fenced = [{"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": {"Fn::GetAtt": ["ConnectionsTable",
                                                                                             "Arn"]},
               "Condition": {"ForAllValues:StringLike": {"dynamodb:Attributes": ["connection_id", "status"]}}}]
    legacy = {"TableName": os.environ["CONNECTIONS_TABLE"], "Key": {"connection_id": {"S": CONNECTION}},
              "AttributeUpdates": {"tokens": {"Value": {"B": b"old"}, "Action": "PUT"},
                                   "owner_id": {"Value": {"S": "eve"}, "Action": "PUT"}}}
    assert not all(allows(fenced, request) for request in requests_of("UpdateItem", legacy))
    status = {**legacy, "AttributeUpdates": {"status": {"Value": {"S": "disconnected"}, "Action": "PUT"}}}
    assert all(allows(fenced, request) for request in requests_of("UpdateItem", status))


# -- every request a connection's life sends is allowed by its function's role -----------------------------------
class Recorder:
    """DynamoDB calls, each with the function that made it (handlers through the template's routes; the scheduled
    functions named by the test)."""

    def __init__(self) -> None:
        self.function: str | None = None
        self.calls: list[tuple[str | None, str, dict[str, Any]]] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((self.function, model.name, json.loads(json.dumps(params, default=str))))

    @contextmanager
    def acting_as(self, function: str) -> Iterator[None]:
        before, self.function = self.function, function
        try:
            yield
        finally:
            self.function = before


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recording = Recorder()
    aws.client("dynamodb").meta.events.register("before-parameter-build.dynamodb", recording)
    load = apigw.Route.load_handler

    def attributed(route: apigw.Route) -> Any:
        handler = load(route)

        def run(event: dict[str, Any], context: Any) -> Any:
            with recording.acting_as(route.function):
                return handler(event, context)
        return run

    monkeypatch.setattr(apigw.Route, "load_handler", attributed)
    yield recording
    aws.client("dynamodb").meta.events.unregister("before-parameter-build.dynamodb", recording)


def scheduled_jobs(recorder: Recorder) -> None:
    """What SQS has for the worker (the removals the webhook queued), one sweep and one worker pass, each as its
    function."""
    from local.memory import ListQueue
    from local.stack import deliver_refresh_queue, sweep_into

    deliver_refresh_queue()  # the worker's handler: attributed to it by the recorder
    queue = ListQueue()
    with recorder.acting_as("SweeperFunction"):
        sweep_into(queue)
    with recorder.acting_as("RefreshWorkerFunction"):
        root.container().refresh_worker.process(queue.drain())


def refused(recorder: Recorder, conditions: dict[str, bool]) -> list[str]:
    problems = []
    for function, operation, params in recorder.calls:
        if function is None:
            problems.append(f"{operation} outside any function")
            continue
        statements = role_statements(function, conditions)
        for request in requests_of(operation, params):
            if not allows(statements, request):
                problems.append(f"{function}: {request}")
    return problems


def a_whole_life(recorder, tiktok, browser, clock, *, confirming_: bool) -> str:
    """Connect (and claim), read the token, refresh, a consent left waiting for its claim, removal webhook (which
    ends the connection and the waiting grant), the worker's clean-up, reconnect, disconnect."""
    def connect() -> str:
        back = finish_connect(browser, tiktok)
        if not confirming_:
            return back["connection_id"][0]
        status, body = claim(back["claim"][0], "owner-1")
        assert status == 200, body
        return body["connection"]["connection_id"]

    connection_id = connect()
    assert call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")[0] == 200
    clock.advance(3 * 3600)
    with recorder.acting_as("RefreshWorkerFunction"):
        assert root.container().refresher.refresh(connection_id, force=True).result == "refreshed"
    waiting = finish_connect(browser, tiktok) if confirming_ else None  # consented again, never claimed
    clock.advance(120)
    body, headers = tiktok.signed_webhook(tiktok.users["alice"].open_id)
    status, answer = webhook(body, headers)
    assert status == 200 and answer["queued"] is True, answer
    scheduled_jobs(recorder)
    assert item(connection_id)["status"]["S"] == "disconnected"
    assert "tokens" not in item(connection_id)  # the worker erased them, at once or at its next pass
    if waiting is not None:  # ended by the removal: discarded by the worker, never claimable
        assert claim(waiting["claim"][0], "owner-1")[1]["error"]["code"] == "user_revoked"
    clock.advance(60)
    assert connect() == connection_id
    assert call("DELETE", f"/connections/{connection_id}", raw_query="owner_id=owner-1")[0] == 202
    scheduled_jobs(recorder)
    assert item(connection_id)["status"]["S"] == "disconnected"
    return connection_id


@pytest.mark.usefixtures("confirming")
def test_every_request_of_a_connections_life_is_allowed_with_connect_confirmation(tiktok, browser, clock, recorder):
    a_whole_life(recorder, tiktok, browser, clock, confirming_=True)
    functions = {function for function, _, _ in recorder.calls}
    assert {"CallbackFunction", "WebhookFunction", "BackendApiFunction", "RefreshWorkerFunction"} <= functions
    assert refused(recorder, REQUIRED) == []
    webhook_tables = {params["TableName"] for function, _, params in recorder.calls if function == "WebhookFunction"}
    assert webhook_tables == {os.environ["FLOWS_TABLE"]}  # its handled deliveries only, never a connection


def test_every_request_of_a_connections_life_is_allowed_without_connect_confirmation(stack, tiktok, browser,
                                                                                      clock, recorder):
    a_whole_life(recorder, tiktok, browser, clock, confirming_=False)
    assert refused(recorder, OFF) == []


@pytest.mark.usefixtures("confirming")
def test_the_recorded_check_would_catch_a_write_the_role_does_not_allow(recorder):
    """The control: the webhook writing the tokens, as it did before its role was fenced, is reported."""
    with recorder.acting_as("WebhookFunction"):
        aws.client("dynamodb").update_item(**update(CONNECTION, remove=("tokens",), expect_revision=None))
    assert len(refused(recorder, REQUIRED)) == 1


# -- the rollback, written through what each public role is allowed --------------------------------------------
@pytest.mark.usefixtures("confirming")
def test_a_rollback_through_any_public_role_is_refused_or_never_served(tiktok, browser, clock):
    back = finish_connect(browser, tiktok)
    status, body = claim(back["claim"][0], "owner-1")
    connection_id = body["connection"]["connection_id"]
    before = item(connection_id)
    clock.advance(3 * 3600)
    assert root.container().refresher.refresh(connection_id, force=True).result == "refreshed"
    current = current_grant(tiktok).access_token
    rollback = {name: before[name] for name in ("tokens", "token_version", "revision")}
    moves = {"owner_id": {"S": "owner-2"}}
    for function in PUBLIC:
        statements = role_statements(function, REQUIRED)
        # Whole, it is refused...
        whole = update(connection_id, rollback, expect_revision=None)
        assert not all(allows(statements, r) for r in requests_of("UpdateItem", whole)), function
        # ...and what the role may write of it, written, changes nothing served.
        for name, value in {**rollback, **moves}.items():
            params = update(connection_id, {name: value}, expect_revision=None)
            if all(allows(statements, r) for r in requests_of("UpdateItem", params)):
                boto3.client("dynamodb").update_item(**params)
        status, token = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")
        assert status == 200 and token["access_token"] == current, (function, token)
        assert call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-2")[0] == 404


# -- the signed deauthorize and data-deletion callbacks (issue 15, section 4) -----------------------------------
READS = {
    "a connection's tokens": lambda: {"Key": {"connection_id": {"S": CONNECTION}}},
    "a connection, projected to its status": lambda: {"Key": {"connection_id": {"S": CONNECTION}},
                                                      "ProjectionExpression": "#p0",
                                                      "ExpressionAttributeNames": {"#p0": "status"}},
    "a whole operation": lambda: {"Key": {"connection_id": {"S": "op#op_x"}}},
    "an operation's account and owner": lambda: {"Key": {"connection_id": {"S": "op#op_x"}},
                                                 "ProjectionExpression": "#p0, #p1",
                                                 "ExpressionAttributeNames": {"#p0": "erased_account",
                                                                              "#p1": "erased_owner"}},
    "an operation's kind and result": lambda: {"Key": {"connection_id": {"S": "op#op_x"}},
                                               "ProjectionExpression": "#p0, #p1",
                                               "ExpressionAttributeNames": {"#p0": "kind", "#p1": "result"}},
}


def test_the_public_callbacks_read_only_an_operation_s_kind_and_result_and_write_nothing(stack):
    statements = role_statements("WebhookFunction", REQUIRED)
    readable = {what for what, params in READS.items()
                if all(allows(statements, r) for r in requests_of(
                    "GetItem", {"TableName": os.environ["CONNECTIONS_TABLE"], **params()}))}
    assert readable == {"an operation's kind and result"}


def test_every_request_of_the_signed_callbacks_is_allowed_and_none_writes_a_connection(meta, browser, clock,
                                                                                        recorder):
    from local.signed_request import callback_body
    from tests.integration.conftest import META_SECRET
    from tests.integration.test_backend_api import connect
    from tests.integration.test_deauthorization_callbacks import post, status_of

    connection_id = connect(browser, meta, provider="meta_test")["connection_id"][0]
    clock.advance(3600)
    account = meta.users["alice"].open_id
    assert post("/deauthorize/meta_test", callback_body(META_SECRET, account, int(clock.now())))[0] == 200
    clock.advance(60)
    _, answer = post("/data-deletion/meta_test", callback_body(META_SECRET, account, int(clock.now())))
    assert status_of(answer["url"])[1] == {"status": "received"}
    scheduled_jobs(recorder)
    assert status_of(answer["url"])[1] == {"status": "in_progress"}
    clock.advance(120)
    scheduled_jobs(recorder)
    assert status_of(answer["url"])[1] == {"status": "completed"} and item(connection_id) == {}
    assert refused(recorder, OFF) == []
    theirs = [(operation, params) for function, operation, params in recorder.calls if function == "WebhookFunction"]
    in_connections = {(operation, params["Key"]["connection_id"]["S"][:3]) for operation, params in theirs
                      if params["TableName"] == os.environ["CONNECTIONS_TABLE"]}
    assert in_connections == {("GetItem", "op#")}  # the status read, nothing else
