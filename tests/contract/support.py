"""openapi.yaml as a schemathesis schema, and calling the local API Gateway the way its callers do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local import sigv4
from local.gateway import Gateway

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"
BASE = "http://127.0.0.1:3000"  # Gateway()'s default domain: the Host the signature covers
MAX_EXAMPLES = 30

# No 5xx; a documented status code, content type, body (schema) and headers.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True, database="none",
)


@dataclass
class Seeded:
    """What the current test's world holds. The generation hooks read it while they draw."""

    owner_id: str = ""
    by_status: dict[str, str] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # pending grants' claim codes, by what they are for

    @property
    def connection_ids(self) -> list[str]:
        return list(self.by_status.values())

    def fill(self, *, owner_id: str, by_status: dict[str, str]) -> None:
        self.owner_id, self.by_status = owner_id, dict(by_status)

    def clear(self) -> None:
        self.fill(owner_id="", by_status={})


SEEDED = Seeded()


def op(method: str, path: str):
    return schema[path][method]


def iam(operation) -> bool:
    """The document's own word: this operation needs the sigv4 scheme (the webhook says `security: []`)."""
    return bool(operation.definition.raw.get("security"))


def send(case: schemathesis.Case, *, sign: bool = True) -> httpx.Response:
    """The request schemathesis built for `case`, through the local gateway; signed (SigV4, the local identity)
    when the route is an IAM one, as the app's backend signs it. Whatever schemathesis generated for the
    `Authorization` header (the sigv4 scheme is an apiKey header to it) is replaced by the signature."""
    kwargs = case.as_transport_kwargs(base_url=BASE)
    prepared = requests.Request(
        method=kwargs["method"], url=kwargs["url"], headers=kwargs.get("headers"), params=kwargs.get("params"),
        json=kwargs.get("json"), data=kwargs.get("data"),
    ).prepare()
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("authorization", "connection")}
    if not (sign and iam(case.operation)):
        return through_gateway(case.method, prepared.url, body, headers)
    signed_over = {k: v for k, v in headers.items() if k.lower() == "content-type"}
    return through_gateway(case.method, prepared.url, body,
                           {**headers, **sigv4.sign(case.method, prepared.url, body, headers=signed_over)})


def through_gateway(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(transport=Gateway().transport(), base_url=BASE) as client:
        return client.request(method, url, content=body, headers=headers)
