"""POST /connect-sessions (IAM): the app's backend asks for a single-use connect link for one owner."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.domain.validation import MAX_BODY_BYTES, parse_json_object
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly
app = responses.api_app()


@app.post("/connect-sessions")
def post_connect_session():
    event, parts = app.current_event, root.container()
    context = event.raw_event.get("requestContext", {})
    logger.append_keys(caller=requests.caller_arn(context))
    body = parse_json_object(requests.raw_body(event.raw_event, MAX_BODY_BYTES))
    base = requests.base_url(parts.settings.public_base_url, context)
    return responses.json_response(201, parts.connect_sessions.create(body, base))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
