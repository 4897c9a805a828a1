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
