"""Whole flows at DEBUG: no code, state, cookie, token or secret may appear in logs, metrics or answers."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from oauth_keeper.observability import logger

from tests.integration.conftest import create_session

pytestmark = pytest.mark.integration


def test_no_secret_reaches_logs_metrics_events_or_redirects(stack, tiktok, browser, capfd):
    logs = io.StringIO()
    previous_stream = logger.registered_handler.setStream(logs)  # exactly what Lambda would ship
    logger.setLevel("DEBUG")
    # The libraries on the request path, at DEBUG into the same stream (what POWERTOOLS_DEBUG would show).
    library_handler = logging.StreamHandler(logs)
    library_loggers = [logging.getLogger(n) for n in ("aws_lambda_powertools", "httpx", "httpcore")]
    library_levels = [lib.level for lib in library_loggers]
    for lib in library_loggers:
        lib.addHandler(library_handler)
        lib.setLevel(logging.DEBUG)
    try:
        created = create_session()
        session_token = parse_qs(urlsplit(json.loads(created["body"])["connect_url"]).query)["session"][0]
        authorize = browser.get(json.loads(created["body"])["connect_url"])
        location = authorize["headers"]["Location"]
        state = parse_qs(urlsplit(location).query)["state"][0]
        nonce = next(iter(browser.cookies.values()))
        callback_url = tiktok.approve(location)
        code = parse_qs(urlsplit(callback_url).query)["code"][0]
        callback = browser.get(callback_url)
        replay = browser.get(callback_url)  # the refusal path logs too
        # a failed exchange path
        created2 = json.loads(create_session(owner_id="owner-2")["body"])
        authorize2 = browser.get(created2["connect_url"])
        tiktok.fail_next(1, "5xx")
        failed = browser.get(tiktok.approve(authorize2["headers"]["Location"], user="bob"))
    finally:
        logger.setLevel("INFO")
        logger.registered_handler.setStream(previous_stream)
        for lib, level in zip(library_loggers, library_levels, strict=True):
            lib.removeHandler(library_handler)
            lib.setLevel(level)

    (grant,) = tiktok.grants_for(tiktok.users["alice"].open_id)
    secrets = {
        "session token": session_token, "state": state, "cookie nonce": nonce, "code": code,
        "encoded code": quote(code, safe=""), "access token": grant.access_token,
        "refresh token": grant.refresh_token, "client secret": tiktok.client_secret,
    }
    out, err = capfd.readouterr()
    out += logs.getvalue()
    assert "HTTP Request: POST" in out  # the capture really saw DEBUG logging from the libraries
    assert "Connection saved" in out and "ConnectFailed" in out  # ...and the logs and metrics of both paths
    answers = json.dumps([callback, replay, failed])
    events = json.dumps(stack.received_events())
    for name, value in secrets.items():
        assert value not in out, f"{name} leaked to stdout (logs/metrics)"
        assert value not in err, f"{name} leaked to stderr"
        assert value not in events, f"{name} leaked into an event"
        if name not in ("cookie nonce",):  # the callback answer clears the cookie by name, never its value
            assert value not in answers, f"{name} leaked into an answer"
    assert nonce not in answers
