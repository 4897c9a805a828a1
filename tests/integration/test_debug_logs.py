"""A root logger at DEBUG turns on no library's request logging: a whole flow leaks no secret (issue 13, section 4).

The flow: connect link, authorize, consent, callback, the app's claim, a forced refresh, a token read.

Before, anyone who set the root logger to DEBUG (Lambda's AWS_LAMBDA_LOG_LEVEL, a `logging.basicConfig` in a
handler, a debugging session) got botocore's request and response bodies in the logs: the client secret from
SSM, KMS data keys in clear, raw DynamoDB items with the PKCE verifier. `observability.py` now keeps botocore,
boto3, urllib3, httpx and httpcore at WARNING whatever the root level, and the service's own logger at DEBUG
logs no secret either.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from oauth_keeper import root
from oauth_keeper.observability import logger
from oauth_keeper.usecases import connect as connect_module

from local import apigw
from local.stack import install_from_env
from tests.integration.conftest import create_session, location_query

pytestmark = pytest.mark.integration

# The libraries on the request path that log request and response data at DEBUG or INFO.
LIBRARIES = ("boto3", "botocore", "urllib3", "httpx", "httpcore")
# Not deployed: the AWS stand-in and the simulated TikTok log what they receive, as a real server would.
NOT_DEPLOYED = ("moto", "werkzeug", "local", "tests", "responses")


class Capture(logging.Handler):
    """Every record that reaches the root logger's handlers, formatted with its arguments (what Lambda ships)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in NOT_DEPLOYED:
            return
        self.names.add(record.name)
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


def forms(secret: str | bytes) -> dict[str, str]:
    """The ways a secret shows up in a log line: as is, URL-encoded, and (bytes) base64, hex and repr."""
    if isinstance(secret, bytes):
        return {"base64": base64.b64encode(secret).decode(), "hex": secret.hex(), "repr": repr(secret)[2:-1]}
    return {"as is": secret, "url-encoded": quote(secret, safe="")}


def test_a_whole_flow_at_debug_logs_no_secret(stack, tiktok, browser, clock, monkeypatch, capfd):
    monkeypatch.setenv("CONNECT_CONFIRMATION", "required")  # the template's default: the claim code is a secret too
    root.reset()
    install_from_env(clock=clock)
    verifiers: list[str] = []
    draw = connect_module.new_code_verifier
    monkeypatch.setattr(connect_module, "new_code_verifier", lambda: verifiers.append(draw()) or verifiers[-1])
    capture, ours = Capture(), io.StringIO()
    root_logger = logging.getLogger()
    previous_level, previous_stream = root_logger.level, logger.registered_handler.setStream(ours)
    root_logger.addHandler(capture)
    root_logger.setLevel(logging.DEBUG)  # what AWS_LAMBDA_LOG_LEVEL=DEBUG or logging.basicConfig(DEBUG) does
    logger.setLevel("DEBUG")  # and LogLevel=DEBUG for the service's own logger
    try:
        created = json.loads(create_session()["body"])
        session_token = parse_qs(urlsplit(created["connect_url"]).query)["session"][0]
        authorize = browser.get(created["connect_url"])
        state = parse_qs(urlsplit(authorize["headers"]["Location"]).query)["state"][0]
        nonce = next(iter(browser.cookies.values()))
        callback_url = tiktok.approve(authorize["headers"]["Location"])
        code = parse_qs(urlsplit(callback_url).query)["code"][0]
        claim = location_query(browser.get(callback_url))["claim"][0]
        claimed = apigw.invoke("POST", "/connections/claims", body=json.dumps({"claim": claim, "owner_id": "owner-1"}))
        assert claimed["statusCode"] == 200, claimed
        connection_id = json.loads(claimed["body"])["connection"]["connection_id"]
        (first,) = tiktok.grants_for(tiktok.users["alice"].open_id)
        first_tokens = (first.access_token, first.refresh_token)
        refreshed = apigw.invoke("POST", f"/connections/{connection_id}/refresh")
        assert json.loads(refreshed["body"])["result"] == "refreshed", refreshed
        token_read = apigw.invoke("GET", f"/connections/{connection_id}/token")
        assert token_read["statusCode"] == 200, token_read
    finally:
        root_logger.removeHandler(capture)
        root_logger.setLevel(previous_level)
        logger.setLevel("INFO")
        logger.registered_handler.setStream(previous_stream)

    (second,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    keys = root.container().data_keys
    data_keys = {key for key, _ in keys._unwrapped.values()} | {keys._current[0]}  # noqa: SLF001
    secrets: dict[str, str | bytes] = {
        "client secret": tiktok.client_secret, "session token": session_token, "state": state,
        "cookie nonce": nonce, "code": code, "claim code": claim, "PKCE verifier": verifiers[0],
        "first access token": first_tokens[0], "first refresh token": first_tokens[1],
        "refreshed access token": second.access_token, "refreshed refresh token": second.refresh_token,
        **{f"data key {i}": key for i, key in enumerate(sorted(data_keys))},
    }
    out, err = capfd.readouterr()
    logs = "\n".join([*capture.lines, ours.getvalue(), out, err])
    assert "Authorization started" in logs and "TokenReads" in logs  # the capture saw the service's logs
    leaks = [f"{name} ({form})" for name, secret in secrets.items() for form, text in forms(secret).items()
             if text in logs]
    assert not leaks, f"reached the logs: {leaks}"
    library_lines = [line for line in capture.lines if line.split(" ")[0].split(".")[0] in LIBRARIES]
    assert all(" DEBUG " not in line and " INFO " not in line for line in library_lines), library_lines[:3]
