"""EventBridge Scheduler tick: find the connections due for a refresh and queue them for the workers."""

from oauth_keeper import root
from oauth_keeper.observability import logger, metrics

root.container()  # cold start: missing configuration fails here, loudly


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    # Scheduler sends our Input, not the EventBridge envelope: the tick's own time and id.
    logger.append_keys(scheduled_time=event.get("scheduled_time"), execution_id=event.get("execution_id"))
    return root.container().sweep.run().as_dict()
