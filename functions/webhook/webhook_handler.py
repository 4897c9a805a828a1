"""POST /webhooks/{provider}: the provider tells us a user removed the app (signed by the provider, not IAM)."""

import base64
import binascii

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from oauth_keeper import web
from oauth_keeper.errors import InvalidInput, OAuthKeeperError
from oauth_keeper.observability import logger, metrics
from oauth_keeper.webhooks import MAX_BODY, receive

app = APIGatewayHttpResolver(debug=False)
app.exception_handler(OAuthKeeperError)(web.json_error)
app.exception_handler(NotFoundError)(web.not_found_json)
app.exception_handler(Exception)(web.unexpected_json)


def _raw_body() -> bytes:
    """The exact bytes the provider signed (API Gateway may have base64-encoded them)."""
    event = app.current_event.raw_event
    body = event.get("body") or ""
    if len(body) > MAX_BODY * 2:
        raise InvalidInput("The body is too large.", code="too_large", field="body")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("The body is not valid base64.", field="body") from exc
    return body.encode("utf-8", "surrogateescape")


@app.post("/webhooks/<provider>")
def webhook(provider: str):
    return web.json_response(200, receive(provider, dict(app.current_event.headers), _raw_body()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return app.resolve(event, context)
