"""The app's backend API (IAM): tokens on demand, connection health, force refresh, disconnect, erasure."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import connections_api as api
from oauth_keeper import web
from oauth_keeper.connect import parse_query
from oauth_keeper.errors import InvalidInput
from oauth_keeper.observability import logger, metrics

app = web.api_app()


def _caller() -> str | None:
    authorizer = app.current_event.request_context.authorizer
    return authorizer.iam.user_arn if authorizer and authorizer.iam else None


def _query(name: str) -> str | None:
    """One value, refusing repeats (API Gateway's own map would join them with commas)."""
    values = parse_query(app.current_event.raw_query_string).get(name)
    if values and len(values) > 1:
        raise InvalidInput(f"{name} may be given once.", field=name)
    return values[0] if values else None


@app.get("/connections")
def list_connections():
    return web.json_response(200, api.list_connections(_query("owner_id"), _query("cursor"), _query("limit")))


@app.get("/connections/<connection_id>")
def get_connection(connection_id: str):
    return web.json_response(200, api.get_connection(connection_id))


@app.get("/connections/<connection_id>/token")
def get_token(connection_id: str):
    return web.json_response(200, api.token_for(connection_id, _query("min_valid_seconds"), _caller()))


@app.post("/connections/<connection_id>/refresh")
def refresh(connection_id: str):
    return web.json_response(200, api.force_refresh(connection_id))


@app.delete("/connections/<connection_id>")
def disconnect(connection_id: str):
    return web.json_response(200, api.disconnect(connection_id))


@app.delete("/owners/<owner_id>/connections")
def erase_owner(owner_id: str):
    return web.json_response(200, api.erase_owner(owner_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
