"""A local API Gateway (HTTP API, payload 2.0) as a WSGI app: routes and auth come from template.yaml.

Each request becomes the event API Gateway would send, goes to the route's handler in-process, and the
handler's answer becomes the HTTP response. AWS_IAM routes need a valid SigV4 signature by a local identity
(local/sigv4.py); unsigned or badly signed requests get 403 before any function runs, as in AWS, and the gateway
logs why (never the signature or a secret). The signature covers the path as the client sent it, percent-escapes
included: a WSGI server passes it as RAW_URI (werkzeug does); in-process callers use `transport()`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx

from local import apigw, sigv4

MAX_BODY = 10 * 1024 * 1024  # HTTP APIs' payload quota
_logger = logging.getLogger(__name__)


class Gateway:
    def __init__(self, *, domain: str = "127.0.0.1:3000", region: str = sigv4.LOCAL_REGION,
                 identities: dict[str, sigv4.LocalIdentity] | None = None,
                 log: Callable[[str], None] | None = None, now: Callable[[], dt.datetime] | None = None) -> None:
        """`log` gets one line per refused signature, saying why (default: this module's logger, at WARNING);
        `now` is the clock signatures are checked against (default: the system's, as AWS's)."""
        self.domain = domain
        self.region = region
        self.identities = identities
        self.log = log or _logger.warning
        self.now = now

    def transport(self) -> httpx.WSGITransport:
        """An httpx transport that calls this gateway in-process, handing it the path as sent (RAW_URI)."""
        return _RawPathTransport(app=self)

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
            url = f"http://{headers.get('host', self.domain)}{_path_as_sent(environ)}" + (
                f"?{raw_query}" if raw_query else "")
            verdict = sigv4.check(method, url, headers, body, region=self.region, identities=self.identities,
                                  now=self.now() if self.now else None)
            if verdict.caller_arn is None:
                self.log(f"SigV4 refused {method} {path}: {verdict.refused}")
                return _json(403, {"message": "Forbidden"})
            caller = verdict.caller_arn

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


def _path_as_sent(environ: dict[str, Any]) -> str:
    """The request's path before percent-decoding: the one its signature covers. PATH_INFO is decoded (WSGI): without
    RAW_URI (or REQUEST_URI) it stands in, which matches a signer only when the path held no escape."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return urlsplit(raw).path if "://" in raw.split("?", 1)[0] else raw.split("?", 1)[0]
    return environ.get("PATH_INFO") or "/"


class _RawPathTransport(httpx.WSGITransport):
    """httpx's WSGI transport, plus RAW_URI as WSGI servers set it (httpx passes only the decoded PATH_INFO)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        app, raw = self.app, request.url.raw_path.decode("ascii")

        def with_raw_uri(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            return app({**environ, "RAW_URI": raw}, start_response)

        return httpx.WSGITransport(app=with_raw_uri, raise_app_exceptions=self.raise_app_exceptions,
                                   script_name=self.script_name, remote_addr=self.remote_addr,
                                   wsgi_errors=self.wsgi_errors).handle_request(request)


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
