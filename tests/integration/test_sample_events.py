"""events/ holds one valid sample per function: each matches its function's route and gets a sane answer."""

import json
from pathlib import Path

import pytest

from local import apigw

pytestmark = pytest.mark.integration
EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.mark.parametrize(("name", "function"), [
    ("connect_sessions", "ConnectSessionsFunction"),
    ("authorize", "AuthorizeFunction"),
    ("callback", "CallbackFunction"),
])
def test_each_sample_event_matches_its_functions_route(name, function):
    event = load(name)
    route, params = apigw.find_route(event["requestContext"]["http"]["method"], event["rawPath"])
    assert route.function == function
    assert event["routeKey"] == route.route_key == event["requestContext"]["routeKey"]
    assert event["version"] == "2.0"
    assert event.get("pathParameters", {}) == params


def run(name: str, event: dict) -> dict:
    route, _ = apigw.find_route(event["requestContext"]["http"]["method"], event["rawPath"])
    return route.load_handler()(event, apigw.LambdaContext(route.function))


def test_sample_connect_session_event_creates_a_session(stack, monkeypatch):
    monkeypatch.setenv("ALLOWED_RETURN_ORIGINS", "https://app.example.com")

    from local.stack import install_from_env

    install_from_env()
    response = run("connect_sessions", load("connect_sessions"))
    assert response["statusCode"] == 201
    assert json.loads(response["body"])["connect_url"].startswith("https://keeper.example.com/connect/tiktok?")


def test_sample_browser_events_get_html_answers_when_their_secrets_are_placeholders(stack):
    authorize = run("authorize", load("authorize"))
    assert authorize["statusCode"] == 410 and "start again" in authorize["body"]
    callback = run("callback", load("callback"))
    assert callback["statusCode"] in (400, 403) and "<html" in callback["body"]
