"""Checks on what callers send: JSON bodies, connect requests, return_to URLs, numbers, cursors. Never stored bad."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidInput
from .providers import SCOPE_PATTERN, ProviderProfile

MAX_BODY_BYTES = 8 * 1024
MAX_URL_LENGTH = 2048
MAX_SCOPES = 20
OWNER_ID_RULE = "owner_id must be 1 to 128 letters, digits or ._~:@!$&'()*+,;=- characters."
# UUIDs, emails, "tenant:user": the characters a URL path segment carries as they are (RFC 3986 pchar without
# %), so every owner id also works in DELETE /owners/{owner_id}/connections.
OWNER_ID = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,128}$")
ACCOUNT_ID_RULE = "account_id must be 1 to 128 visible ASCII characters."
_FORBIDDEN_IN_URL = re.compile(r"[^\x21-\x7e]|\\")  # only visible ASCII (an IRI must be percent-encoded)
_CONNECT_FIELDS = {"owner_id", "provider", "return_to", "scopes", "connection_id", "mode"}
MODES = ("redirect", "popup")
MAX_CONNECTION_ID = 64


@dataclass(frozen=True)
class ConnectRequest:
    owner_id: str
    provider: str
    return_to: str
    scopes: tuple[str, ...] | None
    connection_id: str | None = None  # an existing connection to upgrade (more scopes)
    mode: str = "redirect"  # popup: the callback posts the result to window.opener and closes itself


def parse_json_object(body: str | bytes | None) -> dict[str, Any]:
    if body is None or body == "" or body == b"":
        raise InvalidInput("A JSON object body is required.", field="body")
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"The body must be at most {MAX_BODY_BYTES} bytes.", code="too_large", field="body")
    try:
        data = json.loads(raw, object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The body is not valid JSON (or repeats a key).", field="body") from exc
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.", field="body")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key is refused: a proxy reading the first and us the last would see different owners."""
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("repeated key")
    return data


def parse_connect_request(data: dict[str, Any]) -> ConnectRequest:
    unknown = sorted(set(data) - _CONNECT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown field {unknown[0]!r}.", code="unknown_field", field=unknown[0])
    owner_id = data.get("owner_id")
    if not isinstance(owner_id, str) or not OWNER_ID.fullmatch(owner_id):
        raise InvalidInput(OWNER_ID_RULE, field="owner_id")
    provider = data.get("provider")
    if not isinstance(provider, str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", provider):
        raise InvalidInput("provider must be a provider name such as 'tiktok'.", field="provider")
    return_to = data.get("return_to")
    if not isinstance(return_to, str):
        raise InvalidInput("return_to must be an absolute URL.", field="return_to")
    scopes = data.get("scopes")
    if scopes is not None:
        if not isinstance(scopes, list) or not scopes or len(scopes) > MAX_SCOPES:
            raise InvalidInput(f"scopes must be a list of 1 to {MAX_SCOPES} scope names.", field="scopes")
        for scope in scopes:
            if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
                raise InvalidInput("Each scope must be a scope name such as 'video.publish'.", field="scopes")
        scopes = tuple(dict.fromkeys(scopes))
    connection_id = data.get("connection_id")
    if connection_id is not None and (not isinstance(connection_id, str)
                                      or not re.fullmatch(r"con_[a-z2-7]{32}", connection_id)):
        raise InvalidInput("connection_id must be a connection id returned by this service.", field="connection_id")
    mode = data.get("mode", "redirect")
    if mode not in MODES:
        raise InvalidInput("mode must be 'redirect' or 'popup'.", field="mode")
    return ConnectRequest(owner_id=owner_id, provider=provider, return_to=return_to, scopes=scopes,
                          connection_id=connection_id, mode=mode)


def checked_return_to(url: str, allowed_origins: frozenset[str]) -> str:
    """return_to must be an absolute http(s) URL whose exact origin is allow-listed. Anything a browser and
    this parser might read differently (userinfo, backslashes, whitespace, encoded host) is refused outright."""
    if len(url) > MAX_URL_LENGTH or _FORBIDDEN_IN_URL.search(url):
        raise InvalidInput("return_to is not an acceptable URL.", code="invalid_return_to", field="return_to")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if (
        not port_ok
        or parts.scheme not in ("https", "http")
        or not parts.hostname
        or "@" in parts.netloc
        or "%" in parts.netloc
        or parts.fragment
        or url.count("#")
        or not url.lower().startswith(parts.scheme + "://" + parts.netloc.lower())
    ):
        raise InvalidInput("return_to is not an acceptable URL.", code="invalid_return_to", field="return_to")
    if normalize_origin(url) not in allowed_origins:
        raise InvalidInput(
            "return_to's origin is not on the allow-list.", code="return_to_not_allowed", field="return_to"
        )
    return url


def normalize_origin(origin: str) -> str:
    """scheme://host[:port], lower-cased, default ports dropped: the form browsers compare (RFC 6454)."""
    parts = urlsplit(origin.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}"


def requested_scopes(profile: ProviderProfile, scopes: tuple[str, ...] | None) -> tuple[str, ...]:
    chosen = scopes or profile.default_scopes
    return tuple(dict.fromkeys((*profile.always_granted_scopes, *chosen)))


def int_param(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:  # ASCII digits only: not "²"
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(value)


def encode_cursor(last: dict[str, Any] | None) -> str | None:
    if not last:
        return None
    return base64.urlsafe_b64encode(json.dumps(last, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or set(data) != {"connection_id", "owner_id", "created_at"}:
            raise ValueError
        if not (isinstance(data["connection_id"], str) and len(data["connection_id"]) <= MAX_CONNECTION_ID
                and isinstance(data["owner_id"], str) and OWNER_ID.fullmatch(data["owner_id"])
                and type(data["created_at"]) is int and 0 <= data["created_at"] < 2**53):
            raise ValueError
    except (ValueError, UnicodeError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API returned.", code="invalid_cursor", field="cursor") from exc
    return data


def valid_account_id(value: object) -> bool:
    """A provider account id as a caller may name it (TikTok's open_id and the like): 1 to 128 visible ASCII
    characters, the bound the webhook applies too."""
    return isinstance(value, str) and 0 < len(value) <= 128 and all("\x21" <= c <= "\x7e" for c in value)
