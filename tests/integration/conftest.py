"""A whole local world per test: moto with the template's resources, the simulated TikTok, a movable clock."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from moto import mock_aws
from oauth_keeper import root

from local import apigw
from local.fake_tiktok import FakeTikTok
from local.memory import ManualClock
from local.stack import DUMMY_CREDENTIALS, LocalResources, atomic_dynamodb, create_resources, install_from_env

BASE_URL = "https://keeper.example.com"
APP_ORIGIN = "https://app.example.com"
RETURN_TO = f"{APP_ORIGIN}/settings/connections?tab=social"
START = 1_800_000_000  # a fixed instant (2027-01-15): tests move the clock, never sleep


@pytest.fixture
def clock():
    return ManualClock(start=START)


@pytest.fixture
def tiktok(clock):
    fake = FakeTikTok(clock=clock.now, redirect_uris=(f"{BASE_URL}/callback/tiktok",))
    with fake.start():
        yield fake


@pytest.fixture
def aws(monkeypatch):
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws(), atomic_dynamodb():
        root.reset()
        yield
    root.reset()


@pytest.fixture
def stack(aws, tiktok, clock, monkeypatch) -> LocalResources:
    resources = create_resources(
        public_base_url=BASE_URL, allowed_return_origins=[APP_ORIGIN], tiktok_base_url=tiktok.base_url,
        client_key=tiktok.client_key, client_secret=tiktok.client_secret,
        scopes="user.info.basic,video.list",
    )
    for name, value in resources.env.items():
        monkeypatch.setenv(name, value)
    install_from_env(clock=clock)
    return resources


@pytest.fixture
def browser():
    return apigw.Browser()


def create_session(owner_id="owner-1", return_to=RETURN_TO, **extra) -> dict:
    import json

    response = apigw.invoke("POST", "/connect-sessions", body=json.dumps(
        {"owner_id": owner_id, "provider": "tiktok", "return_to": return_to, **extra}))
    return response


def location_query(response: dict) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response["headers"]["Location"]).query)


@pytest.fixture
def log_output():
    """Everything the Powertools loggers (the service's and the audit trail's) write during the test, in one
    stream: what CloudWatch would receive."""
    import io

    from oauth_keeper.audit import audit_logger
    from oauth_keeper.observability import logger

    stream = io.StringIO()
    previous = [(each, each.registered_handler.setStream(stream)) for each in (logger, audit_logger)]
    yield stream
    for each, stream_before in previous:
        each.registered_handler.setStream(stream_before)


META_SECRET = "meta-test-app-secret"  # noqa: S105 - the simulated Meta app's own secret, not TikTok's


@pytest.fixture
def meta_app(clock):
    """The `meta_test` provider's simulated app (tests/meta_profile.py): TikTok's wire, its own client and secret."""
    fake = FakeTikTok(clock=clock.now, client_key="meta-test-app-id", client_secret=META_SECRET,
                      redirect_uris=(f"{BASE_URL}/callback/meta_test",))
    with fake.start():
        yield fake


@pytest.fixture
def meta(stack, meta_app, monkeypatch):
    """The stack with `meta_test` enabled beside TikTok: its profile, endpoints and SSM credentials (its own
    app secret), as a deployment enables a provider. Yields the simulated app."""
    import boto3

    from tests.meta_profile import use_meta_test_profile

    use_meta_test_profile(monkeypatch)
    prefix = stack.env["SSM_PREFIX"]
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"{prefix}/meta_test/client_key", Value=meta_app.client_key, Type="String")
    ssm.put_parameter(Name=f"{prefix}/meta_test/client_secret", Value=META_SECRET, Type="SecureString")
    base = meta_app.base_url
    for name, value in {"PROVIDERS": "tiktok,meta_test", "META_TEST_SCOPES": "user.info.basic",
                        "META_TEST_AUTHORIZE_URL": f"{base}/v2/auth/authorize/",
                        "META_TEST_TOKEN_URL": f"{base}/v2/oauth/token/",
                        "META_TEST_REVOKE_URL": f"{base}/v2/oauth/revoke/",
                        "META_TEST_USERINFO_URL": f"{base}/v2/user/info/"}.items():
        monkeypatch.setenv(name, value)
    install_from_env()
    return meta_app
