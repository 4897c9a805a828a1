"""template.yaml's function policies as data: which DynamoDB requests a function's role allows, as IAM decides.

Enough of IAM's evaluation for the statements this template writes: Allow statements only (a Deny is refused
here, not ignored), actions and resources by name, and the condition operators StringEquals and StringLike,
with the ForAllValues / ForAnyValue qualifiers and the IfExists suffix. An operator it does not know raises,
so the evaluator never allows by not understanding.

A request's context keys are derived from the request the code really sends (botocore's parameters), as the
DynamoDB developer guide's "Using IAM policy conditions for fine-grained access control" describes them:
- `dynamodb:LeadingKeys`: the partition key value of the item (of every item of a transaction, one at a time);
- `dynamodb:Attributes`: the top-level attribute names the request names: an item's attributes (PutItem), the
  key and every name in the update, condition and projection expressions, and in the legacy parameters
  (AttributeUpdates, Expected, AttributesToGet). Names in a condition are counted too:
  stricter than AWS may be, so a request allowed here is allowed there;
- `dynamodb:Select`: SPECIFIC_ATTRIBUTES with a projection, ALL_ATTRIBUTES without (reads only);
- `dynamodb:ReturnValues`: the request's ReturnValues, when it sets one.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from local.cfn import template

# Which logical table each environment variable names (the handlers find their tables through them).
TABLES = {"CONNECTIONS_TABLE": "ConnectionsTable", "FLOWS_TABLE": "FlowsTable"}
# Each transaction part is authorised as the single-item action it is.
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem"}
_NAME = re.compile(r"#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAMES = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN", "attribute_exists",
              "attribute_not_exists", "attribute_type", "begins_with", "contains", "size", "if_not_exists",
              "list_append"}


@dataclass(frozen=True)
class Request:
    """One action on one resource (`ConnectionsTable`, `ConnectionsTable/index/ByAccount`), with its context."""

    action: str  # dynamodb:UpdateItem
    resource: str
    context: dict[str, list[str]] = field(default_factory=dict)


def role_statements(function: str, conditions: dict[str, bool]) -> list[dict[str, Any]]:
    """The function's inline policy statements with every Fn::If decided by `conditions` (template condition
    name -> value). Raises KeyError for a condition not given, ValueError for a statement it cannot judge."""
    policies = template()["Resources"][function]["Properties"].get("Policies", [])
    statements = []
    for policy in policies:
        if not isinstance(policy, dict) or set(policy) != {"Statement"}:
            raise ValueError(f"{function}: only inline statements can be judged here: {policy}")
        for statement in _resolve(policy["Statement"], conditions):
            if statement.get("Effect") != "Allow":
                raise ValueError(f"{function}: a Deny needs a real evaluator: {statement}")
            statements.append(statement)
    return statements


def allows(statements: list[dict[str, Any]], request: Request) -> bool:
    """Whether some statement allows `request` (IAM: no Deny here, so one matching Allow decides)."""
    return any(_matches(statement, request) for statement in statements)


def requests_of(operation: str, params: dict[str, Any]) -> Iterator[Request]:
    """The requests IAM authorises for one DynamoDB API call (`operation` as botocore names it: UpdateItem,
    TransactWriteItems...), from its parameters. Raises ValueError for a table this template does not hold."""
    if operation == "TransactWriteItems":
        for part in params["TransactItems"]:
            ((kind, inner),) = part.items()
            yield from requests_of(TRANSACT_ACTIONS[kind], inner)
        return
    table = _table(params["TableName"])
    names = params.get("ExpressionAttributeNames", {})
    context: dict[str, list[str]] = {}
    if operation == "Query":
        resource = f"{table}/index/{params['IndexName']}" if params.get("IndexName") else table
        hash_value = re.match(r"\s*[#\w]+\s*=\s*(:\w+)", params["KeyConditionExpression"])
        assert hash_value, params["KeyConditionExpression"]
        context["dynamodb:LeadingKeys"] = [_scalar(params["ExpressionAttributeValues"][hash_value.group(1)])]
        key: dict[str, Any] = {}
    else:
        resource = table
        key = params["Item"] if operation == "PutItem" else params["Key"]
        context["dynamodb:LeadingKeys"] = [_scalar(key[_partition_key(table)])]
    # The legacy parameters name attributes too (a flaw chooses the form): counted as IAM counts them.
    legacy = set(params.get("AttributeUpdates", {})) | set(params.get("Expected", {})) \
        | set(params.get("AttributesToGet", [])) | set(params.get("QueryFilter", {}))
    for unknown in ("ScanFilter", "KeyConditions"):
        if unknown in params:
            raise ValueError(f"a parameter not judged here: {unknown}")
    if operation in ("GetItem", "Query"):
        projected = "ProjectionExpression" in params or "AttributesToGet" in params
        context["dynamodb:Select"] = [params.get("Select") or ("SPECIFIC_ATTRIBUTES" if projected
                                                                else "ALL_ATTRIBUTES")]
        if projected:
            context["dynamodb:Attributes"] = sorted(set(key) | _names(params.get("ProjectionExpression"), names)
                                                    | legacy)
    else:
        attributes = set(key) | _names(params.get("UpdateExpression"), names) \
            | _names(params.get("ConditionExpression"), names) | legacy
        context["dynamodb:Attributes"] = sorted(attributes)
    if params.get("ReturnValues"):
        context["dynamodb:ReturnValues"] = [params["ReturnValues"]]
    yield Request(f"dynamodb:{operation}", resource, context)


# -- internals ---------------------------------------------------------------------------------------------
def _resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """Fn::If decided, AWS::NoValue dropped (from lists and maps), everything else as written."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return _resolve(when_true if conditions[name] else when_false, conditions)
        resolved = {k: _resolve(v, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v != _NO_VALUE}
    if isinstance(value, list):
        return [r for r in (_resolve(v, conditions) for v in value) if r != _NO_VALUE]
    return value


_NO_VALUE = {"Ref": "AWS::NoValue"}


def _resource_name(value: Any) -> str:
    """`ConnectionsTable` for !GetAtt ConnectionsTable.Arn, `ConnectionsTable/index/Due` for its Sub form; other
    resources (queues, keys, parameters) as their text, which no DynamoDB request matches."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        target = target if isinstance(target, list) else target.split(".")
        return target[0] if target[1] == "Arn" else ".".join(target)
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return re.sub(r"^\$\{(\w+)\.Arn\}", r"\1", value["Fn::Sub"])
    return str(value)


def _matches(statement: dict[str, Any], request: Request) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if not any(fnmatch.fnmatchcase(request.action.lower(), a.lower()) for a in actions):
        return False
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    if not any(_resource_name(r) == request.resource for r in resources):
        return False
    return _condition_holds(statement.get("Condition") or {}, request.context)


def _condition_holds(condition: dict[str, Any], context: dict[str, list[str]]) -> bool:
    """Every operator's every key must hold (AND); any of a key's values may match (OR)."""
    for operator, tests in condition.items():
        qualifier, _, base = operator.rpartition(":")
        if_exists = base.endswith("IfExists")
        base = base.removesuffix("IfExists")
        match = {"StringEquals": lambda v, p: v == p, "StringLike": fnmatch.fnmatchcase}.get(base)
        if match is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise ValueError(f"condition operator not judged here: {operator}")
        for key, wanted in tests.items():
            patterns = wanted if isinstance(wanted, list) else [wanted]
            values = context.get(key)
            if qualifier == "ForAllValues":  # true for an absent key or an empty set (IAM's documented pitfall)
                holds = all(any(match(v, p) for p in patterns) for v in values or [])
            elif qualifier == "ForAnyValue":
                holds = any(any(match(v, p) for p in patterns) for v in values or [])
            elif values is None:
                holds = if_exists
            else:
                holds = all(any(match(v, p) for p in patterns) for v in values)
            if not holds:
                return False
    return True


def _table(name: str) -> str:
    for variable, logical in TABLES.items():
        if os.environ.get(variable) == name:
            return logical
    raise ValueError(f"a table this template does not hold: {name}")


def _partition_key(table: str) -> str:
    schema = template()["Resources"][table]["Properties"]["KeySchema"]
    (key,) = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
    return key


def _scalar(value: dict[str, Any]) -> str:
    ((_, raw),) = value.items()
    return str(raw)


def _names(expression: str | None, names: dict[str, str]) -> set[str]:
    """Top-level attribute names in an expression: placeholders resolved, paths cut at `.` and `[`."""
    if not expression:
        return set()
    found = set()
    for token in _NAME.findall(re.sub(r":[A-Za-z0-9_]+", " ", expression)):
        if token in _NOT_NAMES:
            continue
        found.add(names[token] if token.startswith("#") else token)
    return found
