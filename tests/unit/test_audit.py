"""The audit logger keeps writing whatever POWERTOOLS_LOG_LEVEL says, as a function cold-starts with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter, so the loggers are built from the environment as at a Lambda cold start.
_COLD_START = textwrap.dedent("""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from oauth_keeper import audit
    from oauth_keeper.domain.errors import NotFound
    from oauth_keeper.observability import logger

    app = APIGatewayHttpResolver()

    @app.get("/things/<connection_id>", middlewares=[audit.Audited("thing_read", now=lambda: 1_800_000_000)])
    def read(connection_id):
        logger.info("Reading a thing")  # the service logger, silenced by the level under test
        audit.note(owner_id="owner-1", operation_id=None)
        if connection_id == "missing":
            raise NotFound("No such thing.", code="thing_not_found")
        return {"ok": True}

    @app.exception_handler(NotFound)
    def not_found(exc):
        from aws_lambda_powertools.event_handler import Response
        return Response(status_code=404, body="{}", content_type="application/json")

    def event(path, iam):
        context = {"requestId": "req-1", "stage": "$default",
                   "http": {"method": "GET", "path": path, "sourceIp": "203.0.113.9"}}
        if iam:
            context["authorizer"] = {"iam": {"userArn": "arn:aws:iam::111122223333:role/app", "accountId":
                                             "111122223333", "callerId": "AROAEXAMPLE:app", "accessKey": "ASIAX"}}
        return {"version": "2.0", "routeKey": "GET /things/{connection_id}", "rawPath": path, "rawQueryString": "",
                "headers": {}, "requestContext": context, "isBase64Encoded": False,
                "pathParameters": {"connection_id": path.rsplit("/", 1)[1]}}

    print(app.resolve(event("/things/con_1", iam=True), {})["statusCode"])
    print(app.resolve(event("/things/missing", iam=False), {})["statusCode"])
    audit.note(owner_id="outside a request")  # nothing is open: nothing happens
""")


@pytest.mark.parametrize("level", ["ERROR", "WARNING", "CRITICAL"])
def test_audit_records_are_written_at_any_log_level(level):
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": level, "POWERTOOLS_SERVICE_NAME": "oauth-keeper",
           "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}"}
    env.pop("AWS_LAMBDA_LOG_LEVEL", None)
    run = subprocess.run([sys.executable, "-c", _COLD_START], env=env, capture_output=True, text=True, timeout=60,
                         check=True)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert "Reading a thing" not in run.stdout  # the level is in force for the service logger
    allowed, refused = lines
    assert allowed["service"] == refused["service"] == "oauth-keeper-audit"
    assert allowed["audit"] == "thing_read" and allowed["outcome"] == "allowed" and allowed["http_status"] == 200
    assert allowed["caller"] == "arn:aws:iam::111122223333:role/app" and allowed["caller_account"] == "111122223333"
    assert allowed["caller_id"] == "AROAEXAMPLE:app" and allowed["source_ip"] == "203.0.113.9"
    assert allowed["connection_id"] == "con_1" and allowed["owner_id"] == "owner-1" and "operation_id" not in allowed
    assert allowed["at"] == "2027-01-15T08:00:00Z" and allowed["correlation_id"] == "req-1"
    assert "ASIAX" not in run.stdout  # the access key id is not part of the record
    # A public route has no IAM caller: the source address is all the record can honestly say.
    assert "caller" not in refused and refused["source_ip"] == "203.0.113.9"
    assert refused["outcome"] == "refused" and refused["http_status"] == 404
    assert refused["error_code"] == "thing_not_found"
    assert "outside a request" not in run.stdout


def test_note_takes_only_the_ids_a_record_has():
    from oauth_keeper import audit

    with pytest.raises(TypeError):
        audit.note(access_token="never")
