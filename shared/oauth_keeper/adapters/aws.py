"""AWS clients: created once per warm container, thread-safely, never at import time, with bounded deadlines.

Never at import: moto can intercept them and cold starts stay short. Once and under a lock: the refresh worker
builds them from its threads, and boto3's default session is not thread-safe. Bounded: botocore's defaults
(60 s read timeout, legacy retries) would outlive every function's timeout in template.yaml.
"""

from __future__ import annotations

import threading
from typing import Any

from ..domain.deadlines import AWS_ATTEMPTS, AWS_CONNECT_TIMEOUT, AWS_READ_TIMEOUT

# DynamoDB, KMS, SQS, SSM and EventBridge answer in milliseconds: one call's worst case (domain/deadlines.py,
# AWS_CALL_LIMIT) stays far below the shortest function timeout.
CONNECT_TIMEOUT = AWS_CONNECT_TIMEOUT
READ_TIMEOUT = AWS_READ_TIMEOUT
MAX_ATTEMPTS = AWS_ATTEMPTS

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


class LazyClient:
    """Stands for the container's client of one service until an adapter first uses it (an attribute looked up:
    a call, `.meta`, `.exceptions`); only then is the client created (`client`). The composition root wires
    adapters with these, so an invocation creates the clients of the calls it makes and no others (a worker
    invocation that publishes no event creates no EventBridge client: ~5-45 ms of a cold start each)."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(client(self._service), name)

    def __repr__(self) -> str:
        return f"LazyClient({self._service!r})"


def lazy_client(service: str) -> Any:
    """A `LazyClient` for `service` (e.g. "events"): nothing is created until it is used."""
    return LazyClient(service)


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
