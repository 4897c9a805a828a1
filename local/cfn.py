"""Read template.yaml as data: CloudFormation short tags become their long JSON forms."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

_SCALAR_TAGS = {"Ref": "Ref", "Condition": "Condition"}
_FN_TAGS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAtt", "GetAZs", "If", "ImportValue",
    "Join", "Not", "Or", "Select", "Split", "Sub", "Transform",
)


class _Loader(yaml.SafeLoader):
    pass


def _construct(name: str):
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":  # !GetAtt A.B is shorthand for [A, B]
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return build


for _tag, _name in _SCALAR_TAGS.items():
    _Loader.add_constructor(f"!{_tag}", _construct(_name))
for _tag in _FN_TAGS:
    _Loader.add_constructor(f"!{_tag}", _construct(f"Fn::{_tag}"))


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, intrinsics in their long form."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


@cache
def template() -> dict[str, Any]:
    return load()


def resources_of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template()["Resources"].items() if res["Type"] == kind}


def table_definition(logical_id: str, table_name: str) -> dict[str, Any]:
    """CreateTable arguments for one of the template's tables, as the template defines it.

    Tests and the local stack build their tables through this, so code and template cannot drift.
    """
    props = template()["Resources"][logical_id]["Properties"]
    args: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return args


def table_ttl_attribute(logical_id: str) -> str | None:
    spec = template()["Resources"][logical_id]["Properties"].get("TimeToLiveSpecification")
    return spec["AttributeName"] if spec and spec.get("Enabled") else None


def http_routes() -> list[dict[str, Any]]:
    """Every HttpApi route in the template: function, method, path, auth."""
    routes = []
    for name, res in resources_of_type("AWS::Serverless::Function").items():
        props = res["Properties"]
        for event in (props.get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            ev = event["Properties"]
            auth = (ev.get("Auth") or {}).get("Authorizer", "NONE")
            routes.append({
                "function": name,
                "handler": props["Handler"],
                "code_uri": props["CodeUri"],
                "method": ev["Method"].upper(),
                "path": ev["Path"],
                "auth": auth,
            })
    return routes
