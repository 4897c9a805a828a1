"""The one logger and metrics object every module uses (Powertools; no Tracer: it costs cold-start time)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="oauth-keeper")
metrics = Metrics(namespace="OAuthKeeper", service="oauth-keeper")

__all__ = ["logger", "metrics", "MetricUnit"]
