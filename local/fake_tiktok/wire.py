"""What the simulated TikTok's parts share on the wire: answers as plain values, TikTok's JSON, HTML and redirect
answers and log ids, and strict parsing of query strings and form bodies."""

import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Response:
    """One HTTP answer as a value: the socket server sends it, an in-process transport hands it over."""

    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def json(self) -> Any:
        return json.loads(self.body)


class BadRequest(Exception):
    """A request too malformed to read: a repeated parameter, the wrong Content-Type, a body that is not UTF-8."""


def log_id() -> str:
    # TikTok log ids are timestamp-prefixed hex; support asks for them, so clients must keep them.
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def json_response(status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def html_response(status: int, page: str) -> Response:
    return Response(status, page.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


def redirect(location: str) -> Response:
    return Response(302, b"", {"Location": location, "Cache-Control": "no-store"})


def single_values(query: str) -> dict[str, str]:
    """Parse a query or form body; a repeated parameter is a malformed request (RFC 6749 section 3.1)."""
    parsed = parse_qs(query, keep_blank_values=True)
    repeated = [name for name, values in parsed.items() if len(values) > 1]
    if repeated:
        raise BadRequest(f"parameter repeated: {', '.join(repeated)}")
    return {name: values[0] for name, values in parsed.items()}


class OAuthErrors:
    """Renders the token and revoke endpoints' error answer, counting each one in the stats.

    One renderer for both the endpoints' own refusals and injected faults, so `token_errors` counts every
    error answer whatever caused it, and `status` (FakeTikTok's error_status) applies to all of them.
    """

    def __init__(self, stats: Counter[str], status: int):
        self.stats = stats
        self.status = status  # the HTTP status of an error answer that does not set its own

    def __call__(self, error: str, description: str, status: int | None = None) -> Response:
        self.stats["token_errors"] += 1
        log = log_id()
        return json_response(
            self.status if status is None else status,
            {"error": error, "error_description": description, "log_id": log},
            {"X-Tt-Logid": log},
        )


def userinfo_error(status: int, code: str, message: str) -> Response:
    """The user-info endpoint's error shape, which differs from the token endpoint's: an `error` object."""
    return json_response(status, {"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}})
