"""Attacks on the durable disconnect and erasure operations (review of issue 12): each test is a finding."""

from __future__ import annotations

import json

import pytest

from local import apigw
from tests.integration.test_backend_api import call, connect, item, run_jobs

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/connections/" + "c" * 5000),
    ("DELETE", "/connections/%00"),
    ("DELETE", "/connections/con_%F0%9F%92%A5"),
    ("GET", "/operations/" + "o" * 5000),
    ("GET", "/operations/op_%00"),
    ("GET", "/operations/op_%E9"),
    ("DELETE", "/owners/" + "x" * 5000 + "/connections"),
    ("DELETE", "/owners/%00/connections"),
    ("DELETE", "/owners/%25/connections"),
    ("DELETE", "/providers/tiktok/accounts/%ZZ/connections"),
    ("DELETE", "/providers/tiktok/accounts/%80/connections"),
    ("DELETE", "/providers/tiktok/accounts/%00/connections"),
    ("DELETE", "/providers/" + "p" * 500 + "/accounts/x/connections"),
    ("DELETE", "/providers/TikTok/accounts/x/connections"),
    ("DELETE", "/providers/tiktok/accounts/" + "a" * 400 + "/connections"),
])
def test_absurd_ids_are_4xx_never_5xx(stack, method, path):
    response = apigw.invoke(method, path)
    assert 400 <= response["statusCode"] < 500, (path[:80], response["statusCode"], response["body"][:300])
    body = json.loads(response["body"])
    assert "Traceback" not in response["body"] and body["error"]["code"]




def test_an_owner_erasure_with_the_owner_id_percent_encoded_erases_that_owner(stack, tiktok, browser):
    """Harm: a backend that builds the path with encodeURIComponent / quote(owner_id, safe="") (the usual way to
    put a value in a path segment) gets a 400 for `tenant:user-42`, so the data-protection erasure never runs;
    the account route decodes its segment, this one does not."""
    mine = connect(browser, tiktok, owner_id="tenant:user-42")["connection_id"][0]
    status, operation = call("DELETE", "/owners/tenant%3Auser-42/connections")
    assert status == 202, operation
    assert operation["owner_id"] == "tenant:user-42" and operation["remaining"] == 1
    run_jobs()
    assert item(mine) == {}


def test_a_malformed_percent_escape_in_an_account_id_is_a_400_not_an_erasure_of_nothing(stack):
    """Harm: `%ZZ` (a broken encoder) is taken as the literal account id and answered 202 `succeeded`, so the
    caller records a provider's data-deletion request as honoured while nothing was erased."""
    status, body = call("DELETE", "/providers/tiktok/accounts/%ZZ/connections")
    assert status == 400 and body["error"]["code"] == "invalid_request", body
