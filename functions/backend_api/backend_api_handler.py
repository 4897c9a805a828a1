"""The app's backend API (IAM): tokens on demand, connection health, force refresh, disconnect, erasure, operations."""

from urllib.parse import unquote

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.domain.validation import MAX_BODY_BYTES, parse_json_object
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly
app = responses.api_app()


def _query(name: str) -> str | None:
    return requests.single_value(requests.parse_query(app.current_event.raw_query_string), name)


@app.get("/connections")
def list_connections():
    page = root.container().queries.list(_query("owner_id"), _query("cursor"), _query("limit"))
    return responses.json_response(200, page)


@app.post("/connections/claims")
def claim():
    body = parse_json_object(requests.raw_body(app.current_event.raw_event, MAX_BODY_BYTES))
    return responses.json_response(200, root.container().pending.claim(
        body, deadline=root.deadline_of(app.lambda_context)))


@app.get("/connections/<connection_id>")
def get_connection(connection_id: str):
    return responses.json_response(200, root.container().queries.get(connection_id))


@app.get("/connections/<connection_id>/token")
def get_token(connection_id: str):
    caller = requests.caller_arn(app.current_event.raw_event.get("requestContext", {}))
    return responses.json_response(200, root.container().tokens.token_for(
        connection_id, _query("min_valid_seconds"), caller, deadline=root.deadline_of(app.lambda_context)))


@app.post("/connections/<connection_id>/refresh")
def refresh(connection_id: str):
    return responses.json_response(200, root.container().tokens.force_refresh(
        connection_id, deadline=root.deadline_of(app.lambda_context)))


@app.delete("/connections/<connection_id>")
def disconnect(connection_id: str):
    return responses.json_response(202, root.container().disconnection.request_disconnect(connection_id))


@app.delete("/owners/<owner_id>/connections")
def erase_owner(owner_id: str):
    return responses.json_response(202, root.container().disconnection.request_erasure(
        owner_id, deadline=root.deadline_of(app.lambda_context)))


@app.delete("/providers/<provider>/accounts/<account_id>/connections")
def erase_account(provider: str, account_id: str):
    # The path as the client sent it: an account id's reserved characters arrive percent-encoded.
    return responses.json_response(202, root.container().disconnection.request_account_erasure(
        provider, unquote(account_id), deadline=root.deadline_of(app.lambda_context)))


@app.get("/operations/<operation_id>")
def get_operation(operation_id: str):
    return responses.json_response(200, root.container().disconnection.operation(operation_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
