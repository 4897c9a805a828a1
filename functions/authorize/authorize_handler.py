"""GET /connect/{provider}?session=...: the browser arrives with a connect link and is sent to the provider."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import web
from oauth_keeper.connect import parse_query, start_authorization
from oauth_keeper.observability import logger, metrics
from oauth_keeper.runtime import services

app = web.browser_app()


@app.get("/connect/<provider>")
def get_connect(provider: str):
    event = app.current_event
    base = web.base_url(services().settings.public_base_url, event.raw_event.get("requestContext", {}))
    redirect = start_authorization(provider, parse_query(event.raw_query_string), base)
    return web.redirect(redirect.location,
                        cookies=[web.flow_cookie(redirect.cookie_name, redirect.cookie_value, redirect.max_age)])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
