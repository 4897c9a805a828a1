"""GET /callback/{provider}: the provider sends the browser back with a code (or an error)."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly
app = responses.browser_app()


@app.get("/callback/<provider>")
def get_callback(provider: str):
    event = app.current_event
    result = root.container().callback.complete(provider, requests.parse_query(event.raw_query_string),
                                                requests.request_cookies(event.cookies),
                                                deadline=root.deadline_of(app.lambda_context))
    cookies = [responses.expired_cookie(result.cookie_name)]
    if result.mode == "popup":
        return responses.popup_result(result.origin, result.message, result.location, cookies=cookies)
    return responses.redirect(result.location, cookies=cookies)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
