"""POST /webhooks/{provider}: the provider tells us a user removed the app (signed by the provider, not IAM)."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import web
from oauth_keeper.observability import logger, metrics
from oauth_keeper.webhooks import MAX_BODY, receive

app = web.api_app()


@app.post("/webhooks/<provider>")
def webhook(provider: str):
    body = web.raw_body(app.current_event.raw_event, MAX_BODY)  # the exact bytes the provider signed
    return web.json_response(200, receive(provider, dict(app.current_event.headers), body))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
