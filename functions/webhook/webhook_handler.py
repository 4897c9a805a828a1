"""The provider callbacks (signed by the provider, not IAM): TikTok's webhook, Meta-style deauthorize and data
deletion, and the public status of a data-deletion request."""

from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import root
from oauth_keeper.domain.errors import OAuthKeeperError
from oauth_keeper.http import requests, responses
from oauth_keeper.observability import logger, metrics
from oauth_keeper.usecases.deauthorization import MAX_FORM
from oauth_keeper.usecases.webhooks import MAX_BODY

root.container()  # cold start: missing configuration fails here, loudly
app = responses.api_app()

# What the status page tells a person (Meta: "a human-readable explanation of the status of their request").
_STATUS_PAGES = {
    "received": ("Deletion request received", "We have your request to delete the data this service keeps "
                 "about your account, and will begin shortly. Check this page again later."),
    "in_progress": ("Deletion in progress", "We are deleting the data this service keeps about your account: "
                    "its connection and the access it granted. Check this page again later."),
    "completed": ("Deletion completed", "The data this service kept about your account has been deleted."),
}


@app.post("/webhooks/<provider>")
def webhook(provider: str):
    body = requests.raw_body(app.current_event.raw_event, MAX_BODY)  # the exact bytes the provider signed
    answer = root.container().webhooks.receive(provider, dict(app.current_event.headers), body)
    return responses.json_response(200, answer)


@app.post("/deauthorize/<provider>")
def deauthorize(provider: str):
    body = requests.raw_body(app.current_event.raw_event, MAX_FORM)
    return responses.json_response(200, root.container().deauthorizations.deauthorize(provider, body))


@app.post("/data-deletion/<provider>")
def request_deletion(provider: str):
    body = requests.raw_body(app.current_event.raw_event, MAX_FORM)
    container = root.container()
    base_url = requests.base_url(container.settings.public_base_url,
                                app.current_event.raw_event.get("requestContext", {}))
    return responses.json_response(200, container.deauthorizations.request_deletion(provider, body,
                                                                                    base_url=base_url))


@app.get("/data-deletion/<provider>")
def deletion_status(provider: str):
    """`?code=`: a person reads it (HTML); a program asking for `application/json` gets `{"status": ...}`. The
    code travels in the query string, which the API's access log leaves out."""
    wants_json = requests.prefers_json(app.current_event.headers)
    try:
        code = requests.single_value(requests.parse_query(app.current_event.raw_query_string), "code")
        status = root.container().deauthorizations.deletion_status(provider, code or "")
    except OAuthKeeperError as exc:
        if wants_json or exc.status >= 500:
            raise
        return responses.html_page(exc.status, "Not found" if exc.status == 404 else "Not a confirmation code",
                                   exc.message)
    if wants_json:
        return responses.json_response(200, status)
    title, message = _STATUS_PAGES[status["status"]]
    return responses.html_page(200, title, message)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
