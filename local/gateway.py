"""A local API Gateway (HTTP API, payload 2.0) as a WSGI app: routes and auth come from template.yaml.

Each request becomes the event API Gateway would send, goes to the route's handler in-process, and the
handler's answer becomes the HTTP response. AWS_IAM routes need a valid SigV4 signature by a local identity
(local/sigv4.py); unsigned or badly signed requests get 403 before any function runs, as in AWS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from local import apigw, sigv4

MAX_BODY = 10 * 1024 * 1024  # HTTP APIs' payload quota


class Gateway:
    def __init__(self, *, domain: str = "127.0.0.1:3000", region: str = "us-east-1",
                 identities: dict[str, sigv4.LocalIdentity] | None = None) -> None:
        self.domain = domain
        self.region = region
        self.identities = identities

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def handle(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO") or "/"
        raw_query = environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY:
            return _json(413, {"message": "Request Entity Too Large"})
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            route, _ = apigw.find_route(method, path)
        except LookupError:
            return _json(404, {"message": "Not Found"})

        caller = None
        if route.auth == "AWS_IAM":
            url = f"http://{headers.get('host', self.domain)}{path}" + (f"?{raw_query}" if raw_query else "")
            caller = sigv4.verify(method, url, headers, body, region=self.region, identities=self.identities)
            if caller is None:
                return _json(403, {"message": "Forbidden"})

        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()] or None
        try:
            text: str | bytes | None = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            text = body  # API Gateway base64-encodes what is not text
        _, event = apigw.http_event(method, path, raw_query=raw_query, headers=headers, cookies=cookies,
                                    body=text, caller_arn=caller, domain=self.domain)
        try:
            answer = route.load_handler()(event, apigw.LambdaContext(route.function))
        except Exception:  # noqa: BLE001 - what API Gateway does when the function fails
            return _json(500, {"message": "Internal Server Error"})
        return _from_lambda(answer)


def _from_lambda(answer: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    status = int(answer.get("statusCode", 200))
    headers = [(k, v) for k, v in (answer.get("headers") or {}).items()]
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers += [(name, v) for v in values]
    headers += [("Set-Cookie", c) for c in answer.get("cookies") or []]
    body = answer.get("body") or ""
    raw = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode("utf-8")
    return status, headers, raw


def _json(status: int, data: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(data).encode()
