"""The PKCE verifier is sealed at rest like tokens; flows stored before (in clear, or without PKCE) still work.

The verifier is what makes a stolen authorization code useless (RFC 7636): anyone who can read the Flows table
(a backup, an export, a role that may read it) and intercept a code must not get it. Issue 13, section 4.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
import pytest
from oauth_keeper import root
from oauth_keeper.usecases import connect as connect_module

from tests.integration.conftest import create_session, location_query

pytestmark = pytest.mark.integration


@pytest.fixture
def verifiers(monkeypatch) -> list[str]:
    """Every PKCE verifier the authorize step draws, in order."""
    drawn: list[str] = []
    original = connect_module.new_code_verifier

    def recording() -> str:
        drawn.append(original())
        return drawn[-1]

    monkeypatch.setattr(connect_module, "new_code_verifier", recording)
    return drawn


def flow_items() -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=os.environ["FLOWS_TABLE"])["Items"]
    return [item for item in items if item["kind"]["S"] == "flow"]


def put_raw(item: dict) -> None:
    boto3.client("dynamodb").put_item(TableName=os.environ["FLOWS_TABLE"], Item=item)


def start(browser, owner_id: str = "owner-1") -> str:
    """A connect session followed by the browser; the consent-screen URL."""
    created = create_session(owner_id=owner_id)
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    assert authorize["statusCode"] == 302, authorize
    return authorize["headers"]["Location"]


def test_the_verifier_is_stored_sealed_and_the_connect_completes(stack, tiktok, browser, verifiers):
    location = start(browser)
    ((verifier,), (item,)) = verifiers, flow_items()
    assert verifier not in json.dumps(item, default=str)  # nowhere in the item, in no attribute
    assert "code_verifier" not in item and set(item["sealed_code_verifier"]) == {"B"}
    callback = browser.get(tiktok.approve(location))  # TikTok checks the verifier against the challenge
    assert location_query(callback)["status"] == ["connected"]


def test_a_flow_stored_with_its_verifier_in_clear_before_the_deploy_still_completes(stack, tiktok, browser,
                                                                                    verifiers):
    """A flow in flight across the deploy, written by the version before: `code_verifier` as a string."""
    location = start(browser)
    ((verifier,), (item,)) = verifiers, flow_items()
    del item["sealed_code_verifier"]
    put_raw({**item, "code_verifier": {"S": verifier}})
    callback = browser.get(tiktok.approve(location))
    assert location_query(callback)["status"] == ["connected"]


def test_a_flow_from_a_deployment_without_pkce_still_completes_after_the_upgrade(stack, tiktok, browser):
    """Set `none` before the upgrade, TikTok's authorization carried no challenge and the flow holds no verifier:
    the callback exchanges the code without one, as the flow was started."""
    location = start(browser)
    (item,) = flow_items()
    del item["sealed_code_verifier"]
    put_raw(item)
    parts = urlsplit(location)
    query = {k: v for k, v in parse_qs(parts.query).items() if not k.startswith("code_challenge")}
    tiktok.pkce = "none"  # TikTok takes an authorization without a challenge (web apps)
    callback = browser.get(tiktok.approve(urlunsplit(parts._replace(query=urlencode(query, doseq=True)))))
    assert location_query(callback)["status"] == ["connected"]


def test_a_sealed_verifier_copied_onto_another_flow_never_opens(stack, tiktok, browser):
    """Someone who can write the table moves the victim's sealed verifier onto their own flow: it is bound to
    the flow it was sealed for, so it never opens elsewhere, and nothing is exchanged or stored."""
    first = start(browser, owner_id="owner-1")
    second = start(browser, owner_id="owner-2")
    items = {item["owner_id"]["S"]: item for item in flow_items()}
    put_raw({**items["owner-2"], "sealed_code_verifier": items["owner-1"]["sealed_code_verifier"]})
    exchanges = tiktok.stats["code_exchanges"]
    answer = browser.get(tiktok.approve(second, user="bob"))
    assert answer["statusCode"] == 503 and "Location" not in answer["headers"]
    assert tiktok.stats["code_exchanges"] == exchanges
    assert not list(root.container().connections.of_account("tiktok", tiktok.users["bob"].open_id))
    assert location_query(browser.get(tiktok.approve(first)))["status"] == ["connected"]  # the original opens
