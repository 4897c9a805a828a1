"""The one logger and metrics object every module uses (Powertools; no Tracer: it costs cold-start time)."""

from __future__ import annotations

import logging
import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

# At DEBUG these log what they send and receive: botocore the client secret (SSM GetParameter), KMS data keys and
# raw DynamoDB items; urllib3 and httpx/httpcore URLs and headers. Their levels are set here, so a root logger at
# DEBUG (Lambda's AWS_LAMBDA_LOG_LEVEL, a caller's logging.basicConfig, a test) never turns them on; our own
# logger follows POWERTOOLS_LOG_LEVEL / LogLevel as before.
QUIET_LIBRARIES = ("boto3", "botocore", "urllib3", "httpx", "httpcore")


def quiet_libraries() -> None:
    """Keep every library of QUIET_LIBRARIES at WARNING or above, whatever the root logger's level (a level
    already above WARNING is kept). Idempotent; runs on import."""
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        if library.level < logging.WARNING:  # NOTSET (0) would follow the root logger
            library.setLevel(logging.WARNING)


quiet_libraries()
logger = Logger(service="oauth-keeper")
metrics = Metrics(namespace="OAuthKeeper", service="oauth-keeper")
_metrics_lock = threading.Lock()


def record_metric(name: str, unit: MetricUnit, value: float) -> None:
    """`metrics.add_metric`, safe from the refresh worker's threads: Powertools reads, appends and stores a
    metric's values without a lock, so two threads adding a new name at once lose one value, and a metric can
    pass its 100-value flush point unnoticed."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=unit, value=value)


__all__ = ["logger", "metrics", "record_metric", "MetricUnit"]
