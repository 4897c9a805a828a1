"""Every IAM policy example in the README, evaluated with IAM's wildcard rules against every route of the
template's HTTP API: each example allows exactly the routes pinned here."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from local.cfn import ROOT, http_routes

pytestmark = pytest.mark.unit

# The README's examples name this API, account, region and stage.
API = "arn:aws:execute-api:eu-west-1:123456789012:abc123/$default"
# A request's ARN carries the path as requested: each path parameter filled with a value like the real ones.
SAMPLE_VALUES = {"connection_id": "con_v5kxitzfzikpm6z75y424h33jvfkl3xb", "owner_id": "user-42", "provider": "tiktok",
                 "operation_id": "op_Xk3r9QmZt1vB7nYc2LpD4sWe", "account_id": "-000OJ0b1cO6yFjMw0Ty8uR5Ja4XzQZ8bC2v"}

# Policy (the Sid of its first statement) -> exactly the routes it allows.
ALLOWED = {
    "PostingServiceReadsTokens": {("GET", "/connections/{connection_id}/token")},
    "AccountServiceManagesConnections": {
        ("POST", "/connect-sessions"),
        ("POST", "/connections/claims"),  # claims each connect for its logged-in owner
        ("GET", "/connections"),
        ("GET", "/connections/{connection_id}"),
        ("GET", "/connections/{connection_id}/channels"),  # names and ids only: no token
        ("DELETE", "/connections/{connection_id}"),
        ("GET", "/operations/{operation_id}"),  # follows its disconnects
    },
    "DataProtectionErasesOwners": {("DELETE", "/owners/{owner_id}/connections"),
                                   ("DELETE", "/providers/{provider}/accounts/{account_id}/connections"),
                                   ("GET", "/operations/{operation_id}")},
}


def iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM Resource or Action pattern as a regex: `*` is any run of characters (`/` and `:` included), `?`
    exactly one, everything else itself."""
    translated = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(translated, re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    unsupported = {"NotAction", "NotResource", "Condition", "NotPrincipal", "Principal"} & set(statement)
    assert not unsupported, f"{statement.get('Sid')}: this check does not evaluate {sorted(unsupported)}"
    # Action names are case-insensitive, resource ARNs are not.
    actions = [iam_pattern(a.lower()) for a in _as_list(statement["Action"])]
    resources = [iam_pattern(r) for r in _as_list(statement["Resource"])]
    return any(a.fullmatch(action.lower()) for a in actions) and any(r.fullmatch(resource) for r in resources)


def allows(policy: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's evaluation for one identity policy: an explicit Deny wins, otherwise some Allow must apply."""
    statements = _as_list(policy["Statement"])
    if any(s["Effect"] == "Deny" and _applies(s, action, resource) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, action, resource) for s in statements)


def route_arn(method: str, path: str) -> str:
    return f"{API}/{method}{re.sub(r'\{(\w+)\}', lambda m: SAMPLE_VALUES[m.group(1)], path)}"


@cache
def readme_policies() -> dict[str, dict[str, Any]]:
    """Every fenced JSON block of the README that mentions execute-api, by the Sid of its first statement."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    policies = {}
    for block in re.findall(r"^```json\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if "execute-api" not in block:
            continue
        policy = json.loads(block)
        sid = _as_list(policy["Statement"])[0]["Sid"]
        assert sid not in policies, f"two README policies start with Sid {sid}"
        policies[sid] = policy
    return policies


def _routes() -> set[tuple[str, str]]:
    return {(r["method"], r["path"]) for r in http_routes()}


def test_the_readme_policies_are_exactly_the_ones_pinned_here():
    assert set(readme_policies()) == set(ALLOWED)
    for sid, policy in readme_policies().items():
        assert policy["Version"] == "2012-10-17", sid
        assert "${" not in json.dumps(policy), f"{sid}: policy variables are not evaluated here"


@pytest.mark.parametrize("sid", sorted(ALLOWED))
def test_each_readme_policy_allows_exactly_its_routes(sid):
    policy = readme_policies()[sid]
    allowed = {route for route in _routes() if allows(policy, "execute-api:Invoke", route_arn(*route))}
    assert allowed == ALLOWED[sid], f"extra {sorted(allowed - ALLOWED[sid])}, missing {sorted(ALLOWED[sid] - allowed)}"


def test_only_the_posting_service_reads_tokens():
    token_route = route_arn("GET", "/connections/{connection_id}/token")
    readers = {sid for sid, policy in readme_policies().items() if allows(policy, "execute-api:Invoke", token_route)}
    assert readers == {"PostingServiceReadsTokens"}


def test_every_pinned_route_exists_in_the_template():
    for sid, routes in ALLOWED.items():
        assert routes <= _routes(), (sid, sorted(routes - _routes()))


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        # The issue: `*` crosses "/", so one segment's wildcard also grants the routes below it.
        (f"{API}/GET/connections/*", route_arn("GET", "/connections/{connection_id}/token"), True),
        (f"{API}/GET/connections/*", route_arn("GET", "/connections/{connection_id}"), True),
        (f"{API}/GET/connections/*", route_arn("GET", "/connections"), False),
        (f"{API}/GET/connections/*/token", route_arn("GET", "/connections/{connection_id}/token"), True),
        (f"{API}/*/connections", route_arn("GET", "/connections"), True),
        ("arn:aws:execute-api:*:*:abc123/*", route_arn("DELETE", "/owners/{owner_id}/connections"), True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "a/c", True),
        ("a.c", "abc", False),  # regex characters are themselves
        ("$default/GET", "$default/GET", True),
        ("abc", "ABC", False),  # resources are case-sensitive
    ],
)
def test_iam_wildcards(pattern, value, matches):
    assert bool(iam_pattern(pattern).fullmatch(value)) is matches


def test_a_deny_wins_over_an_allow_and_actions_ignore_case():
    policy = {"Statement": [
        {"Effect": "Allow", "Action": "Execute-Api:Invoke", "Resource": f"{API}/GET/connections/*"},
        {"Effect": "Deny", "Action": "execute-api:*", "Resource": f"{API}/GET/connections/*/token"},
    ]}
    assert allows(policy, "execute-api:Invoke", route_arn("GET", "/connections/{connection_id}"))
    assert not allows(policy, "execute-api:Invoke", route_arn("GET", "/connections/{connection_id}/token"))
    assert not allows(policy, "execute-api:Invoke", route_arn("POST", "/connect-sessions"))
    assert not allows(policy, "execute-api:InvalidateCache", route_arn("GET", "/connections/{connection_id}"))
