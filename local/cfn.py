"""Read template.yaml as data: CloudFormation short tags become their long JSON forms (via cfn-lint's decoder)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, intrinsics in their long form (`!GetAtt A.B` is `["A", "B"]`).

    Read by the decoder the `cfn-lint` run in the lint test uses, so both see the same template; unlike a bare
    YAML load it refuses a duplicate key instead of keeping the last one. A template it cannot parse raises
    ValueError with cfn-lint's findings.
    """
    # Imported here: `import cfnlint` loads all its rules (sympy included), about 2 s, and many importers of this
    # module only want ROOT.
    from cfnlint.decode import decode_str

    decoded, problems = decode_str(Path(path).read_text(encoding="utf-8"))
    if problems or not isinstance(decoded, dict):
        findings = "; ".join(f"line {p.linenumber}: {p.message}" for p in problems) or "not a mapping"
        raise ValueError(f"{path} is not a readable template: {findings}")
    return _plain(decoded)


def _plain(node: Any) -> Any:
    # cfn-lint hands back str/dict/list subclasses carrying source positions (and a dict.get of their own);
    # callers compare, hash and json.dumps the template, so give them the plain types.
    if isinstance(node, dict):
        return {_plain(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, str):
        return str(node)
    return node


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
