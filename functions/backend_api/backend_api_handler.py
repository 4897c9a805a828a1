"""The app's backend API (IAM): tokens on demand, connection health and channels, force refresh, disconnect,
erasure, operations."""

import re
from urllib.parse import unquote

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import audit, root
from oauth_keeper.domain.errors import InvalidInput
from oauth_keeper.domain.validation import MAX_BODY_BYTES, parse_json_object
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly
app = responses.api_app()


def _query(name: str) -> str | None:
    return requests.single_value(requests.parse_query(app.current_event.raw_query_string), name)


def _path_segment(value: str, field: str) -> str:
    """A path segment as the client sent it, percent-decoded once (clients encode reserved characters, e.g.
    `:` with encodeURIComponent). Raises InvalidInput for a `%` that starts no escape: a broken encoding, never
    guessed at."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise InvalidInput(f"{field} has a malformed percent-encoding.", field=field)
    return unquote(value)


def _audited(action: str) -> list:
    """Every route of this API leaves an audit record (oauth_keeper/audit.py), timed by the container's clock."""
    return [audit.Audited(action, now=lambda: root.container().clock.now())]


@app.get("/connections", middlewares=_audited("connection_list"))
def list_connections():
    owner_id = _query("owner_id")
    audit.note(owner_id=owner_id)
    page = root.container().queries.list(owner_id, _query("cursor"), _query("limit"))
    return responses.json_response(200, page)


@app.post("/connections/claims", middlewares=_audited("connection_claim"))
def claim():
    body = parse_json_object(requests.raw_body(app.current_event.raw_event, MAX_BODY_BYTES))
    audit.note(owner_id=body.get("owner_id"))  # the claimant's owner; never the claim code
    answer = root.container().pending.claim(body, deadline=root.deadline_of(app.lambda_context))
    audit.note(connection_id=answer["connection"]["connection_id"])
    return responses.json_response(200, answer)


# Each per-connection route takes `owner_id` (the owner the caller acts for): another owner's connection is 404.
@app.get("/connections/<connection_id>", middlewares=_audited("connection_read"))
def get_connection(connection_id: str):
    return responses.json_response(200, root.container().queries.get(connection_id, _query("owner_id")))


@app.get("/connections/<connection_id>/token", middlewares=_audited("token_read"))
def get_token(connection_id: str):
    return responses.json_response(200, root.container().tokens.token_for(
        connection_id, _query("min_valid_seconds"), owner_id=_query("owner_id"),
        deadline=root.deadline_of(app.lambda_context), channel_id=_query("channel_id")))


@app.get("/connections/<connection_id>/channels", middlewares=_audited("channel_list"))
def list_channels(connection_id: str):
    return responses.json_response(200, root.container().channels.view(
        connection_id, _query("owner_id"), deadline=root.deadline_of(app.lambda_context)))


@app.post("/connections/<connection_id>/refresh", middlewares=_audited("token_refresh"))
def refresh(connection_id: str):
    return responses.json_response(200, root.container().tokens.force_refresh(
        connection_id, owner_id=_query("owner_id"), deadline=root.deadline_of(app.lambda_context)))


@app.delete("/connections/<connection_id>", middlewares=_audited("connection_disconnect"))
def disconnect(connection_id: str):
    operation = root.container().disconnection.request_disconnect(connection_id, owner_id=_query("owner_id"))
    audit.note(operation_id=operation["operation_id"])
    return responses.json_response(202, operation)


@app.delete("/owners/<owner_id>/connections", middlewares=_audited("owner_erasure"))
def erase_owner(owner_id: str):
    owner_id = _path_segment(owner_id, "owner_id")  # owner ids hold no `%`: decoding is never ambiguous
    operation = root.container().disconnection.request_erasure(owner_id, deadline=root.deadline_of(app.lambda_context))
    audit.note(operation_id=operation["operation_id"])
    return responses.json_response(202, operation)


@app.delete("/providers/<provider>/accounts/<account_id>/connections", middlewares=_audited("account_erasure"))
def erase_account(provider: str, account_id: str):
    # The path as the client sent it: an account id's reserved characters arrive percent-encoded.
    account_id = _path_segment(account_id, "account_id")
    audit.note(account_id=account_id)
    operation = root.container().disconnection.request_account_erasure(
        provider, account_id, deadline=root.deadline_of(app.lambda_context))
    audit.note(operation_id=operation["operation_id"])
    return responses.json_response(202, operation)


@app.get("/operations/<operation_id>", middlewares=_audited("operation_read"))
def get_operation(operation_id: str):
    return responses.json_response(200, root.container().disconnection.operation(operation_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
