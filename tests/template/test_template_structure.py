"""template.yaml keeps the contract the Python code is written against: routes, throttling, tables, keys, IAM,
logs, the refresh pipeline (schedule, queues, worker) and its alarms."""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import re
import textwrap
import tomllib
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from oauth_keeper.usecases.refresh import LEASE_SECONDS

from local.cfn import ROOT, http_routes, resources_of_type, table_definition, template

pytestmark = pytest.mark.unit

FUNCTION = "AWS::Serverless::Function"
LOG_GROUP = "AWS::Logs::LogGroup"
QUEUE = "AWS::SQS::Queue"
ALARM = "AWS::CloudWatch::Alarm"
FOURTEEN_DAYS = 14 * 24 * 3600
# API Gateway ends an HTTP API's Lambda integration after 30 s (its maximum, and the default).
HTTP_API_INTEGRATION_LIMIT = 30

# The contract: route -> (function, auth). The API has exactly these routes.
ROUTES = {
    ("POST", "/connect-sessions"): ("ConnectSessionsFunction", "AWS_IAM"),
    ("GET", "/connect/{provider}"): ("AuthorizeFunction", "NONE"),
    ("GET", "/callback/{provider}"): ("CallbackFunction", "NONE"),
    ("GET", "/connections"): ("BackendApiFunction", "AWS_IAM"),
    ("GET", "/connections/{connection_id}"): ("BackendApiFunction", "AWS_IAM"),
    ("GET", "/connections/{connection_id}/token"): ("BackendApiFunction", "AWS_IAM"),
    ("GET", "/connections/{connection_id}/channels"): ("BackendApiFunction", "AWS_IAM"),
    ("POST", "/connections/{connection_id}/refresh"): ("BackendApiFunction", "AWS_IAM"),
    ("DELETE", "/connections/{connection_id}"): ("BackendApiFunction", "AWS_IAM"),
    ("DELETE", "/owners/{owner_id}/connections"): ("BackendApiFunction", "AWS_IAM"),
    ("DELETE", "/providers/{provider}/accounts/{account_id}/connections"): ("BackendApiFunction", "AWS_IAM"),
    ("POST", "/connections/claims"): ("BackendApiFunction", "AWS_IAM"),
    ("GET", "/operations/{operation_id}"): ("BackendApiFunction", "AWS_IAM"),
    ("POST", "/webhooks/{provider}"): ("WebhookFunction", "NONE"),
    ("POST", "/deauthorize/{provider}"): ("WebhookFunction", "NONE"),
    ("POST", "/data-deletion/{provider}"): ("WebhookFunction", "NONE"),
    ("GET", "/data-deletion/{provider}"): ("WebhookFunction", "NONE"),
}
# Routes called without AWS credentials: by the browser, or by the provider (authenticated by
# its signature in code). Every other route must be IAM-signed: a new public route has to be
# added here on purpose.
PUBLIC_ROUTES = {("GET", "/connect/{provider}"), ("GET", "/callback/{provider}"), ("POST", "/webhooks/{provider}"),
                 ("POST", "/deauthorize/{provider}"), ("POST", "/data-deletion/{provider}"),
                 ("GET", "/data-deletion/{provider}")}
# Public routes get their own throttling parameters (route key -> burst, rate parameter); the IAM routes the
# API's default. HTTP APIs cannot have WAF: these are the template's defences (issue 13, section 6).
PUBLIC_ROUTE_THROTTLING = {
    "GET /connect/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
    "GET /callback/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
    "POST /webhooks/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
    "POST /deauthorize/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
    "POST /data-deletion/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
    "GET /data-deletion/{provider}": ("PublicRouteBurstLimit", "PublicRouteRateLimit"),
}
# Throttling parameter -> (default, least, most). The defaults are what the template had as literals; the
# bounds are API Gateway's default account quota per region (10,000 requests per second, burst 5,000).
THROTTLING_PARAMETERS = {
    "DefaultRouteBurstLimit": (50, 1, 5000),
    "DefaultRouteRateLimit": (25, 1, 10000),
    "PublicRouteBurstLimit": (20, 1, 5000),
    "PublicRouteRateLimit": (10, 1, 10000),
}
# Functions that take a connection's refresh lease: the worker, and the API when a token read
# or a forced refresh refreshes on demand.
LEASE_HOLDERS = ("BackendApiFunction", "RefreshWorkerFunction")

ENVIRONMENT = {
    "CONNECTIONS_TABLE",
    "FLOWS_TABLE",
    "TOKEN_KEY_ARN",
    "OWNER_KEY_ARN",
    "STACK_NAME",
    "EVENT_BUS_NAME",
    "SSM_PREFIX",
    "PUBLIC_BASE_URL",
    "ALLOWED_RETURN_ORIGINS",
    "TIKTOK_SCOPES",
    "TIKTOK_PKCE_MODE",
    "DUE_SHARDS",
    "TIKTOK_REFRESH_POLICY",
    "ADAPTIVE_READ_WINDOW",
    "SWEEP_INTERVAL_MINUTES",
    "EXPIRY_WARNING_DAYS",
    "REFRESH_CONCURRENCY",
    "REFRESH_QUEUE_URL",
    "REMOVAL_QUEUE_URL",
    "REMOVAL_QUEUE_ARN",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}

_SSM = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SsmPrefix}/*/"
_ANY_KEY_HERE = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"
# function -> exactly the (action, resource) pairs it may use.
PERMISSIONS = {
    "ConnectSessionsFunction": {
        ("dynamodb:putitem", "FlowsTable.Arn"),
        ("dynamodb:getitem", "FlowsTable.Arn"),  # erasure tombstones only (erased#*; see the test below)
        ("dynamodb:getitem", "ConnectionsTable.Arn"),  # a session may name a connection to upgrade
        ("kms:generatemac", "OwnerKey.Arn"),  # the owner key stored on the session
    },
    "AuthorizeFunction": {
        ("dynamodb:deleteitem", "FlowsTable.Arn"),
        ("dynamodb:putitem", "FlowsTable.Arn"),
        ("dynamodb:getitem", "FlowsTable.Arn"),
        ("ssm:getparameter", _SSM + "client_key"),
        ("ssm:getparameter", _SSM + "client_id"),
        ("kms:generatemac", "OwnerKey.Arn"),  # checking a session older than the owner keys
    },
    "CallbackFunction": {
        ("dynamodb:deleteitem", "FlowsTable.Arn"),
        ("dynamodb:getitem", "FlowsTable.Arn"),
        ("dynamodb:getitem", "ConnectionsTable.Arn"),
        ("dynamodb:updateitem", "ConnectionsTable.Arn"),
        ("dynamodb:conditioncheckitem", "ConnectionsTable.Arn"),  # a new connection with its guard, one transaction
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/ByAccount"),
        ("ssm:getparameter", _SSM + "client_key"),
        ("ssm:getparameter", _SSM + "client_id"),
        ("ssm:getparameter", _SSM + "client_secret"),
        ("kms:decrypt", _ANY_KEY_HERE),
        ("events:putevents", "ConnectionEventBus.Arn"),
        ("kms:generatemac", "OwnerKey.Arn"),  # checking a flow older than the owner keys
    },
    "SweeperFunction": {
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/Due"),
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/Cadence"),
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/Outbox"),
        ("dynamodb:getitem", "ConnectionsTable.Arn"),  # the breakers; of a connection, only its provider
        ("dynamodb:updateitem", "ConnectionsTable.Arn"),  # the shard span record alone
        ("sqs:sendmessage", "RefreshQueue.Arn"),
    },
    "RefreshWorkerFunction": {
        ("dynamodb:getitem", "ConnectionsTable.Arn"),
        ("dynamodb:updateitem", "ConnectionsTable.Arn"),
        ("dynamodb:deleteitem", "ConnectionsTable.Arn"),  # finishing an owner's erasure
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/ByOwner"),  # marking what the erasure call left
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/ByAccount"),  # ...of an owner or a provider account
        ("dynamodb:query", "${FlowsTable.Arn}/index/ByOwnerKey"),  # the erased owner's sessions and flows
        ("dynamodb:deleteitem", "FlowsTable.Arn"),  # ...deleted (session#* and state#* only)
        ("kms:generatemac", "OwnerKey.Arn"),
        ("ssm:getparameter", _SSM + "client_key"),
        ("ssm:getparameter", _SSM + "client_id"),
        ("ssm:getparameter", _SSM + "client_secret"),
        ("kms:decrypt", _ANY_KEY_HERE),
        ("events:putevents", "ConnectionEventBus.Arn"),
    },
    "BackendApiFunction": {
        ("dynamodb:getitem", "ConnectionsTable.Arn"),
        ("dynamodb:updateitem", "ConnectionsTable.Arn"),
        ("dynamodb:deleteitem", "ConnectionsTable.Arn"),  # DELETE /owners/{owner_id}/connections
        ("dynamodb:conditioncheckitem", "ConnectionsTable.Arn"),  # a claim's new connection with its guard
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/ByOwner"),
        ("dynamodb:query", "${ConnectionsTable.Arn}/index/ByAccount"),  # erasing a provider account
        ("dynamodb:putitem", "FlowsTable.Arn"),  # erasure tombstones only (erased#*)
        ("dynamodb:getitem", "FlowsTable.Arn"),  # ...read by a claim
        ("dynamodb:query", "${FlowsTable.Arn}/index/ByOwnerKey"),  # the erased owner's sessions and flows
        ("dynamodb:deleteitem", "FlowsTable.Arn"),  # ...deleted (session#* and state#* only)
        ("kms:generatemac", "OwnerKey.Arn"),
        ("ssm:getparameter", _SSM + "client_key"),
        ("ssm:getparameter", _SSM + "client_id"),
        ("ssm:getparameter", _SSM + "client_secret"),
        ("kms:decrypt", _ANY_KEY_HERE),
        ("events:putevents", "ConnectionEventBus.Arn"),
        ("sqs:sendmessage", "RefreshQueue.Arn"),  # marked connections go to the worker at once
    },
    # Nothing in the Connections table: a verified removal is queued, and the refresh worker applies it.
    "WebhookFunction": {
        ("dynamodb:getitem", "FlowsTable.Arn"),  # handled deliveries only (their keys; see the test below)
        ("dynamodb:getitem", "ConnectionsTable.Arn"),  # a data deletion's kind and result only (test below)
        ("dynamodb:putitem", "FlowsTable.Arn"),
        ("sqs:sendmessage", "RemovalQueue.Arn"),  # the only role that may: the worker obeys removals from there alone
        ("ssm:getparameter", _SSM + "client_secret"),  # the HMAC key of the webhook signature
        ("kms:decrypt", _ANY_KEY_HERE),
    },
}
# The roles that seal or open tokens. TokenKey's own policy grants them kms:GenerateDataKey and kms:Decrypt (no IAM
# statement: see test_only_the_token_roles_may_use_the_token_key).
TOKEN_ROLES = ("CallbackFunction", "RefreshWorkerFunction", "BackendApiFunction")
# Functions that read the provider's client secret (SecureString) through SSM.
READS_CLIENT_SECRET = ("CallbackFunction", "RefreshWorkerFunction", "BackendApiFunction", "WebhookFunction")



class Watch(NamedTuple):
    """What an alarm reads and when it fires: every metric it reads has `namespace`, one of `metrics`,
    `dimensions`, `stat` and `period` (seconds, or the template expression); it fires when `periods` periods
    in a row compare `comparison` to `threshold`; `missing` is its TreatMissingData."""

    namespace: str
    metrics: frozenset[str]
    dimensions: list[dict[str, Any]]
    stat: str
    period: Any
    periods: int
    comparison: str
    threshold: float
    missing: str = "notBreaching"


# Custom metrics carry Powertools' service dimension (observability.py); AWS metrics the resource's name or id.
_SERVICE = [{"Name": "service", "Value": "oauth-keeper"}]
# CloudFormation cannot multiply: the interval in seconds comes from a mapping (checked for every value below).
SWEEP_INTERVAL_SECONDS = {"Fn::FindInMap": ["SweepInterval", {"Ref": "SweepIntervalMinutes"}, "Seconds"]}


def _queue_depth(queue: str) -> Watch:
    dimensions = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    return Watch("AWS/SQS", frozenset({"ApproximateNumberOfMessagesVisible"}), dimensions, "Maximum", 300, 1, ">", 0)


def _function_errors(function: str, periods: int = 1) -> Watch:
    dimensions = [{"Name": "FunctionName", "Value": {"Ref": function}}]
    return Watch("AWS/Lambda", frozenset({"Errors"}), dimensions, "Sum", 300, periods, ">", 0)


# Every alarm of the template (exactly these), what it reads and when it fires.
ALARMS = {
    # dead letters: one is enough
    "RefreshDLQAlarm": _queue_depth("RefreshDLQ"),
    "SchedulerDLQAlarm": _queue_depth("SchedulerDLQ"),
    "SweeperDLQAlarm": _queue_depth("SweeperDLQ"),
    # a refresh request waiting 10 minutes: refreshes are planned at least 15 minutes before the token ends
    "RefreshQueueAgeAlarm": Watch(
        "AWS/SQS", frozenset({"ApproximateAgeOfOldestMessage"}),
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RefreshQueue", "QueueName"]}}], "Maximum", 300, 1, ">", 600,
    ),
    # a user's removal waiting 5 minutes: their ended connection is still served meanwhile
    "RemovalQueueAgeAlarm": Watch(
        "AWS/SQS", frozenset({"ApproximateAgeOfOldestMessage"}),
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RemovalQueue", "QueueName"]}}], "Maximum", 300, 1, ">", 300,
    ),
    "RefreshFailureRatioAlarm": Watch(
        "OAuthKeeper", frozenset({"RefreshFailed", "RefreshSucceeded"}), _SERVICE, "Sum", 300, 3, ">", 0.2
    ),
    "CircuitBreakerAlarm": Watch("OAuthKeeper", frozenset({"CircuitBreakerOpen"}), _SERVICE, "Sum", 300, 1, ">", 0),
    # the one alarm on silence: a sweeper that never runs emits nothing at all
    "SweepHeartbeatAlarm": Watch(
        "OAuthKeeper", frozenset({"SweepSucceeded"}), _SERVICE, "Sum", SWEEP_INTERVAL_SECONDS, 3, "<", 1, "breaching"
    ),
    # HTTP APIs name it 5xx (REST APIs: 5XXError) and publish it per ApiId
    "ApiServerErrorsAlarm": Watch(
        "AWS/ApiGateway", frozenset({"5xx"}), [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}], "Sum", 300, 1, ">", 0
    ),
    "ConnectSessionsErrorsAlarm": _function_errors("ConnectSessionsFunction"),
    "AuthorizeErrorsAlarm": _function_errors("AuthorizeFunction"),
    "CallbackErrorsAlarm": _function_errors("CallbackFunction"),
    "BackendApiErrorsAlarm": _function_errors("BackendApiFunction"),
    "WebhookErrorsAlarm": _function_errors("WebhookFunction"),
    "SweeperErrorsAlarm": _function_errors("SweeperFunction"),
    # a batch that failed is retried by SQS: two periods, not one
    "RefreshWorkerErrorsAlarm": _function_errors("RefreshWorkerFunction", periods=2),
    # one blob that fails authentication is an incident: tampering, a rollback, a rewritten owner, a wrong key
    "TokenIntegrityAlarm": Watch("OAuthKeeper", frozenset({"TokenIntegrityFailures"}), _SERVICE, "Sum", 300, 1, ">", 0),
}
_COMPARISONS = {">": "GreaterThanThreshold", "<": "LessThanThreshold"}

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
# GetAtt attributes this template may use, per resource type (others are not checked).
KNOWN_ATTRIBUTES = {
    "AWS::DynamoDB::Table": {"Arn", "StreamArn"},
    "AWS::KMS::Key": {"Arn", "KeyId"},
    "AWS::Events::EventBus": {"Arn", "Name"},
    "AWS::Logs::LogGroup": {"Arn"},
    "AWS::Serverless::HttpApi": {"ApiEndpoint", "ApiId"},
    "AWS::ApiGatewayV2::DomainName": {"RegionalDomainName", "RegionalHostedZoneId", "DomainName"},
    "AWS::Serverless::Function": {"Arn"},
    "AWS::Serverless::LayerVersion": set(),
    "AWS::SQS::Queue": {"Arn", "QueueName", "QueueUrl"},
    "AWS::CloudWatch::Alarm": {"Arn"},
    "AWS::CloudWatch::Dashboard": set(),
    "AWS::Events::Archive": {"Arn"},
}


# ----------------------------------------------------------------- helpers


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _functions() -> dict[str, dict[str, Any]]:
    return resources_of_type(FUNCTION)


def _globals_function() -> dict[str, Any]:
    return template().get("Globals", {}).get("Function", {})


def _timeout(function: str) -> int:
    return _functions()[function]["Properties"].get("Timeout", _globals_function()["Timeout"])


def _events_of_type(function: str, kind: str) -> list[dict[str, Any]]:
    events = (_functions()[function]["Properties"].get("Events") or {}).values()
    return [e["Properties"] for e in events if e["Type"] == kind]


def _only_event(function: str, kind: str) -> dict[str, Any]:
    found = _events_of_type(function, kind)
    assert len(found) == 1, f"{function}: expected one {kind} event, found {len(found)}"
    return found[0]


def _resource_text(value: Any) -> str:
    """A policy Resource as one comparable string: "X.Arn" for GetAtt, the Sub string, or the literal."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::GetAtt":
            return ".".join(_as_list(arg)) if isinstance(arg, list) else arg
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
        if fn == "Ref":
            return f"Ref {arg}"
    return json.dumps(value, sort_keys=True)


def _policy_statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in _as_list(function["Properties"].get("Policies") or []):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"only inline policy statements are allowed, found {policy!r}"
        )
        statements.extend(_as_list(policy["Statement"]))
    return statements


def _all_iam_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, fn in _functions().items():
        for statement in _policy_statements(fn):
            yield name, statement
    for name, res in template()["Resources"].items():
        if res["Type"] in {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            props = res["Properties"]
            docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
            if "PolicyDocument" in props:
                docs.append(props["PolicyDocument"])
            for doc in docs:
                for statement in _as_list(doc["Statement"]):
                    yield name, statement


def _is_ssm_via_service_exception(statement: dict[str, Any]) -> bool:
    """The one documented wildcard: kms:Decrypt on this account's keys, only when SSM asks."""
    actions = {a.lower() for a in _as_list(statement.get("Action", []))}
    via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
    return actions == {"kms:decrypt"} and via == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}


def wildcard_problems(where: str, statement: dict[str, Any]) -> list[str]:
    """Why an Allow statement is broader than least privilege ([] when it is fine)."""
    problems = []
    if statement.get("Effect") != "Allow":
        return problems
    for key in ("NotAction", "NotResource"):
        if key in statement:
            problems.append(f"{where}: {key} grants everything else")
    for action in _as_list(statement.get("Action", [])):
        if not isinstance(action, str) or action == "*" or action.endswith(":*"):
            problems.append(f"{where}: Action {action!r}")
    for resource in _as_list(statement.get("Resource", [])):
        text = _resource_text(resource)
        # ${AWS::Region} and friends contain colons of their own: blank them before splitting.
        parts = _SUB_VARIABLE.sub("x", text).split(":", 5)
        resource_id = parts[5] if len(parts) == 6 else text
        if text == "*" or resource_id == "*":
            problems.append(f"{where}: Resource {text!r}")
        elif re.fullmatch(r"[A-Za-z0-9_-]+/\*", resource_id) and not _is_ssm_via_service_exception(statement):
            problems.append(f"{where}: Resource {text!r} names every {resource_id[:-2]}")
    return problems


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _sam_generated_names(resources: dict[str, Any]) -> set[str]:
    names = set()
    for name, res in resources.items():
        if res["Type"] == FUNCTION and "Role" not in res.get("Properties", {}):
            names.add(f"{name}Role")
        if res["Type"] in {"AWS::Serverless::HttpApi", "AWS::Serverless::Api"}:
            names |= {f"{name}.Stage", f"{name}.DomainName", f"{name}ApiGatewayDefaultStage"}
    return names


def reference_problems(tpl: dict[str, Any]) -> list[str]:
    """Every Ref, GetAtt, ${...} and condition name in the template that points at nothing."""
    parameters = set(tpl.get("Parameters", {}))
    resources = tpl.get("Resources", {})
    conditions = set(tpl.get("Conditions", {}))
    refable = parameters | set(resources) | PSEUDO_PARAMETERS | _sam_generated_names(resources)
    problems: list[str] = []

    generated_roles = {name for name in _sam_generated_names(resources) if name.endswith("FunctionRole")}

    def check_getatt(where: str, logical_id: str, attribute: str) -> None:
        if logical_id in generated_roles:  # the AWS::IAM::Role SAM makes for a function without one
            if attribute not in ("Arn", "RoleId"):
                problems.append(f"{where}: GetAtt {logical_id}.{attribute}: unknown attribute")
            return
        if logical_id not in resources:
            problems.append(f"{where}: GetAtt {logical_id}.{attribute}: no such resource")
            return
        known = KNOWN_ATTRIBUTES.get(resources[logical_id]["Type"])
        if known is not None and attribute not in known:
            problems.append(f"{where}: GetAtt {logical_id}.{attribute}: unknown attribute")

    def walk(node: Any, where: str, local: frozenset[str] = frozenset()) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]", local)
            return
        if not isinstance(node, dict):
            return
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg not in refable:
                    problems.append(f"{where}: Ref {arg}: no such parameter or resource")
                return
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                check_getatt(where, logical_id, attribute)
                return
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                walk(variables, where, local)
                for name in _SUB_VARIABLE.findall(text):
                    if name.startswith("!") or name in variables:
                        continue
                    if "." in name and not name.startswith("AWS::"):
                        check_getatt(where, *name.split(".", 1))
                    elif name not in refable:
                        problems.append(f"{where}: ${{{name}}}: no such parameter or resource")
                return
            if key == "Fn::If":
                if arg[0] not in conditions:
                    problems.append(f"{where}: Fn::If on unknown condition {arg[0]}")
                walk(arg[1:], where, local)
                return
            if key == "Condition" and isinstance(arg, str) and where.startswith("Conditions"):
                if arg not in conditions:
                    problems.append(f"{where}: unknown condition {arg}")
                return
        for key, value in node.items():
            walk(value, f"{where}.{key}", local)

    for section in ("Conditions", "Globals", "Resources", "Outputs", "Rules"):
        walk(tpl.get(section, {}), section)
    for name, res in resources.items():
        if "Condition" in res and res["Condition"] not in conditions:
            problems.append(f"Resources.{name}: unknown condition {res['Condition']}")
        for dep in _as_list(res.get("DependsOn", [])):
            if dep not in resources and dep not in _sam_generated_names(resources):
                problems.append(f"Resources.{name}: DependsOn {dep}: no such resource")
    return problems


# ----------------------------------------------------------------- runtime and layer


def test_every_function_runs_python313_on_arm64():
    assert _globals_function()["Runtime"] == "python3.13"
    assert _globals_function()["Architectures"] == ["arm64"]
    for name, fn in _functions().items():
        props = fn["Properties"]
        assert props.get("Runtime", "python3.13") == "python3.13", name
        assert props.get("Architectures", ["arm64"]) == ["arm64"], name


def test_the_layer_is_built_for_the_functions_python_and_architecture():
    layer = template()["Resources"]["OAuthKeeperLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    props = layer["Properties"]
    assert props["ContentUri"].rstrip("/") == "shared"
    assert props["CompatibleRuntimes"] == ["python3.13"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_the_layer_is_named_after_the_stack_so_two_stages_in_one_account_do_not_share_it():
    # Without LayerName SAM names the layer after its logical id, the same in every stack.
    name = template()["Resources"]["OAuthKeeperLayer"]["Properties"]["LayerName"]
    assert set(name) == {"Fn::Sub"} and name["Fn::Sub"].startswith("${AWS::StackName}-")
    # Layer names: [a-zA-Z0-9-_], at most 140 characters; stack names: at most 128.
    suffix = name["Fn::Sub"].removeprefix("${AWS::StackName}")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", suffix) and 128 + len(suffix) <= 140, suffix


def test_every_function_uses_the_shared_layer():
    assert {"Ref": "OAuthKeeperLayer"} in _globals_function()["Layers"]
    for name, fn in _functions().items():
        layers = fn["Properties"].get("Layers")
        assert layers is None or {"Ref": "OAuthKeeperLayer"} in layers, name


def test_timeout_and_memory_are_set_once_for_all_functions():
    assert 3 <= _globals_function()["Timeout"] <= 30
    assert 128 <= _globals_function()["MemorySize"] <= 1024


def test_http_functions_answer_before_the_http_api_gives_up_and_refresh_functions_get_a_minute():
    # HTTP APIs end an integration after 30 s: a Lambda timeout of 30 s or more would only hide that.
    for route in http_routes():
        assert _timeout(route["function"]) < HTTP_API_INTEGRATION_LIMIT, route["function"]
    assert _timeout("SweeperFunction") == 60
    assert _timeout("RefreshWorkerFunction") == 60


def test_no_route_cuts_its_function_short_with_a_shorter_integration_timeout():
    for name, fn in _functions().items():
        for event_name, event in (fn["Properties"].get("Events") or {}).items():
            if event["Type"] == "HttpApi":
                limit_ms = event["Properties"].get("TimeoutInMillis", HTTP_API_INTEGRATION_LIMIT * 1000)
                assert _timeout(name) * 1000 < limit_ms, f"{name}.{event_name}"


@pytest.mark.parametrize("function", LEASE_HOLDERS)
def test_a_function_taking_a_refresh_lease_outlives_the_lease(function):
    # HTTP timeout < lease < function timeout (docs/architecture.md, "Deadlines"): Lambda must not cut off an invocation
    # that still holds the lease, between the provider's answer and the commit.
    assert _timeout(function) > LEASE_SECONDS, (function, LEASE_SECONDS, _timeout(function))


def test_a_token_read_can_refresh_within_its_lease_and_still_answer_before_the_http_api_gives_up():
    timeout = _timeout("BackendApiFunction")
    assert LEASE_SECONDS < timeout < HTTP_API_INTEGRATION_LIMIT, (LEASE_SECONDS, timeout)
    assert timeout == 25


def test_the_webhook_answers_within_ten_seconds():
    # TikTok waits a few seconds for a webhook answer; verifying and marking a connection is quick.
    assert _timeout("WebhookFunction") == 10


# ----------------------------------------------------------------- environment and parameters


def test_every_function_gets_the_whole_configuration_from_globals():
    variables = _globals_function()["Environment"]["Variables"]
    assert set(variables) >= ENVIRONMENT, f"missing: {sorted(ENVIRONMENT - set(variables))}"
    assert variables["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
    assert variables["FLOWS_TABLE"] == {"Ref": "FlowsTable"}
    assert variables["TOKEN_KEY_ARN"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert variables["STACK_NAME"] == {"Ref": "AWS::StackName"}  # the token data keys' encryption context
    assert variables["EVENT_BUS_NAME"] == {"Ref": "ConnectionEventBus"}
    assert variables["SSM_PREFIX"] == {"Ref": "SsmPrefix"}
    assert variables["ALLOWED_RETURN_ORIGINS"] == {"Fn::Join": [",", {"Ref": "AllowedReturnOrigins"}]}
    assert variables["TIKTOK_SCOPES"] == {"Ref": "TikTokScopes"}
    assert variables["TIKTOK_PKCE_MODE"] == {"Ref": "TikTokPkceMode"}
    assert variables["DUE_SHARDS"] == {"Ref": "DueShards"}
    assert variables["TIKTOK_REFRESH_POLICY"] == {"Ref": "RefreshPolicy"}
    assert variables["ADAPTIVE_READ_WINDOW"] == {"Ref": "AdaptiveReadWindow"}
    assert variables["SWEEP_INTERVAL_MINUTES"] == {"Ref": "SweepIntervalMinutes"}
    assert variables["EXPIRY_WARNING_DAYS"] == {"Ref": "ExpiryWarningDays"}
    assert variables["REFRESH_CONCURRENCY"] == {"Ref": "RefreshConcurrency"}
    assert variables["REFRESH_QUEUE_URL"] == {"Ref": "RefreshQueue"}  # Ref of a queue is its URL
    assert variables["POWERTOOLS_SERVICE_NAME"] == "oauth-keeper"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "OAuthKeeper"
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    for name, fn in _functions().items():
        overridden = set((fn["Properties"].get("Environment") or {}).get("Variables") or {}) & ENVIRONMENT
        assert not overridden, f"{name} overrides {sorted(overridden)}"


def test_the_template_never_allows_http_provider_endpoints():
    """ALLOW_HTTP_ENDPOINTS is local mode (the simulator, the tests): a deployed stack refuses http:// endpoints."""
    assert "ALLOW_HTTP_ENDPOINTS" not in (ROOT / "template.yaml").read_text(encoding="utf-8")


def test_public_base_url_is_the_custom_domain_when_one_is_set():
    value = _globals_function()["Environment"]["Variables"]["PUBLIC_BASE_URL"]
    assert value == {"Fn::If": ["HasDomain", {"Fn::Sub": "https://${DomainName}"}, {"Ref": "PublicBaseUrl"}]}
    conditions = template()["Conditions"]
    assert "DomainName" in json.dumps(conditions["HasDomain"]) or any(
        "DomainName" in json.dumps(conditions[c["Condition"]])
        for c in conditions["HasDomain"].get("Fn::And", [])
        if isinstance(c, dict) and "Condition" in c
    )


def test_parameters_have_the_contract_defaults():
    params = template()["Parameters"]
    assert params["SsmPrefix"]["Default"] == "/oauth-keeper"
    assert params["PublicBaseUrl"]["Default"] == ""
    assert params["DomainName"]["Default"] == ""
    assert params["CertificateArn"]["Default"] == ""
    assert params["AllowedReturnOrigins"]["Type"] == "CommaDelimitedList"
    assert params["TikTokScopes"]["Default"] == "user.info.basic"
    assert params["TikTokPkceMode"]["Default"] == "s256-hex"
    assert sorted(params["TikTokPkceMode"]["AllowedValues"]) == ["s256", "s256-hex"]
    assert int(params["DueShards"]["Default"]) == 16
    assert params["LogLevel"]["Default"] == "INFO"
    assert int(params["LogRetentionDays"]["Default"]) == 30
    assert params["RefreshPolicy"]["Default"] == "eager"
    assert int(params["AdaptiveReadWindow"]["Default"]) == 86_400  # ADAPTIVE_READ_WINDOW, Settings' default
    assert sorted(params["RefreshPolicy"]["AllowedValues"]) == ["adaptive", "eager", "on_demand"]
    assert params["AlarmTopicArn"]["Default"] == ""


@pytest.mark.parametrize(
    ("name", "default", "low", "high"),
    [
        ("SweepIntervalMinutes", 5, 1, 60),
        ("ExpiryWarningDays", 14, 1, None),
        # 2 is the smallest MaximumConcurrency an SQS event source mapping accepts.
        ("WorkerMaxConcurrency", 5, 2, None),
        # Measured defaults (make bench, section h; README "Benchmarks").
        ("RefreshConcurrency", 32, 1, 64),
        ("WorkerBatchSize", 100, 1, 1000),
        # 1 s at least: SQS refuses a batch above 10 without a window.
        ("WorkerBatchingWindowSeconds", 1, 1, 20),
    ],
)
def test_numeric_refresh_parameters_have_their_defaults_and_bounds(name, default, low, high):
    param = template()["Parameters"][name]
    assert param["Type"] == "Number"
    assert int(param["Default"]) == default
    assert int(param["MinValue"]) == low
    if high is not None:
        assert int(param["MaxValue"]) == high
    assert int(param["MinValue"]) <= default <= int(param.get("MaxValue", default))


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:sns:eu-west-1:123456789012:oauth-keeper-alarms", True),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:alarms", True),
        ("oauth-keeper-alarms", False),
        ("arn:aws:sqs:eu-west-1:123456789012:alarms", False),
        ("arn:aws:sns:eu-west-1:123456789012:alarms.fifo", False),
    ],
)
def test_alarm_topic_is_empty_or_a_standard_sns_topic_arn(value, accepted):
    pattern = template()["Parameters"]["AlarmTopicArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("/oauth-keeper", True),
        ("/acme/oauth-keeper", True),
        ("oauth-keeper", False),
        ("/oauth-keeper/", False),
        ("/", False),
        ("", False),
    ],
)
def test_ssm_prefix_must_start_with_a_slash_and_not_end_with_one(value, accepted):
    pattern = template()["Parameters"]["SsmPrefix"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("https://connect.example.com", True),
        ("https://127.0.0.1:8443", True),
        ("http://connect.example.com", False),
        ("https://connect.example.com/", False),
        ("https://connect.example.com/callback", False),
    ],
)
def test_public_base_url_is_empty_or_a_bare_https_origin(value, accepted):
    pattern = template()["Parameters"]["PublicBaseUrl"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


# ----------------------------------------------------------------- routes and handlers


def test_every_contract_route_reaches_its_function_with_the_right_auth():
    found = {(r["method"], r["path"]): (r["function"], r["auth"]) for r in http_routes()}
    for route, expected in ROUTES.items():
        assert found.get(route) == expected, f"{route}: expected {expected}, found {found.get(route)}"


def test_the_api_has_exactly_the_contract_routes():
    found = {(r["method"], r["path"]) for r in http_routes()}
    assert found == set(ROUTES), f"extra {sorted(found - set(ROUTES))}, missing {sorted(set(ROUTES) - found)}"
    assert {route for route, (_, auth) in ROUTES.items() if auth == "NONE"} == PUBLIC_ROUTES


def test_only_the_browser_routes_and_the_provider_webhook_are_public():
    for route in http_routes():
        key = (route["method"], route["path"])
        if key in PUBLIC_ROUTES:
            assert route["auth"] == "NONE", f"{key} must be reachable by a browser or the provider"
        else:
            assert route["auth"] == "AWS_IAM", f"{key} is not IAM-signed; list it in PUBLIC_ROUTES if intended"


def test_each_backend_route_is_its_own_event():
    events = _functions()["BackendApiFunction"]["Properties"]["Events"]
    http_events = [e for e in events.values() if e["Type"] == "HttpApi"]
    assert len(http_events) == len(events) == 10
    for event in http_events:
        assert event["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}


def test_routes_are_unique():
    keys = [(r["method"], r["path"]) for r in http_routes()]
    assert len(keys) == len(set(keys))


def test_every_route_is_on_the_one_http_api_with_iam_enabled_and_no_default_authorizer():
    for name, fn in _functions().items():
        for event_name, event in (fn["Properties"].get("Events") or {}).items():
            if event["Type"] == "HttpApi":
                assert event["Properties"].get("ApiId") == {"Ref": "HttpApi"}, f"{name}.{event_name}"
    auth = template()["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["EnableIamAuthorizer"] is True
    # http_routes() reads a missing Auth as NONE; a default authorizer would make that a lie.
    assert "DefaultAuthorizer" not in auth
    assert "DefaultAuthorizer" not in (template().get("Globals", {}).get("HttpApi", {}).get("Auth") or {})


def test_every_handler_module_exists_defines_handler_and_has_a_unique_name():
    modules = []
    for name, fn in _functions().items():
        module, _, attribute = fn["Properties"]["Handler"].rpartition(".")
        modules.append(module)
        source = ROOT / fn["Properties"]["CodeUri"] / f"{module.replace('.', '/')}.py"
        assert source.is_file(), f"{name}: {source.relative_to(ROOT)} does not exist"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined |= {t.id for t in targets if isinstance(t, ast.Name)}
        assert attribute in defined, f"{name}: {source.relative_to(ROOT)} defines no top-level {attribute!r}"
    assert len(modules) == len(set(modules)), f"handler module names collide: {sorted(modules)}"


def test_every_function_folder_is_on_the_pytest_pythonpath():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pythonpath = {p.rstrip("/") for p in config["tool"]["pytest"]["ini_options"]["pythonpath"]}
    for name, fn in _functions().items():
        assert fn["Properties"]["CodeUri"].rstrip("/") in pythonpath, name


# ----------------------------------------------------------------- HTTP API


def test_http_api_fails_on_warnings_throttles_and_logs_json_without_query_strings():
    api = template()["Resources"]["HttpApi"]["Properties"]
    assert api["FailOnWarnings"] is True
    assert api["DefaultRouteSettings"] == {"ThrottlingBurstLimit": {"Ref": "DefaultRouteBurstLimit"},
                                           "ThrottlingRateLimit": {"Ref": "DefaultRouteRateLimit"}}
    logs = api["AccessLogSettings"]
    destination = logs["DestinationArn"]
    assert destination.get("Fn::GetAtt", [None])[1] == "Arn"
    log_group = template()["Resources"][destination["Fn::GetAtt"][0]]
    assert log_group["Type"] == LOG_GROUP
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(logs["Format"])
    assert {"requestId", "status", "routeKey"} <= set(fields)
    leaky = [v for v in fields.values() if re.search(r"querystring|requestUri|rawQuery", v, re.I)]
    assert not leaky, f"access logs would record OAuth codes/states: {leaky}"


def _route_settings() -> dict[str, dict[str, Any]]:
    return template()["Resources"]["HttpApi"]["Properties"].get("RouteSettings") or {}


def test_every_route_setting_names_an_existing_route():
    # API Gateway refuses a stage whose RouteSettings name a route it does not have.
    keys = {f"{r['method']} {r['path']}" for r in http_routes()}
    assert set(_route_settings()) <= keys, sorted(set(_route_settings()) - keys)


@pytest.mark.parametrize(("route_key", "limits"), sorted(PUBLIC_ROUTE_THROTTLING.items()))
def test_public_routes_are_throttled_by_their_own_parameters(route_key, limits):
    settings = _route_settings().get(route_key)
    assert settings is not None, f"{route_key} has no RouteSettings of its own"
    burst, rate = limits
    assert settings == {"ThrottlingBurstLimit": {"Ref": burst}, "ThrottlingRateLimit": {"Ref": rate}}


@pytest.mark.parametrize(("name", "bounds"), sorted(THROTTLING_PARAMETERS.items()))
def test_route_throttling_is_a_parameter_with_todays_limits_as_its_default(name, bounds):
    default, low, high = bounds
    param = template()["Parameters"][name]
    assert param["Type"] == "Number"
    assert (int(param["Default"]), int(param["MinValue"]), int(param["MaxValue"])) == (default, low, high)


def test_by_default_the_public_routes_are_throttled_tighter_than_the_signed_ones():
    defaults = {name: default for name, (default, _, _) in THROTTLING_PARAMETERS.items()}
    assert defaults["PublicRouteBurstLimit"] <= defaults["DefaultRouteBurstLimit"]
    assert defaults["PublicRouteRateLimit"] <= defaults["DefaultRouteRateLimit"]
    for kind in ("Default", "Public"):
        assert 0 < defaults[f"{kind}RouteRateLimit"] <= defaults[f"{kind}RouteBurstLimit"]


def test_every_public_route_has_its_own_throttling_and_iam_routes_keep_the_default():
    public_keys = {f"{method} {path}" for method, path in PUBLIC_ROUTES}
    assert set(PUBLIC_ROUTE_THROTTLING) == public_keys
    assert set(_route_settings()) == public_keys


def test_custom_domain_is_regional_tls12_and_mapped_to_the_default_stage():
    resources = template()["Resources"]
    domains = resources_of_type("AWS::ApiGatewayV2::DomainName")
    mappings = resources_of_type("AWS::ApiGatewayV2::ApiMapping")
    assert len(domains) == 1 and len(mappings) == 1
    ((domain_id, domain),) = domains.items()
    ((_, mapping),) = mappings.items()
    assert domain["Condition"] == "HasDomain" and mapping["Condition"] == "HasDomain"
    assert domain["Properties"]["DomainName"] == {"Ref": "DomainName"}
    (config,) = domain["Properties"]["DomainNameConfigurations"]
    assert config == {
        "CertificateArn": {"Ref": "CertificateArn"},
        "EndpointType": "REGIONAL",
        "SecurityPolicy": "TLS_1_2",
    }
    assert mapping["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    assert mapping["Properties"]["DomainName"] == {"Ref": domain_id}
    assert mapping["Properties"]["Stage"] in ({"Ref": "HttpApi.Stage"}, "$default")
    assert "Domain" not in resources["HttpApi"]["Properties"]


# ----------------------------------------------------------------- data


def _gsis(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["IndexName"]: g for g in definition.get("GlobalSecondaryIndexes", [])}


def _attribute_types(definition: dict[str, Any]) -> dict[str, str]:
    return {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}


def _keys(key_schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in key_schema]


def test_connections_table_has_the_contract_keys_and_keys_only_indexes():
    table = table_definition("ConnectionsTable", "connections")
    types = _attribute_types(table)
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert _keys(table["KeySchema"]) == [("connection_id", "HASH")]
    assert types == {
        "connection_id": "S",
        "owner_id": "S",
        "created_at": "N",
        "account_key": "S",
        "due_shard": "N",
        "next_refresh_at": "N",
        "outbox_shard": "N",
        "cadence_shard": "S",
        "cadence_phase": "N",
    }
    gsis = _gsis(table)
    assert set(gsis) == {"ByOwner", "ByAccount", "Due", "Cadence", "Outbox"}
    assert _keys(gsis["ByOwner"]["KeySchema"]) == [("owner_id", "HASH"), ("created_at", "RANGE")]
    assert _keys(gsis["ByAccount"]["KeySchema"]) == [("account_key", "HASH")]
    assert _keys(gsis["Due"]["KeySchema"]) == [("due_shard", "HASH"), ("next_refresh_at", "RANGE")]
    assert _keys(gsis["Outbox"]["KeySchema"]) == [("outbox_shard", "HASH")]
    assert _keys(gsis["Cadence"]["KeySchema"]) == [("cadence_shard", "HASH"), ("cadence_phase", "RANGE")]
    for name, gsi in gsis.items():
        assert gsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}, name


@pytest.mark.parametrize(("index", "attribute"), [("Due", "due_shard"), ("Outbox", "outbox_shard"),
                                                  ("Cadence", "cadence_shard")])
def test_the_sweep_indexes_are_sparse_and_keys_only(index, attribute):
    # Sparse: an item enters the index only while it carries the attribute, so nothing else
    # in the table may be keyed by it (that would make every item carry it).
    table = table_definition("ConnectionsTable", "connections")
    gsis = _gsis(table)
    assert gsis[index]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert attribute not in {k["AttributeName"] for k in table["KeySchema"]}
    for name, gsi in gsis.items():
        if name != index:
            assert attribute not in {k["AttributeName"] for k in gsi["KeySchema"]}, name


def test_flows_table_is_keyed_by_flow_key_and_expires_by_purge_at():
    table = table_definition("FlowsTable", "flows")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert _keys(table["KeySchema"]) == [("flow_key", "HASH")]
    assert _attribute_types(table) == {"flow_key": "S", "owner_key": "S"}
    # Sessions and flows by the owner's keyed hash, never the id; keys only.
    assert _gsis(table) == {"ByOwnerKey": {"IndexName": "ByOwnerKey", "KeySchema": [
        {"AttributeName": "owner_key", "KeyType": "HASH"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}}
    ttl = template()["Resources"]["FlowsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "purge_at", "Enabled": True}


@pytest.mark.parametrize("table", ["ConnectionsTable", "FlowsTable"])
def test_tables_are_recoverable_encrypted_with_the_table_key_and_named_by_cloudformation(table):
    res = template()["Resources"][table]
    props = res["Properties"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # Not the token key: what may read a table through DynamoDB is not what may open a token.
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "TableKey"}}
    assert "TableName" not in props
    # Both policies set, so the intent is explicit (Retain for connections, see template).
    assert res["DeletionPolicy"] == res["UpdateReplacePolicy"]


def test_connections_survive_stack_deletion_and_replacement():
    res = template()["Resources"]["ConnectionsTable"]
    assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("key,alias", [("TokenKey", "tokens"), ("TableKey", "tables")])
def test_the_token_and_table_keys_are_retained_rotated_symmetric_and_aliased(key, alias):
    res = template()["Resources"][key]
    assert res["Type"] == "AWS::KMS::Key"
    assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
    assert res["Properties"]["EnableKeyRotation"] is True
    assert res["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
    aliases = [a["Properties"] for a in resources_of_type("AWS::KMS::Alias").values()]
    assert {"AliasName": {"Fn::Sub": f"alias/${{AWS::StackName}}-{alias}"}, "TargetKeyId": {"Ref": key}} in aliases


_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
_VIA_DYNAMODB = {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}
# What reads or makes key material (or lets another do it); the rest (Describe*, Get*, PutKeyPolicy, ...) only
# manages the key.
_CRYPTO = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
           "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:CreateGrant")


def _key_statements(key: str) -> list[dict[str, Any]]:
    return template()["Resources"][key]["Properties"]["KeyPolicy"]["Statement"]


def _uses_key_material(action: str) -> bool:
    """Whether an action pattern (IAM wildcards) matches a cryptographic action."""
    return any(fnmatch.fnmatchcase(c.lower(), action.lower()) for c in _CRYPTO)


def test_only_the_token_roles_may_use_the_token_key():
    """The token key's policy is the whole grant: the account administers it without being delegated its
    cryptographic use, so no IAM policy of another role can reach it; the three token roles (by principal ARN)
    may make data keys, only under the stack's encryption context, and unwrap them; the authorize role may only
    make them (the sealed PKCE verifier). DynamoDB keeps unwrapping
    what was wrapped before the tables moved to TableKey, through DynamoDB only."""
    roles = [{"Fn::GetAtt": [f"{name}Role", "Arn"]} for name in TOKEN_ROLES]
    users: dict[str, set[str]] = {}
    for s in _key_statements("TokenKey"):
        assert s["Effect"] == "Allow"
        actions = [a.lower() for a in _as_list(s["Action"])]
        if s["Principal"] == {"AWS": _ROOT}:
            assert not any(_uses_key_material(a) for a in actions), f"{s['Sid']}: the account may use the key"
            assert "kms:putkeypolicy" in actions  # AWS refuses a policy nobody can change
            continue
        assert s["Principal"] == {"AWS": "*"}, s["Sid"]
        condition = s["Condition"]
        assert condition["StringEquals"]["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}, s["Sid"]
        if "kms:ViaService" in condition["StringEquals"]:
            assert condition["StringEquals"]["kms:ViaService"] == _VIA_DYNAMODB
            assert set(actions) == {"kms:decrypt", "kms:describekey", "kms:creategrant"}, s["Sid"]
            continue
        # The authorize role also makes data keys: it seals the flow's PKCE verifier (it never unwraps one).
        sealers = [*roles, {"Fn::GetAtt": ["AuthorizeFunctionRole", "Arn"]}]
        assert condition["ArnEquals"] == {"aws:PrincipalArn": sealers if actions == ["kms:generatedatakey"]
                                          else roles}, s["Sid"]
        for action in actions:
            users.setdefault(action, set()).add(s["Sid"])
    assert set(users) == {"kms:generatedatakey", "kms:decrypt"}


def test_token_data_keys_are_made_only_under_the_stacks_encryption_context():
    from oauth_keeper.adapters.kms import PURPOSE, encryption_context

    context = {"kms:EncryptionContext:purpose": PURPOSE, "kms:EncryptionContext:stack": {"Ref": "AWS::StackName"}}
    assert set(encryption_context("s")) == {"purpose", "stack"}
    for s in _key_statements("TokenKey"):
        actions = [a.lower() for a in _as_list(s["Action"])]
        if "kms:generatedatakey" in actions:
            assert {k: s["Condition"]["StringEquals"][k] for k in context} == context, s["Sid"]
        if "kms:decrypt" in actions and "ArnEquals" in s.get("Condition", {}):
            # format v1 data keys have no context, so only a present one must match
            assert s["Condition"]["StringEqualsIfExists"] == context, s["Sid"]


def test_no_function_role_is_granted_the_token_key_by_iam():
    """The key policy names the roles; an IAM statement naming the key would make each depend on the other."""
    for name, fn in _functions().items():
        for statement in _policy_statements(fn):
            assert "TokenKey" not in json.dumps(statement.get("Resource")), name


def test_the_table_key_lets_the_account_administer_and_others_use_it_only_through_dynamodb():
    statements = _key_statements("TableKey")
    assert any(s["Principal"] == {"AWS": _ROOT} and s["Action"] == "kms:*" for s in statements)
    for s in statements:
        actions = _as_list(s["Action"])
        if "kms:*" in actions:
            assert s["Principal"] == {"AWS": _ROOT}, f"{s.get('Sid')}: kms:* for someone else than the account"
        if s["Principal"] in ("*", {"AWS": "*"}):
            condition = s.get("Condition", {}).get("StringEquals", {})
            assert condition.get("kms:CallerAccount") == {"Ref": "AWS::AccountId"}, s.get("Sid")
            assert condition.get("kms:ViaService") == _VIA_DYNAMODB
            assert not any(a in {"kms:*", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"} for a in actions)


def test_event_bus_is_named_after_the_stack():
    bus = template()["Resources"]["ConnectionEventBus"]
    assert bus["Type"] == "AWS::Events::EventBus"
    assert bus["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-connections"}


# ----------------------------------------------------------------- refresh pipeline


def _queue(name: str) -> dict[str, Any]:
    res = template()["Resources"][name]
    assert res["Type"] == QUEUE, name
    return res["Properties"]


def _resolve(node: Any, parameters: dict[str, str]) -> Any:
    """Evaluate the few intrinsics a schedule expression uses, for given parameter values."""
    if isinstance(node, dict) and len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return parameters[arg]
        if fn == "Condition":
            return _resolve(template()["Conditions"][arg], parameters)
        if fn == "Fn::Equals":
            left, right = (_resolve(a, parameters) for a in arg)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not _resolve(arg[0], parameters)
        if fn == "Fn::If":
            condition = _resolve(template()["Conditions"][arg[0]], parameters)
            return _resolve(arg[1] if condition else arg[2], parameters)
        if fn == "Fn::Sub" and isinstance(arg, str):
            return _SUB_VARIABLE.sub(lambda m: str(parameters[m.group(1)]), arg)
    return node


def test_the_sweeper_runs_on_an_eventbridge_scheduler_schedule_only():
    _only_event("SweeperFunction", "ScheduleV2")
    for name in _functions():
        if name != "SweeperFunction":
            assert not _events_of_type(name, "ScheduleV2") and not _events_of_type(name, "Schedule"), name


def test_the_sweep_gets_the_scheduled_time_and_execution_id_not_an_eventbridge_envelope():
    payload = json.loads(_only_event("SweeperFunction", "ScheduleV2")["Input"])
    assert payload == {
        "scheduled_time": "<aws.scheduler.scheduled-time>",
        "execution_id": "<aws.scheduler.execution-id>",
    }


def test_a_failed_sweep_delivery_is_retried_briefly_then_lands_in_the_scheduler_dlq():
    schedule = _only_event("SweeperFunction", "ScheduleV2")
    assert schedule["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 300}
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SchedulerDLQ", "Arn"]}}
    # No RoleArn: SAM then generates the schedule's execution role with sqs:SendMessage on
    # the DLQ, which is how Scheduler writes to it (it does not use queue policies).
    assert "RoleArn" not in schedule
    # A fixed schedule name would collide between two stacks in one account and region.
    assert schedule["OmitName"] is True and "Name" not in schedule


def test_the_sweep_interval_gives_a_valid_rate_expression_for_every_allowed_value():
    expression = _only_event("SweeperFunction", "ScheduleV2")["ScheduleExpression"]
    param = template()["Parameters"]["SweepIntervalMinutes"]
    rendered = {}
    for minutes in range(int(param["MinValue"]), int(param["MaxValue"]) + 1):
        rendered[minutes] = _resolve(expression, {"SweepIntervalMinutes": str(minutes)})
        # Rate expressions take the singular unit for 1 and the plural otherwise.
        assert re.fullmatch(r"rate\((1 minute|([2-9]|[1-9]\d+) minutes)\)", rendered[minutes]), rendered[minutes]
    assert rendered[1] == "rate(1 minute)"
    assert rendered[int(param["Default"])] == "rate(5 minutes)"


def test_only_the_refresh_worker_consumes_the_refresh_queue():
    consumers = [
        name
        for name in _functions()
        for event in _events_of_type(name, "SQS")
        if event["Queue"] == {"Fn::GetAtt": ["RefreshQueue", "Arn"]}
    ]
    assert consumers == ["RefreshWorkerFunction"]


def test_the_worker_reports_partial_batch_failures_and_caps_its_concurrency():
    events = {e["Queue"]["Fn::GetAtt"][0]: e for e in _events_of_type("RefreshWorkerFunction", "SQS")}
    assert set(events) == {"RefreshQueue", "RemovalQueue"}
    for event in events.values():
        # Without it one failed connection would send its neighbours in the batch back to the queue.
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert events["RemovalQueue"]["BatchSize"] == 10
    assert events["RefreshQueue"]["BatchSize"] == {"Ref": "WorkerBatchSize"}
    assert events["RefreshQueue"]["MaximumBatchingWindowInSeconds"] == {"Ref": "WorkerBatchingWindowSeconds"}
    assert events["RefreshQueue"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}
    assert events["RemovalQueue"]["ScalingConfig"] == {"MaximumConcurrency": 2}  # SQS's least: removals are rare
    assert int(template()["Parameters"]["WorkerMaxConcurrency"]["MinValue"]) >= 2


def test_the_worker_knows_the_removal_queue_it_alone_obeys_removals_from():
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["REMOVAL_QUEUE_ARN"] == {"Fn::GetAtt": ["RemovalQueue", "Arn"]}
    assert variables["REMOVAL_QUEUE_URL"] == {"Ref": "RemovalQueue"}
    visibility = int(_queue("RemovalQueue")["VisibilityTimeout"])
    assert visibility >= 6 * _timeout("RefreshWorkerFunction")
    assert _queue("RemovalQueue")["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["RefreshDLQ", "Arn"]}


def test_a_refresh_request_stays_hidden_for_at_least_six_worker_timeouts_and_the_batching_window():
    # AWS's advice for Lambda consumers: a message whose invocation is still running or
    # being retried after a throttle must not reach a second worker.
    visibility = int(_queue("RefreshQueue")["VisibilityTimeout"])
    window = int(template()["Parameters"]["WorkerBatchingWindowSeconds"]["MaxValue"])
    assert visibility >= 6 * _timeout("RefreshWorkerFunction") + window, (visibility, _timeout("RefreshWorkerFunction"))


def test_every_refresh_of_a_default_batch_starts_in_time_even_at_the_provider_call_limit():
    """ceil(batch / concurrency) waves of provider calls, each at most PROVIDER_CALL_LIMIT: the last wave must start
    while REFRESH_MIN_TIME of the invocation is left, or its messages go back to the queue (and toward the DLQ)."""
    import math

    from oauth_keeper.domain.deadlines import HANDLER_MARGIN, PROVIDER_CALL_LIMIT, REFRESH_MIN_TIME

    parameters = template()["Parameters"]
    waves = math.ceil(int(parameters["WorkerBatchSize"]["Default"]) / int(parameters["RefreshConcurrency"]["Default"]))
    last_wave_starts = (waves - 1) * PROVIDER_CALL_LIMIT
    assert last_wave_starts <= _timeout("RefreshWorkerFunction") - HANDLER_MARGIN - REFRESH_MIN_TIME


def test_the_workers_memory_is_a_parameter_with_a_measured_default():
    worker = _functions()["RefreshWorkerFunction"]["Properties"]
    assert worker["MemorySize"] == {"Ref": "WorkerMemorySize"}
    parameter = template()["Parameters"]["WorkerMemorySize"]
    assert int(parameter["Default"]) == 1024 and 256 in parameter["AllowedValues"]


def test_a_refresh_request_that_failed_five_times_is_parked_in_the_refresh_dlq():
    assert _queue("RefreshQueue")["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RefreshDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }


@pytest.mark.parametrize("dlq", ["RefreshDLQ", "SchedulerDLQ"])
def test_dead_letters_are_kept_fourteen_days(dlq):
    assert int(_queue(dlq)["MessageRetentionPeriod"]) == FOURTEEN_DAYS
    # A redriven message keeps its first enqueue time: the DLQ must outlive the source queue.
    source = int(_queue("RefreshQueue").get("MessageRetentionPeriod", 4 * 24 * 3600))
    assert int(_queue(dlq)["MessageRetentionPeriod"]) > source


def test_every_queue_is_encrypted_at_rest():
    queues = resources_of_type(QUEUE)
    assert {"RefreshQueue", "RefreshDLQ", "SchedulerDLQ"} <= set(queues)
    for name, res in queues.items():
        props = res["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, name


# ----------------------------------------------------------------- alarms


_ALARM_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


def _alarm(name: str) -> dict[str, Any]:
    res = template()["Resources"][name]
    assert res["Type"] == ALARM, name
    return res["Properties"]


def _watched_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads: Namespace, MetricName, Dimensions, Stat, Period."""
    if "Metrics" not in alarm:
        return [
            {
                "Namespace": alarm["Namespace"],
                "MetricName": alarm["MetricName"],
                "Dimensions": alarm.get("Dimensions", []),
                "Stat": alarm.get("Statistic"),
                "Period": alarm.get("Period"),
            }
        ]
    return [
        {**m["MetricStat"]["Metric"], "Stat": m["MetricStat"]["Stat"], "Period": m["MetricStat"]["Period"]}
        for m in alarm["Metrics"]
        if "MetricStat" in m
    ]


def _comparison(alarm: dict[str, Any]) -> tuple[str, float]:
    return alarm["ComparisonOperator"], alarm["Threshold"]


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_its_metric_and_says_what_to_do(name):
    alarm = _alarm(name)
    watch = ALARMS[name]
    metrics = _watched_metrics(alarm)
    assert {m["MetricName"] for m in metrics} == watch.metrics
    for metric in metrics:
        assert metric["Namespace"] == watch.namespace, name
        assert metric["Dimensions"] == watch.dimensions, name
        assert (metric["Stat"], metric["Period"]) == (watch.stat, watch.period), name
    # Every period must breach: DatapointsToAlarm absent means all EvaluationPeriods.
    assert alarm["EvaluationPeriods"] == alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]) == watch.periods
    assert _comparison(alarm) == (_COMPARISONS[watch.comparison], watch.threshold)
    assert alarm["TreatMissingData"] == watch.missing
    assert len(alarm["AlarmDescription"]) >= 80, "say what happened and what to do about it"


def test_the_template_has_exactly_the_alarms_of_the_table():
    assert set(resources_of_type(ALARM)) == set(ALARMS)


def test_every_alarm_notifies_the_alarm_topic_only_when_one_is_set():
    assert template()["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    alarms = resources_of_type(ALARM)
    assert set(ALARMS) <= set(alarms)
    for name, res in alarms.items():
        props = res["Properties"]
        assert props["AlarmActions"] == _ALARM_ACTIONS, name
        assert props["OKActions"] == _ALARM_ACTIONS, name


def test_only_the_heartbeat_treats_silence_as_an_incident():
    # A quiet system is not an incident (no dead letter, no error, no refresh due), except for the heartbeat:
    # a sweeper that never runs emits nothing at all.
    breaching = {name for name, res in resources_of_type(ALARM).items()
                 if res["Properties"]["TreatMissingData"] == "breaching"}
    assert breaching == {"SweepHeartbeatAlarm"}


def test_custom_metric_alarms_read_the_namespace_and_service_dimension_powertools_writes():
    variables = _globals_function()["Environment"]["Variables"]
    for name in resources_of_type(ALARM):
        for metric in _watched_metrics(_alarm(name)):
            if metric["Namespace"].startswith("AWS/"):
                continue
            assert metric["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"], name
            assert metric["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}], name


def _metric_names_in(node: ast.expr) -> set[str]:
    """The metric names a call argument can take: a literal, or either branch of `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _metric_names_in(node.body) | _metric_names_in(node.orelse)
    return set()


def emitted_metric_dimensions(sources: list[str]) -> dict[str, set[frozenset[str]]]:
    """Every metric name the code passes to `record_metric`, Powertools' `add_metric` (first argument or `name=`)
    or `record_metric_by`, with the dimension names each call files it under: `service` alone, or `service` and
    the keyword arguments of `record_metric_by`."""
    found: dict[str, set[frozenset[str]]] = {}
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called not in {"record_metric", "add_metric", "record_metric_by"}:
                continue
            dimensions = frozenset({"service"})
            if called == "record_metric_by":
                dimensions |= {k.arg for k in node.keywords if k.arg not in (None, "name", "unit", "value")}
            arguments = node.args[:1] + [k.value for k in node.keywords if k.arg == "name"]
            for argument in arguments:
                for name in _metric_names_in(argument):
                    found.setdefault(name, set()).add(dimensions)
    return found


def emitted_metric_names(sources: list[str]) -> set[str]:
    """Every metric name the code emits (see `emitted_metric_dimensions`)."""
    return set(emitted_metric_dimensions(sources))


def _code_sources() -> list[str]:
    files = [*(ROOT / "shared" / "oauth_keeper").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    return [f.read_text(encoding="utf-8") for f in files]


def test_every_custom_metric_an_alarm_reads_is_emitted_somewhere_in_the_code():
    # The quick check; tests/integration/test_alarm_metrics.py runs the handlers and reads what they print.
    emitted = emitted_metric_names(_code_sources())
    read = {m["MetricName"] for name in resources_of_type(ALARM) for m in _watched_metrics(_alarm(name))
            if not m["Namespace"].startswith("AWS/")}
    assert read, "no alarm reads a custom metric?"
    assert read <= emitted, f"alarms watch metrics the code never emits: {sorted(read - emitted)}"


def test_the_emitted_metric_scan_sees_literals_branches_and_keywords_only():
    source = textwrap.dedent("""
        record_metric("A", unit, 1)
        record_metric("B" if ok else "C", unit, 1)
        metrics.add_metric(name="D", unit=unit, value=1)
        record_metric(variable, unit, 1)
        logger.info("NotAMetric")
    """)
    assert emitted_metric_names([source]) == {"A", "B", "C", "D"}


def test_the_emitted_metric_scan_reads_the_dimensions_of_record_metric_by():
    source = textwrap.dedent("""
        record_metric("A", unit, 1)
        record_metric_by("E", unit, 1, outcome=str(result), reason=reason)
    """)
    assert emitted_metric_dimensions([source]) == {"A": {frozenset({"service"})},
                                                   "E": {frozenset({"service", "outcome", "reason"})}}


def _dead_letter_queues() -> dict[str, str]:
    """Queue -> what sends to it: redrive targets, schedule DLQs, asynchronous invocations' OnFailure queues."""
    found = {}
    for name, res in resources_of_type(QUEUE).items():
        target = (res["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target:
            found[target["Fn::GetAtt"][0]] = f"{name} redrive"
    for name, fn in _functions().items():
        for schedule in _events_of_type(name, "ScheduleV2"):
            if "DeadLetterConfig" in schedule:
                found[schedule["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]] = f"{name} schedule"
        on_failure = ((fn["Properties"].get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get(
            "OnFailure") or {}
        if on_failure.get("Type") == "SQS":
            found[on_failure["Destination"]["Fn::GetAtt"][0]] = f"{name} OnFailure"
    return found


def _alarms_on(metric_name: str, dimensions: list[dict[str, Any]]) -> list[str]:
    return [name for name in resources_of_type(ALARM) for m in _watched_metrics(_alarm(name))
            if m["MetricName"] == metric_name and m["Dimensions"] == dimensions]


def test_every_dead_letter_queue_alarms_on_a_single_message():
    dlqs = _dead_letter_queues()
    assert set(dlqs) == {"RefreshDLQ", "SchedulerDLQ", "SweeperDLQ"}, dlqs
    for queue in dlqs:
        (alarm,) = _alarms_on("ApproximateNumberOfMessagesVisible",
                              [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}])
        assert _comparison(_alarm(alarm)) == ("GreaterThanThreshold", 0), alarm


def test_every_queue_a_function_consumes_alarms_when_its_oldest_message_is_late():
    consumed = {event["Queue"]["Fn::GetAtt"][0] for name in _functions() for event in _events_of_type(name, "SQS")}
    assert consumed == {"RefreshQueue", "RemovalQueue"}
    for queue in consumed:
        (alarm,) = _alarms_on("ApproximateAgeOfOldestMessage",
                              [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}])
        # Longer than one failed attempt (a full visibility timeout) would hide nothing.
        assert 0 < _alarm(alarm)["Threshold"] < 15 * 60, alarm


def test_every_function_has_an_errors_alarm():
    for function in _functions():
        assert _alarms_on("Errors", [{"Name": "FunctionName", "Value": {"Ref": function}}]), function


def test_the_http_api_alarms_on_any_5xx():
    for api in resources_of_type("AWS::Serverless::HttpApi"):
        (alarm,) = _alarms_on("5xx", [{"Name": "ApiId", "Value": {"Ref": api}}])
        assert _alarm(alarm)["Namespace"] == "AWS/ApiGateway"
        assert _comparison(_alarm(alarm)) == ("GreaterThanThreshold", 0)


def test_a_sweep_that_ran_and_failed_is_retried_then_recorded_in_the_sweeper_dlq():
    # Scheduler invokes asynchronously: its retry policy and DLQ only see deliveries Lambda refused. A sweep
    # Lambda accepted and that failed is only seen by the function's own asynchronous invocation config.
    config = _functions()["SweeperFunction"]["Properties"]["EventInvokeConfig"]
    assert config["DestinationConfig"] == {
        "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["SweeperDLQ", "Arn"]}}
    }
    assert config["MaximumRetryAttempts"] == 2
    # As old as the schedule lets a delivery get: the next sweep supersedes it.
    assert config["MaximumEventAgeInSeconds"] == _only_event("SweeperFunction", "ScheduleV2")["RetryPolicy"][
        "MaximumEventAgeInSeconds"]
    assert int(_queue("SweeperDLQ")["MessageRetentionPeriod"]) == FOURTEEN_DAYS
    assert template()["Outputs"]["SweeperDLQUrl"]["Value"] == {"Ref": "SweeperDLQ"}


def test_the_scheduler_dlq_alarm_claims_only_failed_deliveries():
    description = _alarm("SchedulerDLQAlarm")["AlarmDescription"]
    # A throttled or failing sweeper is Lambda's business, never the scheduler's DLQ.
    assert "throttl" not in description.lower()
    assert "SweeperDLQAlarm" in description and "SweepHeartbeatAlarm" in description


def _sweep_interval_seconds(minutes: int) -> int:
    expression = _alarm("SweepHeartbeatAlarm")["Period"]
    mapping, key, attribute = expression["Fn::FindInMap"]
    assert key == {"Ref": "SweepIntervalMinutes"}
    return int(template()["Mappings"][mapping][str(minutes)][attribute])


def test_the_sweep_heartbeat_alarms_after_three_sweep_intervals_without_a_success_for_every_interval():
    param = template()["Parameters"]["SweepIntervalMinutes"]
    low, high = int(param["MinValue"]), int(param["MaxValue"])
    mapping = template()["Mappings"]["SweepInterval"]
    assert set(mapping) == {str(m) for m in range(low, high + 1)}, "one row per allowed interval, no more"
    alarm = _alarm("SweepHeartbeatAlarm")
    for minutes in range(low, high + 1):
        period = _sweep_interval_seconds(minutes)
        assert period == minutes * 60, minutes
        # CloudWatch: a period of a whole number of minutes, and at most a day evaluated.
        assert period % 60 == 0 and alarm["EvaluationPeriods"] * period <= 86_400
    # Sum < 1 in each of 3 periods in a row: no sweep succeeded in 3 intervals; a single missed one is jitter.
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert _comparison(alarm) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"


class _MetricValue(float):
    """A metric-math number: dividing by zero gives NaN instead of raising, as CloudWatch does."""

    def __add__(self, other: float) -> _MetricValue:
        return _MetricValue(float(self) + float(other))

    def __truediv__(self, other: float) -> _MetricValue:
        return _MetricValue(float(self) / float(other) if other else math.nan)


def _failure_ratio(failed: float | None, succeeded: float | None) -> float:
    """The ratio alarm's expression for one period's sums (None: no data point at all)."""
    metrics = _alarm("RefreshFailureRatioAlarm")["Metrics"]
    (expression,) = [m for m in metrics if m.get("ReturnData")]
    ids = {m["MetricStat"]["Metric"]["MetricName"]: m["Id"] for m in metrics if "MetricStat" in m}
    names = {
        ids["RefreshFailed"]: None if failed is None else _MetricValue(failed),
        ids["RefreshSucceeded"]: None if succeeded is None else _MetricValue(succeeded),
        "FILL": lambda value, default: _MetricValue(default) if value is None else value,
        "IF": lambda condition, then, otherwise: then if condition else otherwise,
    }
    # Our own template's expression, evaluated without builtins; a missing point left
    # unguarded (None + 1) raises here.
    return eval(expression["Expression"], {"__builtins__": {}}, names)  # noqa: S307


@pytest.mark.parametrize(
    ("failed", "succeeded", "alarms"),
    [
        (None, None, False),  # no refresh due at all
        (0, 10, False),
        (2, 8, False),  # exactly 20%
        (3, 7, True),
        (5, None, True),  # every refresh failed: no success point is published
        (None, 4, False),
    ],
)
def test_the_failure_ratio_alarms_above_twenty_percent_and_never_on_missing_data(failed, succeeded, alarms):
    props = _alarm("RefreshFailureRatioAlarm")
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0.2)
    ratio = _failure_ratio(failed, succeeded)
    assert not math.isnan(ratio)
    assert (ratio > props["Threshold"]) is alarms, ratio


def test_the_failure_ratio_must_stay_high_for_three_periods_of_five_minutes():
    props = _alarm("RefreshFailureRatioAlarm")
    assert props["EvaluationPeriods"] == 3 and props.get("DatapointsToAlarm", 3) == 3
    assert {m["Period"] for m in _watched_metrics(props)} == {300}
    assert sum(1 for m in props["Metrics"] if m.get("ReturnData", True)) == 1


# ----------------------------------------------------------------- logs


def _function_references(node: Any) -> set[str]:
    """Functions a template value depends on (Ref, GetAtt, or ${...} in a Sub)."""
    functions = set(_functions())
    text = json.dumps(node)
    found = {f for f in functions if json.dumps({"Ref": f}) in text or f'["{f}", ' in text}
    found |= {name.split(".")[0] for name in _SUB_VARIABLE.findall(text)} & functions
    return found


def test_every_function_writes_to_its_own_log_group_which_exists_before_it():
    # Lambda creates /aws/lambda/<function> on the first invocation if nothing names another group. A group the
    # template names after the function can only be created after it: an invocation in between (a schedule,
    # a queue) creates the group first, and the deploy fails with "already exists". So each function names its
    # group in LoggingConfig, and the group's name depends on no function.
    groups = resources_of_type(LOG_GROUP)
    used = []
    for fn, res in _functions().items():
        target = res["Properties"]["LoggingConfig"]["LogGroup"]
        assert set(target) == {"Ref"} and target["Ref"] in groups, fn
        group = groups[target["Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, fn
        assert not _function_references(group), f"{target['Ref']} can only exist after a function"
        assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}/{fn}"}, fn
        # Renamed on an upgrade, the old group keeps its logs until their retention ends.
        assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Delete", "Retain"), fn
        used.append(target["Ref"])
    assert len(used) == len(set(used)), "two functions share a log group"


def test_every_log_group_is_encrypted_with_the_operators_key_when_one_is_given():
    """LogGroupKmsKeyArn: empty keeps CloudWatch Logs' own encryption; a key ARN applies to every log group."""
    param = template()["Parameters"]["LogGroupKmsKeyArn"]
    assert param["Default"] == ""
    assert template()["Conditions"]["HasLogKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "LogGroupKmsKeyArn"}, ""]}]}
    groups = resources_of_type(LOG_GROUP)
    assert len(groups) == len(_functions()) + 1  # one per function, and the API's access log
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {
            "Fn::If": ["HasLogKey", {"Ref": "LogGroupKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}, name


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
        ("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab", True),
        ("arn:aws:kms:eu-west-1:123456789012:alias/logs", False),  # CloudWatch Logs needs the key's ARN
        ("1234abcd-12ab-34cd-56ef-1234567890ab", False),
        ("arn:aws:sns:eu-west-1:123456789012:key/x", False),
    ],
)
def test_the_log_key_is_empty_or_a_kms_key_arn(value, accepted):
    pattern = template()["Parameters"]["LogGroupKmsKeyArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_no_log_group_is_named_after_a_function():
    for name, group in resources_of_type(LOG_GROUP).items():
        assert not _function_references(group), name


def test_the_function_reference_check_sees_ref_getatt_and_sub():
    assert _function_references({"Fn::Sub": "/aws/lambda/${SweeperFunction}"}) == {"SweeperFunction"}
    assert _function_references({"Ref": "WebhookFunction"}) == {"WebhookFunction"}
    assert _function_references({"Fn::GetAtt": ["CallbackFunction", "Arn"]}) == {"CallbackFunction"}
    assert _function_references({"Fn::Sub": "/aws/lambda/${AWS::StackName}/SweeperFunction"}) == set()


# ----------------------------------------------------------------- IAM


def test_functions_get_exactly_the_permissions_of_the_contract():
    assert set(PERMISSIONS) == set(_functions()), "every function needs its entry in PERMISSIONS"
    for name, expected in PERMISSIONS.items():
        granted = set()
        for statement in _policy_statements(_functions()[name]):
            assert statement["Effect"] == "Allow", name
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    granted.add((action.lower(), _resource_text(resource)))
        assert granted == expected, f"{name}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"


def test_no_iam_statement_grants_every_action_or_every_resource():
    problems = [p for where, st in _all_iam_statements() for p in wildcard_problems(where, st)]
    assert not problems, "\n".join(problems)


def test_functions_reading_the_client_secret_decrypt_it_through_ssm_with_the_same_statement():
    found = {}
    for name in READS_CLIENT_SECRET:
        (statement,) = [s for s in _policy_statements(_functions()[name]) if _is_ssm_via_service_exception(s)]
        assert _resource_text(statement["Resource"]) == _ANY_KEY_HERE, name
        found[name] = statement
    first, *others = found.values()
    assert all(s == first for s in others), found


def test_the_only_any_key_grant_is_decrypt_through_ssm():
    for where, statement in _all_iam_statements():
        resources = [_resource_text(r) for r in _as_list(statement.get("Resource", []))]
        if _ANY_KEY_HERE in resources:
            assert _is_ssm_via_service_exception(statement), where


@pytest.mark.parametrize(
    ("statement", "flagged"),
    [
        ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": {"Fn::GetAtt": ["T", "Arn"]}}, False),
        ({"Effect": "Allow", "Action": "*", "Resource": {"Fn::GetAtt": ["T", "Arn"]}}, True),
        ({"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": ["T", "Arn"]}}, True),
        ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}, True),
        (
            {
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "Resource": {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"},
            },
            True,
        ),
        ({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Fn::Sub": _ANY_KEY_HERE}}, True),
        (
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": {"Fn::Sub": _ANY_KEY_HERE},
                "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}},
            },
            False,
        ),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Fn::GetAtt": ["T", "Arn"]}}, True),
    ],
)
def test_the_wildcard_check_catches_broad_statements(statement, flagged):
    assert bool(wildcard_problems("test", statement)) is flagged


# ----------------------------------------------------------------- references


def test_every_reference_in_the_template_points_at_something_that_exists():
    problems = reference_problems(template())
    assert not problems, "\n".join(problems)


def test_the_reference_check_catches_dangling_names():
    broken = {
        "Parameters": {"P": {"Type": "String"}},
        "Conditions": {"C": {"Fn::Equals": [{"Ref": "P"}, ""]}},
        "Globals": {
            "Function": {
                "Environment": {
                    "Variables": {
                        "A": {"Ref": "Missing"},
                        "B": {"Fn::GetAtt": ["T", "Nope"]},
                        "C": {"Fn::Sub": "${P}-${Ghost}-${T.Arn}-${!Literal}-${AWS::Region}"},
                        "D": {"Fn::Sub": ["${Local}", {"Local": {"Ref": "P"}}]},
                        "E": {"Fn::If": ["NoSuchCondition", "a", "b"]},
                    }
                }
            }
        },
        "Resources": {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {}}},
    }
    problems = "\n".join(reference_problems(broken))
    assert "Ref Missing" in problems
    assert "GetAtt T.Nope" in problems
    assert "${Ghost}" in problems
    assert "NoSuchCondition" in problems
    assert "Local" not in problems and "Literal" not in problems and "T.Arn" not in problems
    assert len(reference_problems(broken)) == 4


# ----------------------------------------------------------------- outputs


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict) and "Fn::If" in node:
        for branch in node["Fn::If"][1:]:
            yield from _leaves(branch)
    else:
        yield node


def test_outputs_name_the_api_tables_bus_key_and_tiktok_redirect_uri():
    outputs = template()["Outputs"]
    assert {
        "ApiUrl",
        "CallbackUrlTikTok",
        "WebhookUrlTikTok",
        "ConnectionsTableName",
        "FlowsTableName",
        "EventBusName",
        "TokenKeyArn",
        "TableKeyArn",
    } <= set(outputs)
    assert outputs["ConnectionsTableName"]["Value"] == {"Ref": "ConnectionsTable"}
    assert outputs["FlowsTableName"]["Value"] == {"Ref": "FlowsTable"}
    assert outputs["EventBusName"]["Value"] == {"Ref": "ConnectionEventBus"}
    assert outputs["TokenKeyArn"]["Value"] == {"Fn::GetAtt": ["TokenKey", "Arn"]}
    assert outputs["TableKeyArn"]["Value"] == {"Fn::GetAtt": ["TableKey", "Arn"]}


def test_outputs_name_the_refresh_queue_and_the_dead_letter_queues():
    outputs = template()["Outputs"]
    assert outputs["RefreshQueueUrl"]["Value"] == {"Ref": "RefreshQueue"}
    assert outputs["RefreshDLQUrl"]["Value"] == {"Ref": "RefreshDLQ"}
    assert outputs["SchedulerDLQUrl"]["Value"] == {"Ref": "SchedulerDLQ"}


def test_the_tiktok_redirect_uri_output_is_the_callback_route_on_every_base_url():
    value = template()["Outputs"]["CallbackUrlTikTok"]["Value"]
    assert value["Fn::If"][0] == "HasDomain"
    assert value["Fn::If"][1] == {"Fn::Sub": "https://${DomainName}/callback/tiktok"}
    leaves = list(_leaves(value))
    assert len(leaves) >= 2
    callback_path = next(r["path"] for r in http_routes() if r["function"] == "CallbackFunction")
    for leaf in leaves:
        text = _resource_text(leaf)
        assert text.endswith("/callback/tiktok"), text
        assert callback_path.replace("{provider}", "tiktok") == "/callback/tiktok"


def _as_sub_text(value: Any) -> str:
    """A URL output leaf as Fn::Sub text: Ref X -> ${X}, GetAtt A.B -> ${A.B}, Sub s -> s."""
    if isinstance(value, dict) and "Ref" in value:
        return f"${{{value['Ref']}}}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"${{{'.'.join(value['Fn::GetAtt'])}}}"
    return _resource_text(value)


def _conditions_of(value: Any) -> list[str]:
    if isinstance(value, dict) and "Fn::If" in value:
        return [value["Fn::If"][0]] + [c for branch in value["Fn::If"][1:] for c in _conditions_of(branch)]
    return []


@pytest.mark.parametrize(
    ("output", "route"),
    [("CallbackUrlTikTok", ("GET", "/callback/{provider}")), ("WebhookUrlTikTok", ("POST", "/webhooks/{provider}"))],
)
def test_each_url_to_register_at_tiktok_is_its_route_on_the_public_base_url(output, route):
    # TikTok's developer portal takes the redirect URI and the webhook callback URL; both must
    # sit on the same base as everything the browser and TikTok see (PublicUrl), case by case.
    value = template()["Outputs"][output]["Value"]
    public = template()["Outputs"]["PublicUrl"]["Value"]
    assert _conditions_of(value) == _conditions_of(public) == ["HasDomain", "HasPublicBaseUrl"]
    suffix = route[1].replace("{provider}", "tiktok")
    bases = []
    for leaf in _leaves(value):
        text = _as_sub_text(leaf)
        assert text.endswith(suffix), text
        bases.append(text.removesuffix(suffix))
    assert bases == [_as_sub_text(leaf) for leaf in _leaves(public)]
    assert ROUTES[route][1] == "NONE", f"{route} must be public for TikTok to reach it"


def test_the_webhook_url_output_tells_where_to_register_it():
    description = template()["Outputs"]["WebhookUrlTikTok"]["Description"]
    assert "TikTok" in description and "Webhook" in description


def test_the_sweeper_may_read_the_provider_breakers_and_of_a_connection_only_its_provider():
    statements = resources_of_type(FUNCTION)["SweeperFunction"]["Properties"]["Policies"][0]["Statement"]
    breakers, providers = [s for s in statements if s.get("Action") == "dynamodb:GetItem"]
    assert breakers["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["_breaker#*"]}}
    allowed = {"dynamodb:Attributes": ["connection_id", "provider"]}
    assert providers["Condition"] == {"ForAllValues:StringEquals": allowed,
                                      "StringEqualsIfExists": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}}


def test_the_webhook_may_touch_only_the_delivery_markers_of_the_flows_table():
    """Its Flows table statement is fenced to `delivery#` keys, and those are the keys the adapter reads and writes:
    the webhook can read no connect session or OAuth flow."""
    from oauth_keeper.adapters.deliveries import DynamoDeliveryLog
    from oauth_keeper.domain.provider_events import delivery_key

    statements = _policy_statements(_functions()["WebhookFunction"])
    (flows,) = [s for s in statements if _resource_text(s["Resource"]) == "FlowsTable.Arn"]
    assert flows["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["delivery#*"]}}

    calls = []

    class Client:
        def get_item(self, **request):
            calls.append(request["Key"]["flow_key"]["S"])
            return {}

        def put_item(self, **request):
            calls.append(request["Item"]["flow_key"]["S"])

    log = DynamoDeliveryLog(Client(), "Flows")
    key = delivery_key("tiktok", b'{"event": "authorization.removed"}')
    assert not log.seen(key, 1_800_000_000)
    log.remember(key, "tiktok", 1_800_000_000, 1_800_600_000)
    assert calls == [key, key] and key.startswith("delivery#")


def test_the_public_callbacks_read_only_a_data_deletion_s_kind_and_result_in_the_connections_table():
    """The status URL's one read: `op#` items, the key, `kind` and `result`, through a projection (IAM's
    ForAllValues holds over no attributes at all, hence the Select condition)."""
    statements = _policy_statements(_functions()["WebhookFunction"])
    (status,) = [s for s in statements if _resource_text(s["Resource"]) == "ConnectionsTable.Arn"]
    assert status["Action"] == "dynamodb:GetItem"
    assert status["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["op#*"]},
        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["connection_id", "kind", "result"]},
        "StringEquals": {"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}}


def test_the_sweeper_reads_a_connections_provider_through_that_projection_alone(monkeypatch):
    """What the IAM condition above allows is exactly what `ConnectionStore.provider_of` asks DynamoDB for."""
    from oauth_keeper.adapters.dynamodb import DynamoItemStore

    calls = []

    class Client:
        def get_item(self, **request):
            calls.append(request)
            return {"Item": {"provider": {"S": "tiktok"}}}

    store = DynamoItemStore(Client(), "Connections")
    assert store.get("con_x", ("provider",)) == {"provider": "tiktok"}
    (request,) = calls
    assert request["ProjectionExpression"] == "#p0" and request["ExpressionAttributeNames"] == {"#p0": "provider"}


def test_the_sweeper_may_write_one_item_only_its_record_of_the_shards_in_use():
    statements = resources_of_type(FUNCTION)["SweeperFunction"]["Properties"]["Policies"][0]["Statement"]
    writes = [s for s in statements if "dynamodb:UpdateItem" in _as_list(s["Action"])]
    assert len(writes) == 1 and set(_as_list(writes[0]["Action"])) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert writes[0]["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["_due_shards"]}}


def test_the_sweeper_reads_and_writes_its_shard_record_under_that_key_alone():
    """What the statement above allows is exactly the key `ConnectionStore` asks DynamoDB for."""
    from oauth_keeper.adapters.connections import SHARD_SPAN_KEY, ConnectionStore
    from oauth_keeper.adapters.dynamodb import DynamoItemStore
    from oauth_keeper.domain.schedule import ShardSpan


    calls = []

    class Client:
        def get_item(self, **request):
            calls.append(request)
            return {}

        def update_item(self, **request):
            calls.append(request)
            return {}

    store = ConnectionStore(DynamoItemStore(Client(), "Connections"), cipher=None, due_shards=8)  # type: ignore[arg-type]
    assert store.shard_span() is None
    assert store.save_shard_span(ShardSpan(16, 16, 1, 2), replacing=None)
    assert SHARD_SPAN_KEY == "_due_shards"
    assert [c["Key"] for c in calls] == [{"connection_id": {"S": "_due_shards"}}] * 2


def test_the_due_shards_parameter_allows_no_more_shards_than_the_sweep_audits():
    from oauth_keeper.domain.schedule import MAX_DUE_SHARDS

    assert int(template()["Parameters"]["DueShards"]["MaxValue"]) == MAX_DUE_SHARDS


def _flows_conditions(function: str) -> dict[str, Any]:
    """Action -> the Condition of the function's statement on the Flows table itself (None: unconditional)."""
    found: dict[str, Any] = {}
    for statement in _policy_statements(_functions()[function]):
        if _resource_text(statement["Resource"]) == "FlowsTable.Arn":
            for action in _as_list(statement["Action"]):
                found[action] = statement.get("Condition")
    return found


def _leading_keys(*patterns: str) -> dict[str, Any]:
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(patterns)}}


def test_erasure_functions_touch_only_tombstones_sessions_and_flows_of_the_flows_table():
    """The connect-session function reads tombstones alone; the erasing functions write tombstones and delete
    sessions and flows, nothing else (never a webhook delivery marker); the keys the adapter uses match."""
    from oauth_keeper.adapters.flows import DynamoFlowStore
    from oauth_keeper.domain.flows import secret_hash

    assert _flows_conditions("ConnectSessionsFunction") == {"dynamodb:PutItem": None,
                                                           "dynamodb:GetItem": _leading_keys("erased#*")}
    assert _flows_conditions("BackendApiFunction") == {"dynamodb:PutItem": _leading_keys("erased#*"),
                                                      "dynamodb:GetItem": _leading_keys("erased#*"),
                                                      "dynamodb:DeleteItem": _leading_keys("session#*", "state#*")}
    assert _flows_conditions("RefreshWorkerFunction") == {"dynamodb:DeleteItem": _leading_keys("session#*",
                                                                                                "state#*")}
    calls = []

    class Client:
        def get_item(self, **request):
            calls.append(("get", request["Key"]["flow_key"]["S"]))
            return {}

        def put_item(self, **request):
            calls.append(("put", request["Item"]["flow_key"]["S"]))

        def query(self, **request):
            calls.append(("query", request["IndexName"]))
            return {"Items": [{"flow_key": {"S": secret_hash("session", "s")}},
                              {"flow_key": {"S": secret_hash("state", "t")}}]}

        def delete_item(self, **request):
            calls.append(("delete", request["Key"]["flow_key"]["S"]))

    store = DynamoFlowStore(Client(), "Flows")
    store.erased_at("k" * 64)
    store.record_erasure("k" * 64, 1_800_000_000, 1_800_086_400)
    store.delete_owned("k" * 64, issued_until=1_800_000_000, limit=100)
    assert [(verb, key.split("#")[0] + "#") for verb, key in calls if verb != "query"] == [
        ("get", "erased#"), ("put", "erased#"), ("delete", "session#"), ("delete", "state#")]
    assert ("query", "ByOwnerKey") in calls


def test_the_owner_key_is_a_kms_hmac_key_only_the_functions_that_need_it_may_use():
    key = template()["Resources"]["OwnerKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["KeySpec"] == "HMAC_256" and key["Properties"]["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert _globals_function()["Environment"]["Variables"]["OWNER_KEY_ARN"] == {"Fn::GetAtt": ["OwnerKey", "Arn"]}
    users = {name for name, pairs in PERMISSIONS.items() if ("kms:generatemac", "OwnerKey.Arn") in pairs}
    assert users == {"ConnectSessionsFunction", "AuthorizeFunction", "CallbackFunction", "BackendApiFunction",
                     "RefreshWorkerFunction"}
    from oauth_keeper.adapters.owner_keys import MAC_ALGORITHM

    assert MAC_ALGORITHM == "HMAC_SHA_256"  # what an HMAC_256 key computes


def test_with_connect_confirmation_the_callback_role_cannot_write_a_connection():
    """The public callback holds grants (pending#) and orphans them (orphan#); under `required`, the template's
    default, its role may write nothing else in the Connections table: no connection, no guard, so it cannot roll
    a connection's tokens back or move one to another owner. Under `off` it stores connections itself."""
    assert template()["Parameters"]["ConnectConfirmation"]["Default"] == "required"
    statements = _functions()["CallbackFunction"]["Properties"]["Policies"][0]["Statement"]
    writes = [s for s in statements if any(a in ("dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
                                                  "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem")
                                           for a in _as_list(s["Action"]))
              and s["Resource"] == {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}]
    assert [s["Sid"] for s in writes] == ["WriteConnection"]
    condition, when_required, when_off = writes[0]["Condition"]["Fn::If"]
    assert condition == "ConfirmationRequired" and when_off == {"Ref": "AWS::NoValue"}
    patterns = when_required["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]

    def allowed(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)

    assert allowed("pending#" + "a" * 48) and allowed("orphan#" + "b" * 32)
    for key in ("con_v5kxitzfzikpm6z75y424h33jvfkl3xb", "guard#abc", "op#op_x", "_breaker#tiktok", "_due_shards"):
        assert not allowed(key), key


# ----------------------------------------------------------------- operations: dashboard, event archive, consumers
DASHBOARD = "AWS::CloudWatch::Dashboard"
_SEARCH = re.compile(r"^SEARCH\('\{([^}]*)\}\s+([^']*)',\s*'(\w+)',\s*(\d+)\)$")
_SEARCH_TERM = re.compile(r'(\w+)="([^"]*)"')


def dashboard_body() -> dict[str, Any]:
    """The operations dashboard's body as CloudWatch receives it, each `${...}` of its Fn::Sub standing as
    `<...>` (e.g. `<RefreshQueue.QueueName>`): that they name something is the reference test's job."""
    (dashboard,) = resources_of_type(DASHBOARD).values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str), "a Fn::Sub without a variable map: every name comes from the template"
    return json.loads(_SUB_VARIABLE.sub(lambda m: f"<{m.group(1)}>", text))


class Graphed(NamedTuple):
    """A metric a dashboard graph reads: a row names its `dimensions` with values; a SEARCH names them all
    (its schema) and `dimensions` holds the values it filters on."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    stat: str
    search: frozenset[str] | None = None


def dashboard_metrics(body: dict[str, Any] | None = None) -> list[Graphed]:
    """Every metric the dashboard's graphs read, rows and SEARCH expressions alike (other expressions fail)."""
    found = []
    for widget in (body or dashboard_body())["widgets"]:
        for row in widget["properties"].get("metrics", []) if widget["type"] == "metric" else []:
            options = row[-1] if isinstance(row[-1], dict) else {}
            if "expression" in options:
                match = _SEARCH.match(options["expression"])
                assert match, f"only SEARCH expressions are understood here: {options['expression']}"
                namespace, *names = (part.strip() for part in match.group(1).split(","))
                terms = dict(_SEARCH_TERM.findall(match.group(2)))
                found.append(Graphed(namespace, terms.pop("MetricName"), terms, match.group(3), frozenset(names)))
                continue
            fields = row[:-1] if options else row
            namespace, name, *pairs = fields
            dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
            found.append(Graphed(namespace, name, dimensions, options.get("stat", "Average")))
    return found


def _widgets(kind: str) -> list[dict[str, Any]]:
    return [w for w in dashboard_body()["widgets"] if w["type"] == kind]


def test_the_dashboard_is_named_after_the_stack_and_its_widgets_tile_the_24_column_grid():
    (dashboard,) = resources_of_type(DASHBOARD).values()
    assert dashboard["Properties"]["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-operations"}
    cells: set[tuple[int, int]] = set()
    for widget in dashboard_body()["widgets"]:
        x, y, width, height = (widget[k] for k in ("x", "y", "width", "height"))
        assert x >= 0 and y >= 0 and width > 0 and height > 0 and x + width <= 24, widget["properties"]["title"]
        mine = {(col, row) for col in range(x, x + width) for row in range(y, y + height)}
        assert not mine & cells, f"{widget['properties']['title']} overlaps another widget"
        cells |= mine
        if widget["type"] != "alarm":
            assert widget["properties"]["region"] == "<AWS::Region>"


def test_the_dashboard_shows_the_state_of_every_alarm():
    (widget,) = _widgets("alarm")
    assert set(widget["properties"]["alarms"]) == {f"<{name}.Arn>" for name in resources_of_type(ALARM)}


def test_the_dashboard_graphs_refresh_outcomes_risk_reauth_and_latency_from_the_service_s_metrics():
    graphed = dashboard_metrics()
    plain = {(g.name, g.stat) for g in graphed if g.search is None and g.namespace == "OAuthKeeper"}
    searched = {g.name: g for g in graphed if g.search is not None}
    assert searched["RefreshOutcome"].search == {"service", "outcome", "reason"}
    assert searched["RefreshOutcome"].stat == "Sum"
    assert {("ConnectionsAtRisk", "Sum"), ("ConnectionsRecovered", "Sum"), ("NeedsReauthTransitions", "Sum"),
            ("RefreshLatency", "p50"), ("RefreshLatency", "p99")} <= plain
    needs_reauth = [g for g in graphed if g.name == "RefreshOutcome" and g.dimensions.get("outcome") == "needs_reauth"]
    assert needs_reauth, "needs-reauth transitions by reason"
    assert searched["ProviderPaused"].search == {"service", "provider"} and searched["ProviderPaused"].stat == "Maximum"
    assert {("CircuitBreakerOpen", "Sum"), ("ProviderOutage", "Sum"), ("ProviderRateLimited", "Sum")} <= plain


def test_the_dashboard_graphs_the_refresh_queue_s_age_and_every_dead_letter_queue():
    graphed = {(g.name, g.dimensions.get("QueueName"), g.stat) for g in dashboard_metrics() if g.namespace == "AWS/SQS"}
    assert ("ApproximateAgeOfOldestMessage", "<RefreshQueue.QueueName>", "Maximum") in graphed
    for queue in _dead_letter_queues():
        assert ("ApproximateNumberOfMessagesVisible", f"<{queue}.QueueName>", "Maximum") in graphed, queue


def test_the_dashboard_counts_api_4xx_and_5xx_overall_and_per_route_from_the_access_log():
    graphed = {(g.name, json.dumps(g.dimensions)) for g in dashboard_metrics() if g.namespace == "AWS/ApiGateway"}
    assert graphed == {(code, json.dumps({"ApiId": "<HttpApi>"})) for code in ("4xx", "5xx")}
    (logs,) = _widgets("log")
    query = logs["properties"]["query"]
    # API Gateway publishes per-route metrics only with detailed metrics (paid per route): the access log has
    # each request's route key and status already.
    assert query.startswith("SOURCE '<HttpApiAccessLogGroup>' |")
    access_log = template()["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert access_log["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    fields = set(json.loads(access_log["Format"]))
    assert "filter status >= 400" in query and re.search(r"stats count\(\*\) as \w+ by routeKey, status", query)
    assert {"routeKey", "status"} <= fields


def test_every_service_metric_the_dashboard_reads_is_emitted_under_those_dimensions():
    variables = _globals_function()["Environment"]["Variables"]
    emitted = emitted_metric_dimensions(_code_sources())
    for graphed in dashboard_metrics():
        if graphed.namespace.startswith("AWS/"):
            continue
        assert graphed.namespace == variables["POWERTOOLS_METRICS_NAMESPACE"], graphed
        assert graphed.dimensions.get("service") == variables["POWERTOOLS_SERVICE_NAME"], graphed
        assert graphed.name in emitted, f"the dashboard reads {graphed.name}, which the code never emits"
        names = graphed.search if graphed.search is not None else frozenset(graphed.dimensions)
        assert emitted[graphed.name] == {names}, f"{graphed.name}: emitted under {emitted[graphed.name]}"


def test_the_dashboard_metric_reader_understands_rows_and_searches():
    body = {"widgets": [{"type": "metric", "properties": {"metrics": [
        ["NS", "A", "service", "s", {"stat": "p99"}],
        ["NS", "B", "service", "s"],
        [{"id": "e", "expression": "SEARCH('{NS,service,kind} MetricName=\"C\" kind=\"x\"', 'Sum', 300)"}]]}}]}
    assert dashboard_metrics(body) == [
        Graphed("NS", "A", {"service": "s"}, "p99"), Graphed("NS", "B", {"service": "s"}, "Average"),
        Graphed("NS", "C", {"kind": "x"}, "Sum", frozenset({"service", "kind"}))]


def test_the_archive_keeps_every_connection_event_for_the_retention_the_operator_chose():
    from oauth_keeper.domain.events import SOURCE

    (archive,) = resources_of_type("AWS::Events::Archive").values()
    props = archive["Properties"]
    assert props["SourceArn"] == {"Fn::GetAtt": ["ConnectionEventBus", "Arn"]}
    assert props["EventPattern"] == {"source": [SOURCE]}
    assert "ArchiveName" not in props  # CloudFormation names it: at most 48 characters, a stack name has 128
    assert props["RetentionDays"] == {"Ref": "EventArchiveRetentionDays"}
    retention = template()["Parameters"]["EventArchiveRetentionDays"]
    # 0 would keep events (owner and account ids) forever, past an erasure.
    assert retention["Type"] == "Number" and int(retention["MinValue"]) == 1 and int(retention["Default"]) == 30


def test_a_consumer_account_may_manage_only_its_own_rules_on_the_bus_and_never_put_events():
    assert template()["Conditions"]["HasEventConsumerAccount"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EventConsumerAccountId"}, ""]}]}
    (policy,) = resources_of_type("AWS::Events::EventBusPolicy").values()
    assert policy["Condition"] == "HasEventConsumerAccount"
    props = policy["Properties"]
    assert props["EventBusName"] == {"Ref": "ConnectionEventBus"}
    statement = props["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${EventConsumerAccountId}:root"}}
    assert set(statement["Action"]) == {"events:PutRule", "events:PutTargets", "events:DeleteRule",
                                        "events:RemoveTargets", "events:DescribeRule", "events:EnableRule",
                                        "events:DisableRule", "events:ListTargetsByRule"}
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${ConnectionEventBus.Name}/*"}
    assert statement["Condition"] == {"StringEqualsIfExists": {"events:creatorAccount": "${aws:PrincipalAccount}"}}


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True), ("123456789012", True), ("12345678901", False), ("1234567890123", False), ("*", False),
    ("arn:aws:iam::123456789012:root", False),
])
def test_the_consumer_account_is_empty_or_one_account_id(value, accepted):
    pattern = template()["Parameters"]["EventConsumerAccountId"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_outputs_name_the_bus_arn_the_archive_and_the_dashboard():
    outputs = template()["Outputs"]
    assert outputs["EventBusArn"]["Value"] == {"Fn::GetAtt": ["ConnectionEventBus", "Arn"]}
    assert outputs["EventArchiveArn"]["Value"] == {"Fn::GetAtt": ["ConnectionEventArchive", "Arn"]}
    assert outputs["DashboardName"]["Value"] == {"Ref": "OperationsDashboard"}
