"""SQS batch of connection ids: refresh each (single-flight, rotation-safe), report partial failures."""

from oauth_keeper import root
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    return root.container().refresh_worker.process(event.get("Records", []), deadline=root.deadline_of(context))
