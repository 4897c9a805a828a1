"""What the security tests share: raw table reads, a started connect flow, the header rules and secret search."""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import boto3

from local import apigw
from tests.integration.conftest import RETURN_TO, create_session

# -- the routes ------------------------------------------------------------------------------------------
BROWSER = "html"  # answers a person: HTML pages and redirects, never JSON
API = "json"  # answers a program: {"error": {"code", "field", "message"}}; IAM-signed
WEBHOOK = "webhook"  # answers a provider: the API's JSON errors, public, authenticated by a signature
STATUS = "status"  # answers a person a page, or a program asking for JSON the API's errors; public

# What each route answers with. A route the template gains must be added here (or to PENDING_ROUTES in
# test_hostile_input.py) on purpose: test_every_route_has_a_hostile_input_profile fails otherwise.
ROUTE_KINDS = {
    "POST /connect-sessions": API,
    "POST /connections/claims": API,
    "GET /connect/{provider}": BROWSER,
    "GET /callback/{provider}": BROWSER,
    "POST /webhooks/{provider}": WEBHOOK,
    "POST /deauthorize/{provider}": WEBHOOK,
    "POST /data-deletion/{provider}": WEBHOOK,
    "GET /data-deletion/{provider}": STATUS,
}
ROUTE_AUTH = {BROWSER: "NONE", API: "AWS_IAM", WEBHOOK: "NONE", STATUS: "NONE"}


def template_routes() -> dict[str, apigw.Route]:
    return {route.route_key: route for route in apigw.routes()}


def browser_routes() -> list[str]:
    """The public routes a person's browser opens, as the template has them now."""
    return sorted(k for k, r in template_routes().items() if ROUTE_KINDS.get(k) == BROWSER and r.auth == "NONE")


# -- raw tables ------------------------------------------------------------------------------------------
def raw_items(table_env: str) -> list[dict[str, Any]]:
    """Every item of a table exactly as DynamoDB holds it (attribute-value form), all pages."""
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": os.environ[table_env], "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def item_count(table_env: str) -> int:
    """How many items a table holds (a COUNT scan: cheap, no item is read back)."""
    client = boto3.client("dynamodb")
    total, kwargs = 0, {"TableName": os.environ[table_env], "Select": "COUNT", "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def flow_exists(flow_key: str) -> bool:
    return "Item" in boto3.client("dynamodb").get_item(
        TableName=os.environ["FLOWS_TABLE"], Key={"flow_key": {"S": flow_key}}, ConsistentRead=True)


def flow_keys() -> set[str]:
    return {item["flow_key"]["S"] for item in raw_items("FLOWS_TABLE")}


def connection_ids() -> set[str]:
    """The keys of the Connections table's items but the guard items (one per connection, ADR 0018)."""
    return {item["connection_id"]["S"] for item in raw_items("CONNECTIONS_TABLE")
            if not item["connection_id"]["S"].startswith("guard#")}


def connection_item(connection_id: str) -> dict[str, Any]:
    return boto3.client("dynamodb").get_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection_id": {"S": connection_id}}, ConsistentRead=True,
    )["Item"]


# -- a connect in progress -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartedFlow:
    """One browser's connect, stopped at TikTok's consent screen."""

    session_token: str
    authorize_location: str  # where the browser was sent: TikTok's authorize URL with our state
    state: str
    cookie_name: str
    nonce: str  # the cookie's value

    @property
    def cookie(self) -> str:
        return f"{self.cookie_name}={self.nonce}"


def start_flow(browser: apigw.Browser, owner_id: str = "owner-1", return_to: str = RETURN_TO,
               **session: object) -> StartedFlow:
    created = create_session(owner_id=owner_id, return_to=return_to, **session)
    assert created["statusCode"] == 201, created
    connect_url = json.loads(created["body"])["connect_url"]
    before = dict(browser.cookies)
    authorize = browser.get(connect_url)
    assert authorize["statusCode"] == 302, authorize
    location = authorize["headers"]["Location"]
    (cookie_name,) = set(browser.cookies) - set(before)
    return StartedFlow(
        session_token=parse_qs(urlsplit(connect_url).query)["session"][0],
        authorize_location=location,
        state=parse_qs(urlsplit(location).query)["state"][0],
        cookie_name=cookie_name,
        nonce=browser.cookies[cookie_name],
    )


def callback(raw_query: str, cookies: list[str] | None = None, provider: str = "tiktok") -> dict[str, Any]:
    return apigw.invoke("GET", f"/callback/{provider}", raw_query=raw_query, cookies=cookies)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# -- what a browser answer must carry --------------------------------------------------------------------
def csp_directives(policy: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), words[1:])  # the first occurrence wins, as in browsers
    return directives


def csp_problems(policy: str | None) -> list[str]:
    """Why a Content-Security-Policy lets a script in or the page be framed ([] when it is strict)."""
    if not policy:
        return ["no Content-Security-Policy"]
    directives = csp_directives(policy)
    problems = []
    for name in ("script-src", "script-src-elem", "script-src-attr"):
        sources = directives.get(name, directives.get("default-src"))
        if sources is None:
            problems.append(f"{name}: neither it nor default-src is set (scripts from anywhere)")
            continue
        for source in sources:
            lowered = source.lower()
            if lowered in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:", "http:", "https:",
                           "blob:", "'wasm-unsafe-eval'") or (lowered.startswith(("http", "//")) or "*" in lowered):
                problems.append(f"{name} allows {source}")
    if directives.get("frame-ancestors") != ["'none'"]:
        problems.append("frame-ancestors is not 'none' (the page can be framed)")
    if directives.get("base-uri") not in (["'none'"], ["'self'"]):
        problems.append("base-uri is not restricted")
    return problems


def header(response: dict[str, Any], name: str) -> str | None:
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def browser_answer_problems(response: dict[str, Any]) -> list[str]:
    """The headers every page and redirect of a browser route must carry (docs/architecture.md, "Security rules")."""
    problems = []
    if header(response, "Cache-Control") != "no-store":
        problems.append(f"Cache-Control is {header(response, 'Cache-Control')!r}, not 'no-store'")
    if header(response, "Referrer-Policy") != "no-referrer":
        problems.append(f"Referrer-Policy is {header(response, 'Referrer-Policy')!r}, not 'no-referrer'")
    problems += csp_problems(header(response, "Content-Security-Policy"))
    status = response["statusCode"]
    content_type = header(response, "Content-Type") or ""
    if status == 302:
        if not header(response, "Location"):
            problems.append("a redirect without Location")
    elif "text/html" not in content_type:
        problems.append(f"a {status} page that is not HTML ({content_type!r})")
    return problems


def set_cookies(response: dict[str, Any]) -> list[str]:
    cookies = list(response.get("cookies") or [])
    for key, value in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == "set-cookie":
            cookies += list(value)
    if header(response, "Set-Cookie"):
        cookies.append(header(response, "Set-Cookie"))
    return cookies


def cookie_only_clears(cookie: str) -> bool:
    """Set-Cookie that deletes: an empty value and Max-Age=0 (or an Expires in the past, which we don't send)."""
    name_value, _, attributes = cookie.partition(";")
    _, _, value = name_value.partition("=")
    return value.strip() == "" and re.search(r"(?i)(^|;)\s*max-age=0\s*(;|$)", ";" + attributes) is not None


# -- secrets ---------------------------------------------------------------------------------------------
def forms_of(secret: str) -> set[str]:
    """The ways a secret could show up in an answer: raw, URL-encoded (both ways), HTML-escaped, JSON-escaped."""
    return {secret, quote(secret, safe=""), quote_plus(secret), html.escape(secret), json.dumps(secret)[1:-1]}


def echoed(response: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """Names of the secrets found anywhere in an answer: body, every header (Location too), Set-Cookie."""
    text = json.dumps(response, default=str) + "\n" + (response.get("body") or "")
    text += "\n".join(f"{k}: {v}" for k, v in (response.get("headers") or {}).items())
    return sorted(name for name, value in secrets.items() if value and any(f in text for f in forms_of(value)))
