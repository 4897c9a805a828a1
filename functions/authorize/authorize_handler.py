"""GET /connect/{provider}?session=...: the browser arrives with a connect link and is sent to the provider."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly
app = responses.browser_app()


@app.get("/connect/<provider>")
def get_connect(provider: str):
    event, parts = app.current_event, root.container()
    base = requests.base_url(parts.settings.public_base_url, event.raw_event.get("requestContext", {}))
    redirect = parts.authorization.start(provider, requests.parse_query(event.raw_query_string), base)
    return responses.redirect(redirect.location, cookies=[
        responses.flow_cookie(redirect.cookie_name, redirect.cookie_value, redirect.max_age)])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
