"""events/ holds one valid sample per function of template.yaml: each has the shape its source sends (API Gateway
HTTP API payload 2.0, EventBridge Scheduler's Input, SQS), carries values the service would really see (the flow
cookie named after the state, the MD5 of an SQS body, a TikTok signature over the webhook body), and gets a sane
answer from its function on moto."""

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local import apigw
from local.apigw import LambdaContext
from local.cfn import resources_of_type
from local.memory import ManualClock

pytestmark = pytest.mark.integration
EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_TIME = 1_795_575_600  # 2026-11-25T03:00:00Z: when every sample was "sent"
FUNCTIONS = resources_of_type("AWS::Serverless::Function")


def load(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def sample_name(function: str) -> str:
    """A function's sample is named after its code folder: functions/backend_api/ -> events/backend_api.json."""
    return Path(FUNCTIONS[function]["Properties"]["CodeUri"]).name


def http_functions() -> list[str]:
    return sorted({route["function"] for route in apigw.cfn.http_routes()})


@pytest.fixture
def clock():
    """The samples' own instant: a signed webhook is only accepted within 5 minutes of its signature."""
    return ManualClock(start=SAMPLE_TIME)


def test_every_function_of_the_template_has_a_sample_and_every_sample_a_function():
    expected = {f"{sample_name(function)}.json" for function in FUNCTIONS}
    assert {path.name for path in EVENTS.glob("*.json")} == expected


@pytest.mark.parametrize("function", http_functions())
def test_each_http_sample_matches_its_functions_route_and_api_gateways_event_shape(function):
    event = load(sample_name(function))
    method, path = event["requestContext"]["http"]["method"], event["rawPath"]
    route, params = apigw.find_route(method, path)
    assert route.function == function
    assert event["routeKey"] == route.route_key == event["requestContext"]["routeKey"]
    assert event["version"] == "2.0" and event["requestContext"]["http"]["path"] == path
    assert event.get("pathParameters", {}) == params
    assert ("authorizer" in event["requestContext"]) == (route.auth == "AWS_IAM")  # API Gateway adds it, or refuses
    # The fields API Gateway sends, as the local gateway builds them (its events are checked against AWS's docs).
    _, built = apigw.http_event(method, path, raw_query=event["rawQueryString"], body=event.get("body"),
                                cookies=event.get("cookies"))
    assert set(event["requestContext"]) == set(built["requestContext"])
    assert set(event["requestContext"]["http"]) == set(built["requestContext"]["http"])
    assert set(event) == set(built)
    assert all(name == name.lower() for name in event["headers"])  # payload 2.0 lower-cases header names
    when = datetime.strptime(event["requestContext"]["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert event["requestContext"]["timeEpoch"] == int(when.timestamp()) * 1000
    if event["rawQueryString"]:
        from urllib.parse import parse_qsl

        assert event["queryStringParameters"] == dict(parse_qsl(event["rawQueryString"]))


def run(event: dict) -> dict:
    route, _ = apigw.find_route(event["requestContext"]["http"]["method"], event["rawPath"])
    return route.load_handler()(event, LambdaContext(route.function))


def test_sample_connect_session_event_creates_a_session(stack, monkeypatch):
    monkeypatch.setenv("ALLOWED_RETURN_ORIGINS", "https://app.example.com")

    from local.stack import install_from_env

    install_from_env()
    response = run(load("connect_sessions"))
    assert response["statusCode"] == 201
    assert json.loads(response["body"])["connect_url"].startswith("https://keeper.example.com/connect/tiktok?")


def test_sample_callback_carries_the_flow_cookie_its_state_names():
    """The authorize step sets one cookie per flow, named after the state (`__Host-okf-` + 20 hex characters):
    a sample with any other name is refused as "started in another browser" before anything else is looked at."""
    from oauth_keeper.usecases.connect import COOKIE_PREFIX, flow_cookie_name

    event = load("callback")
    (cookie,) = event["cookies"]
    name, _, value = cookie.partition("=")
    assert name == flow_cookie_name(event["queryStringParameters"]["state"])
    assert len(name) == len(COOKIE_PREFIX) + 20 == 31 and value


def test_sample_browser_events_get_html_answers_when_their_secrets_are_placeholders(stack):
    authorize = run(load("authorize"))
    assert authorize["statusCode"] == 410 and "start again" in authorize["body"]
    callback = run(load("callback"))
    assert callback["statusCode"] in (400, 403) and "<html" in callback["body"]
    assert "cookies may be blocked" not in callback["body"]  # the cookie was found: the flow itself is unknown


def test_sample_backend_api_event_reads_a_token_and_gets_a_json_404_for_an_unknown_connection(stack):
    event = load("backend_api")
    assert re.fullmatch(r"con_[a-z2-7]{32}", event["pathParameters"]["connection_id"])  # a real id's shape

    response = run(event)

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "connection_not_found"


def test_sample_webhook_event_is_signed_by_tiktok_over_its_exact_body():
    from oauth_keeper.domain.signatures import verify_signature

    event = load("webhook")
    body = event["body"].encode()
    header = event["headers"]["tiktok-signature"]
    signed_at = verify_signature("sim-client-secret", header, body, now=SAMPLE_TIME)  # the simulated TikTok's
    payload = json.loads(body)
    assert signed_at == SAMPLE_TIME and payload["create_time"] <= signed_at
    assert payload["event"] == "authorization.removed" and payload["client_key"] == "sim-client-key"
    assert isinstance(payload["content"], str) and json.loads(payload["content"]) == {"reason": 1}  # a JSON string


def test_sample_webhook_event_is_accepted_and_handled(stack):
    response = run(load("webhook"))

    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"received": True, "handled": True, "queued": True}


def test_sample_sweeper_event_is_what_the_schedule_sends():
    """The template's schedule Input with Scheduler's context attributes filled in: the scheduled time as
    ISO 8601 UTC, the execution id an opaque id like the docs' `d32c5kddcf5bb8c3` (not an ARN)."""
    event = load("sweeper")
    schedule = FUNCTIONS["SweeperFunction"]["Properties"]["Events"]["Sweep"]["Properties"]
    rendered = (schedule["Input"].replace("<aws.scheduler.scheduled-time>", event["scheduled_time"])
                .replace("<aws.scheduler.execution-id>", event["execution_id"]))
    assert json.loads(rendered) == event
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["scheduled_time"])
    assert re.fullmatch(r"[0-9a-z]{16}", event["execution_id"])


def test_sample_sweeper_event_runs_a_sweep(stack):
    import sweeper_handler

    report = sweeper_handler.handler(load("sweeper"), LambdaContext("SweeperFunction"))
    assert report["due"] == 0 and report["sent"] == 0


def test_sample_refresh_worker_event_is_an_sqs_record_of_a_refresh_message():
    from oauth_keeper.adapters.sqs import refresh_message

    (record,) = load("refresh_worker")["Records"]
    body = record["body"]
    connection_id = json.loads(body)["connection_id"]
    assert re.fullmatch(r"con_[a-z2-7]{32}", connection_id)
    assert body == refresh_message(connection_id)  # exactly what the sweeper sends
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].split(":")[3] == record["awsRegion"]
    sent = int(record["attributes"]["SentTimestamp"])
    assert sent <= int(record["attributes"]["ApproximateFirstReceiveTimestamp"])
    assert datetime.fromtimestamp(sent / 1000, UTC).year == 2026


def test_sample_refresh_worker_event_is_processed_without_a_batch_failure(stack):
    import refresh_worker_handler

    result = refresh_worker_handler.handler(load("refresh_worker"), LambdaContext("RefreshWorkerFunction"))
    assert result == {"batchItemFailures": []}  # an unknown connection is nothing to retry
