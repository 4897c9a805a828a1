"""The one logger and metrics object every module uses (Powertools; no Tracer: it costs cold-start time)."""

from __future__ import annotations

import json
import logging
import sys
import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

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


def record_metric_by(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    """One metric with dimensions of its own besides `service` (e.g. `RefreshOutcome` by `outcome` and `reason`),
    written at once as an EMF line of its own: every metric of the shared `metrics` object gets the same dimensions.

    Powertools' `SingleMetric` builds and validates the line (`single_metric` would print it in two writes, and a
    log line from another of the worker's threads could land between them, breaking both). Nothing is written while
    Powertools metrics are disabled (POWERTOOLS_METRICS_DISABLED: `make demo`, `make dev`), as for `metrics`.
    Dimension values must be non-empty strings; raises Powertools' MetricValueError or SchemaValidationError
    otherwise."""
    if is_metrics_disabled():
        return
    metric = SingleMetric(namespace=metrics.provider.namespace)
    metric.add_metric(name=name, unit=unit, value=value)
    metric.add_dimension(name="service", value=metrics.provider.service)
    for dimension, dimension_value in dimensions.items():
        metric.add_dimension(name=dimension, value=dimension_value)
    line = json.dumps(metric.serialize_metric_set(), separators=(",", ":")) + "\n"
    with _metrics_lock:
        sys.stdout.write(line)


__all__ = ["logger", "metrics", "record_metric", "record_metric_by", "MetricUnit"]
