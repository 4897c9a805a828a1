"""HTTP requests in: API Gateway HTTP API (payload 2.0) query strings, bodies, cookies, caller and base URL."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from ..domain.errors import InvalidInput


def parse_query(raw: str | None, *, max_length: int = 4096) -> dict[str, list[str]]:
    """Decode a raw query string exactly once. Repeated keys are kept so callers can refuse them."""
    if raw and len(raw) > max_length:
        raise InvalidInput("The query string is too long.", code="too_large", field="query")
    try:
        # Strict UTF-8: a code decoded with replacement characters would reach the provider mangled.
        pairs = parse_qsl(raw or "", keep_blank_values=True, max_num_fields=50, encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The query string is malformed (too many parameters, or not UTF-8).",
                           field="query") from exc
    result: dict[str, list[str]] = {}
    for key, value in pairs:
        result.setdefault(key, []).append(value)
    return result


def request_cookies(cookie_list: list[str] | None) -> dict[str, str]:
    """HTTP API payload 2.0 gives cookies as "name=value" strings. The first of a repeated name wins."""
    cookies: dict[str, str] = {}
    for entry in cookie_list or []:
        for part in entry.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name and name not in cookies:
                cookies[name] = value
    return cookies


def raw_body(event: dict[str, Any], limit: int) -> bytes:
    """The request body exactly as sent (API Gateway base64-encodes what is not text), refused when too large
    or not valid base64. Never decoded as text here: a non-UTF-8 body is the parser's 400, not a crash."""
    body = event.get("body") or ""
    if len(body) > limit * 2:
        raise InvalidInput("The body is too large.", code="too_large", field="body")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("The body is not valid base64.", field="body") from exc
    return body.encode("utf-8", "surrogateescape")


def base_url(configured: str, request_context: dict[str, Any]) -> str:
    """The configured public base URL, else the API's own domain (stable for the API's lifetime)."""
    if configured:
        return configured
    domain = request_context.get("domainName") or ""
    stage = request_context.get("stage") or "$default"
    return f"https://{domain}" + ("" if stage == "$default" else f"/{stage}")


def single_value(query: dict[str, list[str]], name: str) -> str | None:
    """One value of a JSON route's query parameter, refusing repeats (API Gateway's own map would join them
    with commas). Raises InvalidInput."""
    values = query.get(name)
    if values and len(values) > 1:
        raise InvalidInput(f"{name} may be given once.", field=name)
    return values[0] if values else None


def caller_arn(request_context: dict[str, Any]) -> str | None:
    """The IAM caller's ARN on an AWS_IAM route (for log lines; audit records read it in audit.py), or None."""
    iam = (request_context.get("authorizer") or {}).get("iam") or {}
    return iam.get("userArn")


def prefers_json(headers: dict[str, str] | None) -> bool:
    """Whether the caller asks for JSON rather than a page: its Accept header names `application/json` and not
    `text/html` (a browser names both kinds, HTML first)."""
    accept = next((v for k, v in (headers or {}).items() if k.lower() == "accept"), "") or ""
    return "application/json" in accept and "text/html" not in accept
