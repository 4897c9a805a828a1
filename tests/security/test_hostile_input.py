"""Hostile input on every public route: a clear 4xx, never a 5xx, nothing stored, TikTok never called.

Each route has a profile: how to build requests that must be refused (random, oversized, duplicated,
missing and non-UTF-8 query parameters, cookies, path parameters, bodies) and what its refusals look like
(an HTML page for a browser route, the API's JSON error for the backend's and the provider webhook's). The
properties run over the routes the template has; a route added to the template needs a profile here (or a
place in PENDING_ROUTES), on purpose.
"""

from __future__ import annotations

import base64
import json
import re
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauth_keeper.domain.flows import secret_hash
from oauth_keeper.usecases.connect import flow_cookie_name

from local import apigw
from tests.integration.conftest import APP_ORIGIN, RETURN_TO
from tests.security.support import (
    API,
    BROWSER,
    ROUTE_AUTH,
    ROUTE_KINDS,
    STATUS,
    browser_answer_problems,
    cookie_only_clears,
    flow_exists,
    header,
    item_count,
    set_cookies,
    start_flow,
    template_routes,
)

pytestmark = pytest.mark.integration

# Routes in the template whose hostile-input profile is still to be written: the backend's IAM routes, where a
# well-formed but unknown owner_id is a legitimate 200 with nothing in it, so "always refused" needs care.
# Move a route from here to PROFILES when its profile exists; a route in neither makes the guard test fail.
PENDING_ROUTES = {
    "GET /connections",
    "GET /connections/{connection_id}",
    "GET /connections/{connection_id}/token",
    "GET /connections/{connection_id}/channels",
    "POST /connections/{connection_id}/refresh",
    "DELETE /connections/{connection_id}",
    "DELETE /owners/{owner_id}/connections",
    "DELETE /providers/{provider}/accounts/{account_id}/connections",
    "GET /operations/{operation_id}",
}

HOSTILE = settings(
    max_examples=120,
    deadline=None,
    database=None,  # nothing written to .hypothesis/; a failure prints its example and a reproduce blob
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- requests ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostileRequest:
    method: str
    path: str
    raw_query: str = ""
    cookies: tuple[str, ...] = ()
    body: str | bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def send(self) -> dict[str, Any]:
        return apigw.invoke(self.method, self.path, raw_query=self.raw_query, cookies=list(self.cookies) or None,
                            body=self.body, headers=dict(self.headers))


def percent_bytes(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


NON_UTF8 = st.one_of(
    st.sampled_from(["%FF", "%C0%AF", "%ED%A0%80", "%F8%88%80%80%80", "%80", "%E2%82", "%FE%FF"]),
    st.binary(min_size=1, max_size=24).filter(lambda b: not _is_utf8(b)).map(percent_bytes),
)
OVERSIZED = st.integers(min_value=2049, max_value=5000).map(lambda n: "A" * n)  # past every field's limit
RAW_JUNK = st.text(alphabet="%&=;+#?\\ \t\"'<>\x00\x7f", max_size=12)  # unencoded: "%G1", "%", "a=b=c", ...
QUERY_VALUES = st.one_of(
    st.just(""),
    st.text(max_size=40).map(lambda s: quote(s, safe="")),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=40, max_size=90),  # secret-shaped
    NON_UTF8,
    RAW_JUNK,
    OVERSIZED,
)


def query_keys(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), st.text(max_size=12).map(lambda s: quote(s, safe="")), NON_UTF8)


@st.composite
def raw_queries(draw, known: list[str]) -> str:
    """Query strings a browser, a proxy or an attacker could send: duplicated, missing, broken, huge."""
    shape = draw(st.sampled_from(["pairs", "pairs", "pairs", "many", "huge", "junk"]))
    if shape == "many":  # past parse_qsl's max_num_fields
        return "&".join(f"{draw(st.sampled_from(known))}={i}" for i in range(draw(st.integers(51, 120))))
    if shape == "huge":  # past the whole query's limit
        return f"{draw(st.sampled_from(known))}=" + "B" * draw(st.integers(4097, 9000))
    if shape == "junk":
        return draw(st.text(max_size=60))
    pairs = draw(st.lists(st.tuples(query_keys(known), QUERY_VALUES, st.booleans()), max_size=8))
    separator = draw(st.sampled_from(["&", "&&", "&;"]))
    return separator.join(k + (f"={v}" if with_equals else "") for k, v, with_equals in pairs)


COOKIE_VALUES = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60),
    st.text(max_size=30),
    OVERSIZED,
    RAW_JUNK,
)
COOKIE_NAMES = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=20, max_size=20).map(lambda h: "__Host-okf-" + h),
    st.text(alphabet=string.ascii_letters + "-_", min_size=1, max_size=30),
    st.text(max_size=10),
)


@st.composite
def cookie_lists(draw) -> tuple[str, ...]:
    """Payload 2.0 `cookies`: "name=value" strings, some without "=", some carrying several pairs or repeats."""
    entries = draw(st.lists(st.one_of(
        st.builds(lambda n, v: f"{n}={v}", COOKIE_NAMES, COOKIE_VALUES),
        st.text(max_size=30),
        st.builds(lambda n, a, b: f"{n}={a}; {n}={b}", COOKIE_NAMES, COOKIE_VALUES, COOKIE_VALUES),
    ), max_size=6))
    return tuple(entries)


# HTTP APIs hand the handler a decoded rawPath (/callback/a%22b arrives as /callback/a"b), so a path parameter
# can hold any character but "/", including ones Powertools' route pattern does not match.
PATH_SEGMENTS = st.one_of(
    st.sampled_from(["TikTok", "TIKTOK", "tiktok ", "tiktok.", "tiktok%00", "other", "..", "%2e%2e", "tik%74ok",
                     'a"b', "a\\b", "a`b", "a#b", "a?b", "\x00", "\U0001f642", "a\u3002b"]),
    st.text(min_size=1, max_size=300),
).filter(lambda s: "/" not in s and s != "tiktok")

GET_BODIES = st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=200))


# -- bodies the connect-session API must refuse ----------------------------------------------------------------
VALID_BODY = {"owner_id": "owner-1", "provider": "tiktok", "return_to": RETURN_TO}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NOT_A_STRING = st.one_of(st.none(), st.booleans(), st.integers(), st.lists(st.text(max_size=5), max_size=2),
                         st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
BAD_FIELD_VALUES = {
    "owner_id": st.one_of(
        NOT_A_STRING, st.just(""), st.text(alphabet="ab", min_size=129, max_size=300),
        st.text(min_size=1, max_size=20).filter(lambda s: not re.fullmatch(r"[\x21-\x7e]{1,128}", s)),
    ),
    "provider": st.one_of(NOT_A_STRING, st.text(max_size=40).filter(lambda s: s != "tiktok")),
    "return_to": st.one_of(
        NOT_A_STRING,
        st.text(max_size=80).filter(lambda s: not s.lower().startswith(APP_ORIGIN)),
        st.sampled_from(["https://evil.example.net/", "//evil.example.net", "javascript:alert(1)",
                         f"{APP_ORIGIN}@evil.example.net/", f"{APP_ORIGIN}.evil.example.net/"]),
        st.integers(2049, 4000).map(lambda n: f"{APP_ORIGIN}/" + "p" * n),
    ),
    "scopes": st.one_of(
        st.none().map(lambda _: "user.info.basic"), st.just([]), st.integers(),
        st.lists(st.just("video.list"), min_size=21, max_size=30),
        st.lists(st.one_of(NOT_A_STRING, st.text(max_size=80).filter(
            lambda s: not re.fullmatch(r"[A-Za-z0-9._:/-]{1,64}", s))), min_size=1, max_size=3),
    ),
    "connection_id": st.one_of(NOT_A_STRING.filter(lambda v: v is not None), st.text(max_size=40),
                               st.just("con_" + "a" * 32)),  # well-formed but nobody's: 404
    "mode": st.one_of(NOT_A_STRING.filter(lambda v: v is not None),
                      st.text(max_size=20).filter(lambda s: s not in ("redirect", "popup"))),
}


@st.composite
def invalid_connect_bodies(draw) -> str | bytes:
    shape = draw(st.sampled_from(["broken_field", "broken_field", "missing", "unknown_field", "not_an_object",
                                  "not_json", "oversized", "empty", "deep", "not_utf8", "repeated_key",
                                  "lone_surrogate"]))
    body: Any
    if shape == "broken_field":
        field = draw(st.sampled_from(sorted(BAD_FIELD_VALUES)))
        body = {**VALID_BODY, field: draw(BAD_FIELD_VALUES[field])}
    elif shape == "missing":
        dropped = draw(st.sets(st.sampled_from(["owner_id", "provider", "return_to"]), min_size=1))
        body = {k: v for k, v in VALID_BODY.items() if k not in dropped}
    elif shape == "unknown_field":
        name = draw(st.text(min_size=1, max_size=20).filter(
            lambda s: s not in {"owner_id", "provider", "return_to", "scopes", "connection_id", "mode"}))
        body = {**VALID_BODY, name: draw(JSON_VALUES)}
    elif shape == "not_an_object":
        body = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
    elif shape == "not_json":
        text = draw(st.text(min_size=1, max_size=200))
        try:
            json.loads(text)
        except ValueError:
            return _maybe_base64(draw, text)
        return _maybe_base64(draw, "{" + text)  # it happened to parse: make it invalid
    elif shape == "oversized":  # valid JSON, padded past 8 KB with whitespace
        return _maybe_base64(draw, json.dumps(VALID_BODY) + " " * draw(st.integers(8 * 1024, 12 * 1024)))
    elif shape == "empty":
        return draw(st.sampled_from(["", b""]))
    elif shape == "not_utf8":  # base64 bytes that do not decode as UTF-8
        raw = json.dumps(VALID_BODY).encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b))) + raw[at:]
    elif shape == "repeated_key":  # a proxy reading the first and a parser keeping the last disagree
        key = draw(st.sampled_from(sorted(VALID_BODY)))
        first = json.dumps({key: draw(st.text(max_size=20))})[1:-1]
        return _maybe_base64(draw, "{" + first + "," + json.dumps(VALID_BODY)[1:])
    elif shape == "lone_surrogate":  # valid JSON escapes for a string no UTF-8 storage can hold
        key = draw(st.sampled_from(["owner_id", "return_to"]))
        text = json.dumps(VALID_BODY).replace(VALID_BODY[key], VALID_BODY[key] + draw(
            st.sampled_from(["\\ud800", "\\udfff", "\\udbff"])), 1)
        return _maybe_base64(draw, text)
    else:  # deep nesting inside the size limit: the JSON parser must not blow the stack
        depth = draw(st.integers(500, 4000))
        return _maybe_base64(draw, "[" * depth + "]" * depth)
    return _maybe_base64(draw, json.dumps(body))


def _maybe_base64(draw, text: str) -> str | bytes:
    """API Gateway sends a body either as text or base64-encoded (isBase64Encoded); both must be refused."""
    return text.encode() if draw(st.booleans()) else text


# -- route profiles ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteProfile:
    requests: st.SearchStrategy[HostileRequest]


@st.composite
def _authorize_requests(draw) -> HostileRequest:
    provider = draw(st.one_of(st.just("tiktok"), PATH_SEGMENTS))
    return HostileRequest("GET", f"/connect/{provider}", draw(raw_queries(["session", "state", "code", "mode"])),
                          draw(cookie_lists()), draw(GET_BODIES))


@st.composite
def _callback_requests(draw) -> HostileRequest:
    provider = draw(st.one_of(st.just("tiktok"), PATH_SEGMENTS))
    cookies = draw(cookie_lists())
    if draw(st.booleans()):
        query = draw(raw_queries(["state", "code", "error", "scopes", "error_description"]))
    else:  # a state that looks real, with a cookie under its very name: reaches the conditional delete
        state = draw(st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=90))
        extra = draw(raw_queries(["code", "error", "scopes"]))
        query = f"state={state}" + (f"&{extra}" if extra else "")
        cookies = (f"{flow_cookie_name(state)}={draw(COOKIE_VALUES)}", *cookies)
    return HostileRequest("GET", f"/callback/{provider}", query, cookies, draw(GET_BODIES))


@st.composite
def _connect_session_requests(draw) -> HostileRequest:
    return HostileRequest("POST", "/connect-sessions", draw(raw_queries(["owner_id", "return_to"])),
                          draw(cookie_lists()), draw(invalid_connect_bodies()))


@st.composite
def signature_headers(draw) -> tuple[tuple[str, str], ...]:
    """TikTok-Signature values an attacker without the client secret can send: none, malformed, repeated
    parts, stale or current timestamps with a made-up HMAC, huge."""
    now = 1_800_000_000  # the fixtures' clock start; ± the tolerance either way
    t = draw(st.one_of(st.integers(now - 400, now + 400), st.integers(), st.text(max_size=12)))
    s = draw(st.one_of(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.text(max_size=80)))
    value = draw(st.one_of(
        st.just(f"t={t},s={s}"), st.just(f"s={s},t={t}"), st.just(f"t={t},t={now},s={s},s={s}"),
        st.text(max_size=100), OVERSIZED,
    ))
    name = draw(st.sampled_from(["TikTok-Signature", "tiktok-signature", "X-TikTok-Signature"]))
    return () if draw(st.booleans()) and draw(st.booleans()) else ((name, value),)


@st.composite
def _webhook_requests(draw) -> HostileRequest:
    provider = draw(st.one_of(st.just("tiktok"), PATH_SEGMENTS))
    payload = {"client_key": "sim-client-key", "event": draw(st.sampled_from(["authorization.removed", "x"])),
               "create_time": 1_800_000_000, "user_openid": draw(st.text(max_size=40)),
               "content": json.dumps({"reason": 1})}
    body = draw(st.one_of(st.just(json.dumps(payload)), st.binary(max_size=300), st.text(max_size=300),
                          st.integers(64 * 1024 + 1, 70 * 1024).map(lambda n: "x" * n)))
    return HostileRequest("POST", f"/webhooks/{provider}", draw(raw_queries(["event"])), draw(cookie_lists()),
                          _maybe_base64(draw, body) if isinstance(body, str) else body, draw(signature_headers()))


@st.composite
def _signed_request_requests(draw, route: str) -> HostileRequest:
    """Deauthorize and data-deletion callbacks an attacker without the app secret can send: made-up, re-signed
    with another secret, truncated or oversized signed_requests, repeated fields, junk bodies."""
    from local.signed_request import form, signed_request

    provider = draw(st.one_of(st.just("meta_test"), st.just("tiktok"), PATH_SEGMENTS))
    payload = {"algorithm": draw(st.sampled_from(["HMAC-SHA256", "none", "HMAC-SHA1"])),
               "issued_at": draw(st.one_of(st.integers(), JSON_VALUES)), "user_id": draw(JSON_VALUES)}
    value = draw(st.one_of(
        st.just(signed_request(draw(st.text(max_size=30)), payload)),  # another secret, whatever it is
        st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=200),
        st.text(max_size=200), OVERSIZED))
    body = draw(st.one_of(st.just(form(value)), st.just(form(value) + b"&" + form(value)), st.binary(max_size=300),
                          st.text(max_size=300).map(str.encode)))
    return HostileRequest("POST", f"/{route}/{provider}", draw(raw_queries(["signed_request"])),
                          draw(cookie_lists()), body)


@st.composite
def _deletion_status_requests(draw) -> HostileRequest:
    """Guessed, malformed, repeated or oversized confirmation codes (none was issued in this world)."""
    provider = draw(st.one_of(st.just("meta_test"), st.just("tiktok"), PATH_SEGMENTS))
    accept = draw(st.sampled_from(["application/json", "text/html,*/*", ""]))
    return HostileRequest("GET", f"/data-deletion/{provider}", draw(raw_queries(["code"])), draw(cookie_lists()),
                          headers=(("Accept", accept),) if accept else ())


@st.composite
def _claim_requests(draw) -> HostileRequest:
    """Claims an attacker (or a broken app) can send: guessed or malformed codes, other owners, junk bodies.
    No grant is pending in this world, so every one must be refused and change nothing."""
    code = draw(st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=128),
                          st.text(max_size=200), OVERSIZED, st.integers(), st.none(), st.lists(st.text())))
    owner = draw(st.one_of(st.just("owner-1"), st.text(max_size=140), st.integers(), st.none()))
    shape = draw(st.sampled_from(["fields", "fields", "fields", "unknown_field", "missing", "not_json",
                                  "not_an_object", "repeated_key"]))
    body: Any = {"claim": code, "owner_id": owner}
    if shape == "unknown_field":
        body["connection_id"] = draw(JSON_VALUES)
    elif shape == "missing":
        body.pop(draw(st.sampled_from(["claim", "owner_id"])))
    elif shape == "not_json":
        return HostileRequest("POST", "/connections/claims", body=_maybe_base64(draw, "{" + draw(st.text(
            max_size=100))))
    elif shape == "not_an_object":
        body = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
    elif shape == "repeated_key":
        return HostileRequest("POST", "/connections/claims",
                              body='{"claim": "A", "owner_id": "owner-1", "owner_id": "owner-2"}')
    return HostileRequest("POST", "/connections/claims", draw(raw_queries(["claim", "owner_id"])),
                          draw(cookie_lists()), _maybe_base64(draw, json.dumps(body)))


PROFILES: dict[str, RouteProfile] = {
    "POST /connect-sessions": RouteProfile(_connect_session_requests()),
    "POST /connections/claims": RouteProfile(_claim_requests()),
    "POST /webhooks/{provider}": RouteProfile(_webhook_requests()),
    "POST /deauthorize/{provider}": RouteProfile(_signed_request_requests("deauthorize")),
    "POST /data-deletion/{provider}": RouteProfile(_signed_request_requests("data-deletion")),
    "GET /data-deletion/{provider}": RouteProfile(_deletion_status_requests()),
    "GET /connect/{provider}": RouteProfile(_authorize_requests()),
    "GET /callback/{provider}": RouteProfile(_callback_requests()),
}
PROFILED_ROUTES = sorted(set(PROFILES) & set(template_routes()))


# -- what a refusal must look like ----------------------------------------------------------------------------
def refusal_problems(response: dict[str, Any], kind: str) -> list[str]:
    status = response["statusCode"]
    if not 400 <= status < 500:
        return [f"status {status}, not a 4xx: {str(response.get('body'))[:300]}"]
    if kind == STATUS and "text/html" in (header(response, "Content-Type") or ""):  # a person's page
        problems = browser_answer_problems(response)
        if not re.search(r"<h1>[^<]+</h1>", response.get("body") or ""):
            problems.append("no clear message")
        return problems + [f"sets a cookie: {c}" for c in set_cookies(response)]
    if kind == BROWSER:
        problems = browser_answer_problems(response)
        body = response.get("body") or ""
        if header(response, "Location"):
            problems.append("a refusal that redirects (there is no trustworthy return_to)")
        if not re.search(r"<h1>[^<]+</h1>", body) or "start again" not in body.lower():
            problems.append(f"no clear message: {body[:200]}")
        problems += [f"sets a cookie: {c}" for c in set_cookies(response) if not cookie_only_clears(c)]
        return problems
    problems = []
    if "application/json" not in (header(response, "Content-Type") or ""):
        problems.append(f"not JSON: {header(response, 'Content-Type')!r}")
    if header(response, "Cache-Control") != "no-store":
        problems.append("API error without Cache-Control: no-store")
    try:
        error = json.loads(response["body"])["error"]
    except (ValueError, KeyError, TypeError):
        return [*problems, f"not the API's error shape: {response.get('body')!r}"]
    if not {"code", "field", "message"} <= set(error):
        problems.append(f"error lacks code/field/message: {error}")
    elif not (isinstance(error["code"], str) and re.fullmatch(r"[a-z_]+", error["code"])
              and isinstance(error["message"], str) and error["message"]
              and (error["field"] is None or isinstance(error["field"], str))):
        problems.append(f"error fields have the wrong types: {error}")
    return problems


def echoes_input(response: dict[str, Any], request: HostileRequest) -> list[str]:
    """Long values the request carried that the refusal repeats back (a reflected-content channel)."""
    from urllib.parse import parse_qsl

    values = [v for _, v in parse_qsl(request.raw_query, keep_blank_values=True, errors="replace")]
    for entry in request.cookies:
        values += [part.partition("=")[2] for part in entry.split(";")]
    body = response.get("body") or ""
    return [v[:40] for v in values if len(v) >= 12 and (v in body or v in str(response.get("headers")))]


def test_every_route_has_a_hostile_input_profile():
    routes = set(template_routes())
    missing = routes - set(PROFILES) - PENDING_ROUTES
    assert not missing, f"routes without a hostile-input profile (add one to PROFILES): {sorted(missing)}"
    stale = set(PROFILES) - routes
    assert not stale, f"profiles for routes the template no longer has: {sorted(stale)}"
    assert set(PROFILES) <= set(ROUTE_KINDS)
    for key in PROFILES:
        assert template_routes()[key].auth == ROUTE_AUTH[ROUTE_KINDS[key]], key


@pytest.mark.parametrize("route_key", PROFILED_ROUTES)
@HOSTILE
@given(data=st.data())
def test_hostile_requests_get_a_clear_4xx_and_change_nothing(stack, tiktok, meta, route_key, data):
    request = data.draw(PROFILES[route_key].requests, label="request")
    response = request.send()
    assert refusal_problems(response, ROUTE_KINDS[route_key]) == [], request
    if ROUTE_KINDS[route_key] in (BROWSER, STATUS):
        assert echoes_input(response, request) == []
    # Nothing valid exists in this world, so both tables stay empty whatever the request was.
    assert item_count("FLOWS_TABLE") == 0, "a refused request stored a session or flow"
    assert item_count("CONNECTIONS_TABLE") == 0
    assert tiktok.stats["token_requests"] == 0 and tiktok.stats["userinfo_requests"] == 0
    assert _queued() == 0, "a refused request queued work for the refresh worker"


def _queued() -> int:
    import boto3
    from oauth_keeper import root

    settings = root.container().settings
    return sum(int(boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        for url in (settings.removal_queue_url, settings.refresh_queue_url))


# A live flow (state + its cookie), then a callback that must be refused before the flow is consumed.
_LIVE_FLOW_ATTACKS = ["duplicate_state", "duplicate_code", "duplicate_error", "oversized_code", "oversized_error",
                      "code_not_utf8", "no_cookie", "oversized_cookie", "foreign_cookie", "foreign_cookie_first",
                      "state_altered"]


@settings(HOSTILE, max_examples=60)
@given(attack=st.sampled_from(_LIVE_FLOW_ATTACKS), junk=COOKIE_VALUES, code=st.text(
    alphabet=string.ascii_letters + string.digits, min_size=8, max_size=40))
def test_a_live_flow_is_not_consumed_by_a_malformed_callback(stack, tiktok, attack, junk, code):
    flow = start_flow(apigw.Browser())
    state, cookies = flow.state, [flow.cookie]
    query = f"code={code}&state={state}"
    if attack == "duplicate_state":
        query += f"&state={state}"
    elif attack == "duplicate_code":
        query += f"&code={code}"
    elif attack == "duplicate_error":
        query += "&error=access_denied&error=server_error"
    elif attack == "oversized_code":
        query = f"code={'C' * 2049}&state={state}"
    elif attack == "oversized_error":
        query += "&error=" + "E" * 2049
    elif attack == "code_not_utf8":
        query = f"code={code}{percent_bytes(b'\xff')}&state={state}"
    elif attack == "no_cookie":
        cookies = []
    elif attack == "oversized_cookie":
        cookies = [f"{flow.cookie_name}={'N' * 513}"]
    elif attack == "foreign_cookie":
        cookies = [f"{flow.cookie_name}={junk or 'x'}"]
    elif attack == "foreign_cookie_first":  # a second cookie of the same name, placed first
        cookies = [f"{flow.cookie_name}={junk or 'x'}", flow.cookie]
    elif attack == "state_altered":
        query = f"code={code}&state={state[:-1]}{'A' if state[-1] != 'A' else 'B'}"
    before = item_count("FLOWS_TABLE")
    response = apigw.invoke("GET", "/callback/tiktok", raw_query=query, cookies=cookies)
    assert refusal_problems(response, BROWSER) == [], (attack, response)
    assert flow_exists(secret_hash("state", state)), "the refused callback used up the browser's flow"
    assert item_count("FLOWS_TABLE") == before, "the refused callback stored something"
    assert item_count("CONNECTIONS_TABLE") == 0
    assert tiktok.stats["token_requests"] == 0


# -- what the properties found (each was a bug, fixed in 844031f; kept as plain examples) ----------------------------
def test_a_body_that_is_not_utf8_is_refused_as_invalid_json(stack, tiktok):
    """Was a 500: Powertools' decoded_body raised UnicodeDecodeError on base64 bytes that are not UTF-8."""
    response = apigw.invoke("POST", "/connect-sessions", body=b"\xff\xfe{}")
    assert refusal_problems(response, API) == []
    assert json.loads(response["body"])["error"]["field"] == "body"
    assert item_count("FLOWS_TABLE") == 0


def test_a_return_to_with_a_lone_surrogate_is_refused(stack, tiktok):
    """Was a 500: JSON's "\\ud800" passed checked_return_to, and storing the session failed."""
    body = json.dumps({**VALID_BODY, "return_to": RETURN_TO + "\ud800"})  # json.dumps writes the escape
    response = apigw.invoke("POST", "/connect-sessions", body=body)
    assert refusal_problems(response, API) == []
    assert json.loads(response["body"])["error"]["field"] == "return_to"
    assert item_count("FLOWS_TABLE") == 0


@pytest.mark.parametrize("route", ["/connect/{}", "/callback/{}"])
@pytest.mark.parametrize("segment", ['a"b', "a\\b", "a`b", "a\x01b", "\U0001f642", "a\u3002b"])
def test_a_path_parameter_the_router_cannot_match_gets_a_404_page(stack, tiktok, route, segment):
    """Was a 500 and an ERROR log without a traceback: HTTP APIs hand over a decoded rawPath (/callback/a%22b
    arrives as /callback/a"b), Powertools found no route and the catch-all Exception handler answered."""
    response = apigw.invoke("GET", route.format(segment), raw_query="state=x&session=x")
    assert refusal_problems(response, BROWSER) == []
    assert response["statusCode"] == 404


def test_a_body_with_a_repeated_key_is_refused(stack, tiktok):
    """Was a 201: json.loads keeps the last of repeated keys, so {"owner_id":"victim","owner_id":"me"} passed; a
    validator or log in front of us that reads the first one would see another owner than the one we store."""
    body = '{"owner_id":"victim","owner_id":"owner-1","provider":"tiktok","return_to":' + json.dumps(RETURN_TO) + "}"
    response = apigw.invoke("POST", "/connect-sessions", body=body)
    assert refusal_problems(response, API) == []
    assert item_count("FLOWS_TABLE") == 0


def test_a_callback_code_that_is_not_utf8_is_refused_before_the_flow_is_used(stack, tiktok, browser):
    """Was a 302 after a token request: parse_qsl decoded %FF to U+FFFD, the flow was consumed and TikTok got a
    mangled code."""
    flow = start_flow(browser)
    response = apigw.invoke("GET", "/callback/tiktok", raw_query=f"code=abc%FF&state={flow.state}",
                            cookies=[flow.cookie])
    assert refusal_problems(response, BROWSER) == []
    assert tiktok.stats["token_requests"] == 0
    assert flow_exists(secret_hash("state", flow.state))


@pytest.mark.parametrize("extra", ["error=access_denied&error=server_error", "error=" + "E" * 2049],
                         ids=["repeated", "oversized"])
def test_a_malformed_error_parameter_is_refused_before_the_flow_is_used(stack, tiktok, browser, extra):
    """Was a dead end: `error` was read only after the flow was consumed, so a repeated or oversized one used up
    the browser's flow and answered a refusal page (no redirect to the app either)."""
    flow = start_flow(browser)
    response = apigw.invoke("GET", "/callback/tiktok", raw_query=f"state={flow.state}&{extra}", cookies=[flow.cookie])
    assert refusal_problems(response, BROWSER) == []
    assert flow_exists(secret_hash("state", flow.state)), "the refused callback used up the browser's flow"


def test_base64_bodies_are_decoded_once(stack, tiktok):
    """The same JSON as text or base64 (isBase64Encoded) gets the same answer: no double decoding."""
    text = json.dumps({**VALID_BODY, "return_to": "https://evil.example.net/"})
    as_text = apigw.invoke("POST", "/connect-sessions", body=text)
    as_binary = apigw.invoke("POST", "/connect-sessions", body=text.encode())
    assert as_text["statusCode"] == as_binary["statusCode"] == 400
    assert json.loads(as_text["body"]) == json.loads(as_binary["body"])
    double = apigw.invoke("POST", "/connect-sessions", body=base64.b64encode(json.dumps(VALID_BODY).encode()))
    assert double["statusCode"] == 400 and item_count("FLOWS_TABLE") == 0
