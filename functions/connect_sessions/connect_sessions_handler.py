"""POST /connect-sessions (IAM): the app's backend asks for a single-use connect link for one owner."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import web
from oauth_keeper.connect import create_connect_session
from oauth_keeper.observability import logger, metrics
from oauth_keeper.runtime import services
from oauth_keeper.validation import MAX_BODY_BYTES, parse_json_object

app = web.api_app()


@app.post("/connect-sessions")
def post_connect_session():
    event = app.current_event
    logger.append_keys(caller=event.request_context.authorizer.iam.user_arn if event.request_context.authorizer
                       and event.request_context.authorizer.iam else None)
    body = parse_json_object(web.raw_body(event.raw_event, MAX_BODY_BYTES))
    base = web.base_url(services().settings.public_base_url, event.raw_event.get("requestContext", {}))
    return web.json_response(201, create_connect_session(body, base))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
