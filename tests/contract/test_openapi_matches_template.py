"""openapi.yaml describes exactly the template's JSON routes, with the right auth, as a valid OpenAPI 3.0 document."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator

from local import cfn

pytestmark = pytest.mark.unit

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"
BROWSER_ROUTES = {("GET", "/connect/{provider}"), ("GET", "/callback/{provider}")}  # HTML and redirects
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict:
    with open(DOCUMENT, encoding="utf-8") as f:
        return yaml.safe_load(f)


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): operation for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS}


def template_routes() -> dict[tuple[str, str], str]:
    return {(route["method"], route["path"]): route["auth"] for route in cfn.http_routes()}


def test_the_document_is_a_valid_openapi_3_0_1_document(document):
    assert document["openapi"] == "3.0.1"  # what API Gateway imports
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV30SpecValidator(document).iter_errors()]
    assert errors == []


def test_schemathesis_loads_every_operation(document):
    import schemathesis

    schema = schemathesis.openapi.from_path(DOCUMENT)
    labels = set()
    for result in schema.get_all_operations():
        labels.add(result.ok().label)  # .ok() raises on an operation schemathesis cannot use
    assert labels == {f"{method} {path}" for method, path in operations(document)}


def test_the_document_has_every_json_route_of_the_template_and_nothing_else(document):
    routes = set(template_routes())
    assert routes >= BROWSER_ROUTES  # if these move, this test must be revisited
    assert set(operations(document)) == routes - BROWSER_ROUTES


def test_every_iam_route_requires_sigv4_and_the_public_ones_require_nothing(document):
    assert document.get("security") in (None, [])  # no document-wide default to inherit by mistake
    documented = operations(document)
    for key, auth in template_routes().items():
        if key in BROWSER_ROUTES:
            continue
        if auth == "AWS_IAM":
            assert documented[key].get("security") == [{"sigv4": []}], key
        else:
            assert auth == "NONE", key
            assert documented[key].get("security") == [], key


def test_the_sigv4_scheme_is_the_one_api_gateway_understands(document):
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert {k: scheme.get(k) for k in ("type", "name", "in", "x-amazon-apigateway-authtype")} == {
        "type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4",
    }


SIGNED_BY_THE_PROVIDER = {("POST", "/webhooks/{provider}"), ("POST", "/deauthorize/{provider}"),
                          ("POST", "/data-deletion/{provider}")}


def test_iam_routes_document_api_gateways_403_and_the_provider_callbacks_their_401(document):
    for (method, path), operation in operations(document).items():
        responses = operation["responses"]
        if operation["security"]:
            assert responses["403"] == {"$ref": "#/components/responses/Forbidden"}, (method, path)
            assert "401" not in responses, (method, path)
            continue
        assert "403" not in responses, (method, path)
        if (method, path) in SIGNED_BY_THE_PROVIDER:
            assert responses["401"] == {"$ref": "#/components/responses/Unauthorized"}, (method, path)
        else:  # the data-deletion status: its unguessable code is what finds it
            assert (method, path) == ("GET", "/data-deletion/{provider}") and "401" not in responses
    webhook = operations(document)[("POST", "/webhooks/{provider}")]
    assert "TikTok-Signature" in {p.get("name") for p in webhook["parameters"]}


def test_every_path_parameter_of_the_template_is_documented(document):
    import re

    for (method, path), operation in operations(document).items():
        item = document["paths"][path]
        declared = {p["name"] for p in item.get("parameters", []) + operation.get("parameters", [])
                    if "$ref" not in p and p["in"] == "path"}
        declared |= {"connection_id" for p in item.get("parameters", []) + operation.get("parameters", [])
                     if p.get("$ref") == "#/components/parameters/ConnectionId"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_the_connection_schema_has_every_field_connection_view_returns(document):
    """The view's keys, read from the code itself: a new field must be documented."""
    import ast
    import inspect

    from oauth_keeper.usecases import connections

    tree = ast.parse(inspect.getsource(connections.connection_view))
    returned = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Return))
    keys = {k.value for k in returned.keys}
    nested = next(v for k, v in zip(returned.keys, returned.values, strict=True) if k.value == "last_refresh")
    schema = document["components"]["schemas"]["Connection"]
    assert set(schema["properties"]) == keys
    assert set(schema["required"]) == keys
    last_refresh = schema["properties"]["last_refresh"]
    assert set(last_refresh["properties"]) == set(last_refresh["required"]) == {k.value for k in nested.keys}


def test_the_connect_session_request_schema_matches_the_fields_the_handler_accepts(document):
    from oauth_keeper.domain import validation

    schema = document["components"]["schemas"]["ConnectSessionRequest"]
    assert set(schema["properties"]) == validation._CONNECT_FIELDS
    assert schema["additionalProperties"] is False
    assert schema["properties"]["mode"]["enum"] == list(validation.MODES)
    owner_id = document["components"]["schemas"]["OwnerId"]
    assert owner_id["pattern"] == validation.OWNER_ID.pattern


def test_query_parameter_bounds_match_the_handlers(document):
    from oauth_keeper.usecases import connections, tokens

    def param(path: str, name: str) -> dict:
        return next(p for p in document["paths"][path]["get"]["parameters"] if p.get("name") == name)["schema"]

    token = param("/connections/{connection_id}/token", "min_valid_seconds")
    assert (token["minimum"], token["maximum"], token["default"]) == (0, tokens.MAX_MIN_VALID, tokens.DEFAULT_MIN_VALID)
    limit = param("/connections", "limit")
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, connections.PAGE_SIZE)
