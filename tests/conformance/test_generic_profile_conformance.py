# ruff: noqa: F811 - pytest fixtures imported from the integration suite are parameters here
"""oauth-keeper's real handlers with the generic RFC 6749 profile against an independent server (oidc-provider):
PKCE required, refresh-token rotation with reuse detection (reusing one revokes the grant), short access tokens.
A healthy connection must never see invalid_grant."""

from __future__ import annotations

import json
import os
import threading
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import boto3
import httpx
import pytest
from oauth_keeper import root
from oauth_keeper.usecases.worker import process_records

from local import apigw
from local.memory import ListQueue
from local.stack import install_from_env, sweep_into
from tests.conformance.oidc_server import consent
from tests.integration.conftest import RETURN_TO, aws, browser, clock, location_query, stack, tiktok  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def generic(stack, oidc, monkeypatch):
    """Enable provider "oidc" on the generic profile, configured only through settings and SSM."""
    monkeypatch.setenv("PROVIDERS", "tiktok,oidc")
    monkeypatch.setenv("OIDC_PROFILE", "generic")
    monkeypatch.setenv("OIDC_ISSUER", oidc.issuer)
    monkeypatch.setenv("OIDC_DISCOVERY", "true")
    monkeypatch.setenv("OIDC_CLIENT_AUTH", oidc.client_auth)
    monkeypatch.setenv("OIDC_SCOPES", "openid offline_access")
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/oauth-keeper/oidc/client_id", Value=oidc.client_id, Type="String")
    ssm.put_parameter(Name="/oauth-keeper/oidc/client_secret", Value=oidc.client_secret, Type="SecureString")
    install_from_env()
    return oidc


def start_connect(browser, owner_id="owner-1") -> str:
    created = apigw.invoke("POST", "/connect-sessions", body=json.dumps(
        {"owner_id": owner_id, "provider": "oidc", "return_to": RETURN_TO}))
    assert created["statusCode"] == 201, created
    authorize = browser.get(json.loads(created["body"])["connect_url"])
    assert authorize["statusCode"] == 302, authorize
    return authorize["headers"]["Location"]


def connect(browser, server, login="alice") -> str:
    result = location_query(browser.get(consent(start_connect(browser), login=login)))
    assert result["status"] == ["connected"], result
    return result["connection_id"][0]


def userinfo_works(server, connection_id: str) -> bool:
    store = root.container().connections
    token = store.open_tokens(store.get(connection_id))["access_token"]
    with httpx.Client() as http:
        document = http.get(server.discovery_url).json()
        return http.get(document["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_connect_with_pkce_and_iss_through_the_real_handlers(generic, browser):
    location = start_connect(browser)
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(generic.issuer)  # discovered, not configured
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid offline_access"]
    assert query["client_id"] == [generic.client_id]
    callback = consent(location)
    assert parse_qs(urlsplit(callback).query)["iss"] == [generic.issuer]
    result = location_query(browser.get(callback))
    assert result["status"] == ["connected"]
    connection = root.container().connections.get(result["connection_id"][0])
    assert connection.provider == "oidc" and connection.account_id == "alice"  # the id_token's subject
    assert connection.status == "active" and userinfo_works(generic, connection.connection_id)


def test_fifty_refresh_cycles_under_strict_rotation_never_see_invalid_grant(generic, browser):
    connection_id = connect(browser, generic)
    refresher = root.container().refresher
    for cycle in range(50):
        outcome = refresher.refresh(connection_id, force=True)
        assert outcome.result == "refreshed", (cycle, outcome)
    connection = root.container().connections.get(connection_id)
    assert connection.status == "active" and connection.token_version == 51
    assert userinfo_works(generic, connection_id)  # the grant is alive: no reuse ever revoked it


def test_the_sweeper_and_the_token_route_racing_on_one_connection(generic, browser, clock):
    connection_id = connect(browser, generic)
    store = root.container().connections
    for _ in range(10):
        clock.advance(store.get(connection_id).next_refresh_at - clock.now())
        queue = ListQueue()

        def sweep_and_work(queue=queue):
            sweep_into(queue)
            process_records(queue.drain(), root.container().refresher, 8)

        answers: list[dict] = []

        def read_token(answers=answers):
            answers.append(apigw.invoke("GET", f"/connections/{connection_id}/token",
                                        raw_query="min_valid_seconds=3600"))

        worker = threading.Thread(target=sweep_and_work)
        reader = threading.Thread(target=read_token)
        worker.start()
        reader.start()
        worker.join()
        reader.join()
        assert answers[0]["statusCode"] == 200, answers[0]
        connection = store.get(connection_id)
        assert connection.status == "active" and connection.last_refresh_reason != "invalid_grant"
    assert userinfo_works(generic, connection_id)
    token = json.loads(apigw.invoke("GET", f"/connections/{connection_id}/token")["body"])["access_token"]
    assert token == store.open_tokens(store.get(connection_id))["access_token"]


def test_a_replayed_code_never_reaches_the_server_twice(generic, browser):
    callback = consent(start_connect(browser))
    saved = dict(browser.cookies)
    assert location_query(browser.get(callback))["status"] == ["connected"]
    browser.cookies.update(saved)
    assert browser.get(callback)["statusCode"] == 400  # the flow is gone: refused before any exchange
    items = boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"]
    assert len([i for i in items if "owner_id" in i]) == 1  # one connection (and its guard item)


def test_a_wrong_client_secret_is_a_configuration_error_not_the_users(generic, browser):
    boto3.client("ssm").put_parameter(Name="/oauth-keeper/oidc/client_secret", Value="wrong",
                                      Type="SecureString", Overwrite=True)
    root.container().credentials.forget_cached()
    result = location_query(browser.get(consent(start_connect(browser))))
    assert result["error"] == ["provider_config"] and result["retryable"] == ["false"]
    assert boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"] == []


def test_an_iss_mismatch_is_refused_as_a_mix_up(generic, browser):
    callback = consent(start_connect(browser))
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["iss"] = "https://attacker.example"
    result = location_query(browser.get(urlunsplit(parts._replace(query=urlencode(query)))))
    assert result["error"] == ["issuer_mismatch"]
    assert boto3.client("dynamodb").scan(TableName=os.environ["CONNECTIONS_TABLE"])["Items"] == []

    callback = consent(start_connect(browser))
    parts = urlsplit(callback)
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "iss"}  # promised by discovery, missing
    result = location_query(browser.get(urlunsplit(parts._replace(query=urlencode(query)))))
    assert result["error"] == ["issuer_mismatch"]
