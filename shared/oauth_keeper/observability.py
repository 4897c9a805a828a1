"""The one logger and metrics object every module uses (Powertools; no Tracer: it costs cold-start time)."""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

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
