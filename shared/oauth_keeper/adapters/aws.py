"""AWS clients: created once per warm container, thread-safely, never at import time, with bounded deadlines.

Never at import: moto can intercept them and cold starts stay short. Once and under a lock: the refresh worker
builds them from its threads, and boto3's default session is not thread-safe. Bounded: botocore's defaults
(60 s read timeout, legacy retries) would outlive every function's timeout in template.yaml.
"""

from __future__ import annotations

import threading
from typing import Any

# Seconds. One call's worst case: 3 attempts x (1 s connect + 2 s read) plus standard-mode backoff, well under
# the shortest function timeout (10 s); DynamoDB, KMS, SQS, SSM and EventBridge answer in milliseconds.
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
MAX_ATTEMPTS = 3

_lock = threading.Lock()
_session: Any = None
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """The warm container's one client for `service` (e.g. "dynamodb"), created on first use."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            _clients[service] = _session_locked().client(service, config=_config())
        return _clients[service]


def reset() -> None:
    """Forget every client and the session (tests switch between moto contexts)."""
    global _session
    with _lock:
        _clients.clear()
        _session = None


def _session_locked() -> Any:
    global _session
    if _session is None:
        import boto3  # imported here: ~140 ms that only paths which talk to AWS should pay

        _session = boto3.session.Session()
    return _session


def _config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                  retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"})
