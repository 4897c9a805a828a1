"""POST /webhooks/{provider}: the provider tells us a user removed the app (signed by the provider, not IAM)."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics
from oauth_keeper.usecases.webhooks import MAX_BODY

root.container()  # cold start: missing configuration fails here, loudly
app = responses.api_app()


@app.post("/webhooks/<provider>")
def webhook(provider: str):
    body = requests.raw_body(app.current_event.raw_event, MAX_BODY)  # the exact bytes the provider signed
    answer = root.container().webhooks.receive(provider, dict(app.current_event.headers), body)
    return responses.json_response(200, answer)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
