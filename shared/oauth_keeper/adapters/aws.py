"""Lazily created AWS clients: never at import time, so moto can intercept them and cold starts stay short."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3  # imported here: ~140 ms that only paths which talk to AWS should pay

    return boto3.client(service)


def reset() -> None:
    """Forget every client (tests switch between moto contexts). Making creation thread-safe is tracked apart."""
    client.cache_clear()
