"""Least privilege in template.yaml: every policy document, wherever it sits, names actions and resources.

tests/template/test_template_structure.py already pins each function's exact permissions and refuses `*`,
`service:*`, `Resource: "*"` and `type/*` in function and IAM-role policies. This file extends that to every
policy document in the template (the KMS key policy, resource policies such as queue, topic or bus policies),
to wildcards anywhere inside an ARN (`.../index/*`) or an action (`dynamodb:Get*`), and to wildcard
principals. The few wildcards the design needs are listed once below, each with its reason, and each must
still match something in the template (an exception that matches nothing has to go).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local.cfn import template

pytestmark = pytest.mark.unit

KEY_POLICY = "key policy"
IDENTITY_POLICY = "identity policy"  # attached to a role (function Policies, IAM roles and policies)
RESOURCE_POLICY = "resource policy"  # attached to a queue, topic, bus, bucket...
TRUST_POLICY = "trust policy"

_ACCOUNT_ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
_ANY_KEY_HERE = "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"
_CONSUMER_RULES = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${ConnectionEventBus.Name}/*"
_SSM_CLIENT_CREDENTIAL = re.compile(
    r"^arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter\$\{SsmPrefix\}/\*/"
    r"(client_key|client_id|client_secret)$"
)


@dataclass(frozen=True)
class Statement:
    where: str  # Resources.<LogicalId>.<path>
    kind: str
    body: dict[str, Any]

    def actions(self) -> list[Any]:
        return _as_list(self.body.get("Action", []))

    def resources(self) -> list[Any]:
        return _as_list(self.body.get("Resource", []))

    def via_service(self) -> Any:
        return (self.body.get("Condition") or {}).get("StringEquals", {}).get("kms:ViaService")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_text(value: Any) -> str:
    """A Resource as text: the literal, a Sub's template, "X.Arn" for a GetAtt, "Ref X" for a Ref."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
        if fn == "Fn::GetAtt":
            return ".".join(arg) if isinstance(arg, list) else arg
        if fn == "Ref":
            return f"Ref {arg}"
    return json.dumps(value, sort_keys=True)


# -- the documented exceptions ----------------------------------------------------------------------------------
# Each: why it is needed, and a predicate matching exactly the statement (and the part of it) it excuses.
def _account_administers_key(st: Statement) -> bool:
    """AWS's default key policy statement: the account (root) may administer the key, which is what lets IAM
    policies grant its use at all. Without it the key can become unmanageable (only AWS support can recover)."""
    return st.kind == KEY_POLICY and st.body.get("Principal") == _ACCOUNT_ROOT and st.actions() == ["kms:*"]


def _key_use_through_a_service(st: Statement) -> bool:
    """DynamoDB's documented key policy for a table encrypted with a customer-managed key needs kms:ReEncrypt*
    and kms:GenerateDataKey*; the statement is fenced by kms:ViaService (and kms:CallerAccount)."""
    return st.kind == KEY_POLICY and st.via_service() is not None


def _decrypt_secure_string_through_ssm(st: Statement) -> bool:
    """The client secret is a SecureString under the AWS-managed aws/ssm key (or one the operator picks): its
    key id is unknown to the template and an alias cannot be a kms:Decrypt Resource. So kms:Decrypt on this
    account's keys, only when SSM asks on our behalf."""
    return (
        st.kind == IDENTITY_POLICY
        and [a.lower() for a in st.actions()] == ["kms:decrypt"]
        and [resource_text(r) for r in st.resources()] == [_ANY_KEY_HERE]
        and st.via_service() == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}
    )


def _provider_segment_of_client_credentials(resource: str) -> bool:
    """<SsmPrefix>/<provider>/client_key|client_id|client_secret: providers are data (docs/architecture.md), so
    the provider is the one path segment left open; the leaf names and the prefix are fixed."""
    return bool(_SSM_CLIENT_CREDENTIAL.match(resource))


def _consumer_account_s_own_rules(st: Statement) -> bool:
    """EventConsumerAccountId's rules on the connection event bus: the consumer names them when it creates them
    (they do not exist when the stack deploys), so the rule name stays open; events:creatorAccount limits the grant
    to rules that account created, never this stack's (README, "Receiving the events in another account")."""
    condition = (st.body.get("Condition") or {}).get("StringEqualsIfExists") or {}
    return (
        st.kind == RESOURCE_POLICY
        and [resource_text(r) for r in st.resources()] == [_CONSUMER_RULES]
        and condition.get("events:creatorAccount") == "${aws:PrincipalAccount}"
    )


# -- walking the template ----------------------------------------------------------------------------------------
def _kind_of(resource_type: str, path: str) -> str:
    if resource_type == "AWS::KMS::Key":
        return KEY_POLICY
    if "AssumeRolePolicyDocument" in path:
        return TRUST_POLICY
    if resource_type in {"AWS::Serverless::Function", "AWS::IAM::Role", "AWS::IAM::Policy",
                         "AWS::IAM::ManagedPolicy", "AWS::Serverless::StateMachine"}:
        return IDENTITY_POLICY
    return RESOURCE_POLICY


def policy_statements(tpl: dict[str, Any]) -> Iterator[Statement]:
    """Every statement of every policy document in the template's resources, wherever it is nested."""

    def walk(node: Any, path: str, resource_type: str) -> Iterator[Statement]:
        if isinstance(node, dict):
            statements = node.get("Statement")
            if isinstance(statements, list | dict) and all(
                isinstance(s, dict) and "Effect" in s for s in _as_list(statements)
            ):
                for i, s in enumerate(_as_list(statements)):
                    yield Statement(f"{path}.Statement[{i}]{'(' + s['Sid'] + ')' if 'Sid' in s else ''}",
                                    _kind_of(resource_type, path), s)
                return
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}", resource_type)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]", resource_type)

    for name, resource in tpl.get("Resources", {}).items():
        yield from walk(resource.get("Properties", {}), f"Resources.{name}", resource["Type"])


def opaque_function_policies(tpl: dict[str, Any]) -> list[str]:
    """SAM policy templates and managed policies hide their grants (some carry `index/*` or `*`)."""
    found = []
    for name, resource in tpl.get("Resources", {}).items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for i, policy in enumerate(_as_list(resource.get("Properties", {}).get("Policies") or [])):
            if not (isinstance(policy, dict) and "Statement" in policy):
                found.append(f"Resources.{name}.Policies[{i}]: {json.dumps(policy, sort_keys=True)[:120]}")
    return found


def action_problems(st: Statement) -> list[str]:
    if st.body.get("Effect") != "Allow" or st.kind == TRUST_POLICY:
        return []
    problems = [f"{st.where}: {key} grants everything else" for key in ("NotAction", "NotResource")
                if key in st.body]
    for action in st.actions():
        if not isinstance(action, str):
            problems.append(f"{st.where}: Action {action!r} is not a plain name")
        elif action == "*" or action.endswith(":*"):
            if not _account_administers_key(st):
                problems.append(f"{st.where}: Action {action!r} grants a whole service")
        elif ("*" in action or "?" in action) and not _key_use_through_a_service(st):
            problems.append(f"{st.where}: Action {action!r} is a pattern; name the actions")
    return problems


def resource_problems(st: Statement) -> list[str]:
    if st.body.get("Effect") != "Allow" or st.kind == TRUST_POLICY:
        return []
    problems = []
    for resource in st.resources():
        text = resource_text(resource)
        if st.kind == KEY_POLICY:
            if text != "*":  # in a key policy "*" means this key; anything else is a mistake
                problems.append(f"{st.where}: a key policy Resource must be \"*\", not {text!r}")
            continue
        if "*" not in text and "?" not in text:
            continue
        if _decrypt_secure_string_through_ssm(st) or _provider_segment_of_client_credentials(text) \
                or _consumer_account_s_own_rules(st):
            continue
        problems.append(f"{st.where}: Resource {text!r} is a wildcard where specific resources exist")
    return problems


def principal_problems(st: Statement) -> list[str]:
    principal = st.body.get("Principal")
    if st.body.get("Effect") != "Allow" or principal is None:
        return []
    problems = [f"{st.where}: NotPrincipal"] if "NotPrincipal" in st.body else []
    values = [principal] if isinstance(principal, str) else [v for vs in principal.values() for v in _as_list(vs)]
    if "*" in values and not st.body.get("Condition"):
        problems.append(f"{st.where}: Principal \"*\" without a Condition: anyone, anywhere")
    return problems


# -- the template ---------------------------------------------------------------------------------------------
def test_the_walk_finds_the_key_policy_and_every_functions_inline_policy():
    statements = list(policy_statements(template()))
    kinds = {st.kind for st in statements}
    assert {KEY_POLICY, IDENTITY_POLICY} <= kinds
    functions = [n for n, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
                 and r["Properties"].get("Policies")]
    for name in functions:
        assert any(st.where.startswith(f"Resources.{name}.") for st in statements), name


def test_no_policy_grants_a_whole_service_or_an_action_pattern():
    problems = [p for st in policy_statements(template()) for p in action_problems(st)]
    assert problems == [], "\n".join(problems)


def test_no_policy_names_a_wildcard_resource_where_a_specific_one_exists():
    problems = [p for st in policy_statements(template()) for p in resource_problems(st)]
    assert problems == [], "\n".join(problems)


def test_no_policy_lets_any_principal_in_unconditionally():
    problems = [p for st in policy_statements(template()) for p in principal_problems(st)]
    assert problems == [], "\n".join(problems)


def test_functions_use_only_inline_statements_we_can_read():
    assert opaque_function_policies(template()) == []


def test_every_documented_exception_still_matches_something_in_the_template():
    statements = list(policy_statements(template()))
    assert any(_account_administers_key(st) for st in statements)
    assert any(_key_use_through_a_service(st) and any("*" in a for a in st.actions()) for st in statements)
    assert any(_decrypt_secure_string_through_ssm(st) for st in statements)
    assert any(_provider_segment_of_client_credentials(resource_text(r)) for st in statements
               for r in st.resources())
    assert any(_consumer_account_s_own_rules(st) for st in statements)


# -- the checks themselves catch what they are for --------------------------------------------------------------
def _doc(kind_resource: str, statement: dict[str, Any], key: str = "PolicyDocument") -> dict[str, Any]:
    if kind_resource == "function":
        props = {"Policies": [{"Statement": [statement]}]}
        rtype = "AWS::Serverless::Function"
    elif kind_resource == "key":
        props = {"KeyPolicy": {"Version": "2012-10-17", "Statement": [statement]}}
        rtype = "AWS::KMS::Key"
    elif kind_resource == "bus":  # one statement, not a policy document
        props = {"EventBusName": "B", "StatementId": "S", "Statement": statement}
        rtype = "AWS::Events::EventBusPolicy"
    else:
        props = {key: {"Version": "2012-10-17", "Statement": [statement]}}
        rtype = "AWS::SQS::QueuePolicy"
    return {"Resources": {"R": {"Type": rtype, "Properties": props}}}


_TABLE = {"Fn::GetAtt": ["T", "Arn"]}


@pytest.mark.parametrize(("where", "statement", "flagged"), [
    ("function", {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": _TABLE}, False),
    ("function", {"Effect": "Allow", "Action": "dynamodb:Get*", "Resource": _TABLE}, True),
    ("function", {"Effect": "Allow", "Action": "dynamodb:*", "Resource": _TABLE}, True),
    ("function", {"Effect": "Allow", "Action": "*", "Resource": _TABLE}, True),
    ("function", {"Effect": "Allow", "NotAction": "iam:*", "Resource": _TABLE}, True),
    ("function", {"Effect": "Deny", "Action": "*", "Resource": "*"}, False),
    ("key", {"Effect": "Allow", "Principal": _ACCOUNT_ROOT, "Action": "kms:*", "Resource": "*"}, False),
    ("key", {"Effect": "Allow", "Principal": {"AWS": {"Fn::GetAtt": ["Role", "Arn"]}}, "Action": "kms:*",
             "Resource": "*"}, True),
    ("key", {"Effect": "Allow", "Principal": {"AWS": {"Fn::GetAtt": ["Role", "Arn"]}},
             "Action": "kms:GenerateDataKey*", "Resource": "*"}, True),
])
def test_the_action_check_catches_broad_actions(where, statement, flagged):
    problems = [p for st in policy_statements(_doc(where, statement)) for p in action_problems(st)]
    assert bool(problems) is flagged, problems


@pytest.mark.parametrize(("where", "statement", "flagged"), [
    ("function", {"Effect": "Allow", "Action": "dynamodb:Query",
                  "Resource": {"Fn::Sub": "${ConnectionsTable.Arn}/index/Due"}}, False),
    ("function", {"Effect": "Allow", "Action": "dynamodb:Query",
                  "Resource": {"Fn::Sub": "${ConnectionsTable.Arn}/index/*"}}, True),
    ("function", {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}, True),
    ("function", {"Effect": "Allow", "Action": "sqs:SendMessage",
                  "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:oauth-*"}}, True),
    ("function", {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Fn::Sub": _ANY_KEY_HERE}}, True),
    ("function", {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": {"Fn::Sub": _ANY_KEY_HERE},
                  "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}}},
     True),
    ("function", {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Fn::Sub": _ANY_KEY_HERE},
                  "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}}},
     False),
    ("function", {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": {"Fn::Sub": (
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SsmPrefix}/*/client_secret")}}, False),
    ("function", {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": {"Fn::Sub": (
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SsmPrefix}/*")}}, True),
    ("key", {"Effect": "Allow", "Principal": _ACCOUNT_ROOT, "Action": "kms:Decrypt", "Resource": "*"}, False),
    ("key", {"Effect": "Allow", "Principal": _ACCOUNT_ROOT, "Action": "kms:Decrypt",
             "Resource": {"Fn::GetAtt": ["OtherKey", "Arn"]}}, True),
    ("queue", {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
               "Resource": "*"}, True),
    ("bus", {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "events:PutRule",
             "Resource": {"Fn::Sub": _CONSUMER_RULES},
             "Condition": {"StringEqualsIfExists": {"events:creatorAccount": "${aws:PrincipalAccount}"}}}, False),
    ("bus", {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "events:PutRule",
             "Resource": {"Fn::Sub": _CONSUMER_RULES}}, True),  # without it: this stack's rules too
    ("bus", {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "events:PutRule",
             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/*"},
             "Condition": {"StringEqualsIfExists": {"events:creatorAccount": "${aws:PrincipalAccount}"}}}, True),
])
def test_the_resource_check_catches_wildcard_resources(where, statement, flagged):
    problems = [p for st in policy_statements(_doc(where, statement)) for p in resource_problems(st)]
    assert bool(problems) is flagged, problems


@pytest.mark.parametrize(("statement", "flagged"), [
    ({"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": _TABLE}, True),
    ({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage", "Resource": _TABLE}, True),
    ({"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}, "Action": "sqs:SendMessage",
      "Resource": _TABLE}, True),
    ({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage", "Resource": _TABLE,
      "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["Rule", "Arn"]}}}}, False),
    ({"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
      "Resource": _TABLE}, False),
])
def test_the_principal_check_catches_anyone(statement, flagged):
    problems = [p for st in policy_statements(_doc("queue", statement)) for p in principal_problems(st)]
    assert bool(problems) is flagged, problems


def test_sam_policy_templates_and_managed_policies_are_reported_as_unreadable():
    tpl = {"Resources": {"F": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "T"}}}, "AmazonDynamoDBFullAccess",
        {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": _TABLE}]},
    ]}}}}
    assert len(opaque_function_policies(tpl)) == 2
