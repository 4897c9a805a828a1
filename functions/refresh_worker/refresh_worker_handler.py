"""SQS batch of connection ids: refresh each (single-flight, rotation-safe), report partial failures."""

from oauth_keeper.observability import logger, metrics
from oauth_keeper.runtime import services
from oauth_keeper.worker import process_records


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    svc = services()
    return process_records(event.get("Records", []), svc.refresher, svc.settings.refresh_concurrency)
