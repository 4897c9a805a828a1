"""The local gateway maps HTTP to the template's routes like API Gateway, refusing unsigned IAM calls."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from local import sigv4
from local.gateway import Gateway
from tests.integration.conftest import RETURN_TO

pytestmark = pytest.mark.integration
BASE = "http://127.0.0.1:3000"


@pytest.fixture
def client(stack):
    with httpx.Client(transport=httpx.WSGITransport(app=Gateway()), base_url=BASE) as c:
        yield c


def signed_post(client, path: str, data: dict, **sign_options) -> httpx.Response:
    body = json.dumps(data).encode()
    headers = sigv4.sign("POST", BASE + path, body, headers={"Content-Type": "application/json"}, **sign_options)
    return client.post(path, content=body, headers=headers)


SESSION = {"owner_id": "owner-1", "provider": "tiktok", "return_to": RETURN_TO}


def test_signed_calls_reach_the_handler_and_unsigned_ones_are_refused_before_it(client):
    assert signed_post(client, "/connect-sessions", SESSION).status_code == 201
    assert client.post("/connect-sessions", json=SESSION).status_code == 403
    assert signed_post(client, "/connect-sessions", SESSION, secret_key="wrong").status_code == 403
    assert signed_post(client, "/connect-sessions", SESSION, access_key="AKIAUNKNOWN").status_code == 403


def test_a_signature_for_another_body_or_an_old_one_is_refused(client):
    headers = sigv4.sign("POST", BASE + "/connect-sessions", b'{"a":1}', headers={"Content-Type": "application/json"})
    assert client.post("/connect-sessions", content=json.dumps(SESSION), headers=headers).status_code == 403
    body = json.dumps(SESSION).encode()
    headers = sigv4.sign("POST", BASE + "/connect-sessions", body)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    assert sigv4.verify("POST", BASE + "/connect-sessions", headers, body, now=later) is None


def test_routes_come_from_the_template(client):
    assert client.get("/nowhere").status_code == 404
    page = client.get("/connect/tiktok", params={"session": "unknown"})
    assert page.status_code == 410 and page.headers["content-type"].startswith("text/html")


def test_a_whole_connect_through_http(client, tiktok):
    session = signed_post(client, "/connect-sessions", SESSION).json()
    authorize = client.get(session["connect_url"].replace(BASE, ""))
    assert authorize.status_code == 302 and "__Host-okf-" in authorize.headers["set-cookie"]
    callback = tiktok.approve(authorize.headers["location"])
    # Secure cookies ride over http only on localhost in browsers; httpx's jar is told explicitly here.
    name, value = authorize.headers["set-cookie"].split(";", 1)[0].split("=", 1)
    done = client.get(callback.replace("https://keeper.example.com", ""), headers={"Cookie": f"{name}={value}"})
    assert done.status_code == 302 and "status=connected" in done.headers["location"]


# -- a refused signature says why (never the signature or a secret) -----------------------------------------------
def refusal(client_of, *, sign_options=None, tamper=None) -> str:
    """Sign a POST /connect-sessions, send it (possibly altered) through a gateway whose log is kept; the log."""
    lines: list[str] = []
    body = json.dumps(SESSION).encode()
    headers = sigv4.sign("POST", BASE + "/connect-sessions", body,
                         headers={"Content-Type": "application/json"}, **(sign_options or {}))
    with client_of(lines) as c:
        response = c.post("/connect-sessions", content=tamper(body) if tamper else body, headers=headers)
    assert response.status_code == 403 and response.json() == {"message": "Forbidden"}
    assert len(lines) == 1, lines
    for secret in (sigv4.LOCAL_SECRET_KEY, "wrong-secret", headers["Authorization"].rsplit("Signature=", 1)[1]):
        assert secret not in lines[0]
    return lines[0]


@pytest.fixture
def client_of(stack):
    def make(lines, **options):
        gateway = Gateway(log=lines.append, **options)
        return httpx.Client(transport=gateway.transport(), base_url=BASE)
    return make


def test_a_refused_signature_is_logged_with_its_reason(client_of):
    assert "unknown access key id 'AKIAUNKNOWN0000000000'" in refusal(
        client_of, sign_options={"access_key": "AKIAUNKNOWN0000000000"})
    assert "signed for region 'eu-west-1', but this gateway is in 'us-east-1'" in refusal(
        client_of, sign_options={"region": "eu-west-1"})
    mismatch = refusal(client_of, sign_options={"secret_key": "wrong-secret"})
    assert "signature mismatch" in mismatch and "POST\n    /connect-sessions\n" in mismatch
    assert "signature mismatch" in refusal(client_of, tamper=lambda body: body.replace(b"owner-1", b"owner-2"))


def test_clock_skew_is_named_with_its_size(client_of):
    late = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)

    def skewed(lines):
        return httpx.Client(transport=Gateway(log=lines.append, now=lambda: late).transport(), base_url=BASE)

    line = refusal(skewed)
    assert "clock skew" in line and "behind the gateway's clock (at most 900 s)" in line


def test_an_unsigned_call_is_logged_as_unsigned(client_of):
    lines: list[str] = []
    with client_of(lines) as c:
        assert c.post("/connect-sessions", json=SESSION).status_code == 403
    assert lines == ["SigV4 refused POST /connect-sessions: no Authorization header (an unsigned request)"]


def test_a_session_token_is_never_logged(client_of):
    """Temporary credentials sign X-Amz-Security-Token; a mismatch's canonical request hides its value."""
    lines: list[str] = []
    body = json.dumps(SESSION).encode()
    headers = sigv4.sign("POST", BASE + "/connect-sessions", body, secret_key="wrong-secret",
                         headers={"Content-Type": "application/json", "X-Amz-Security-Token": "session-token-xyz"})
    with client_of(lines) as c:
        assert c.post("/connect-sessions", content=body, headers=headers).status_code == 403
    assert "x-amz-security-token:<redacted>" in lines[0] and "session-token-xyz" not in lines[0]
