"""Handlers run as Lambda runs them, in simulated time: each function's Timeout from template.yaml, API Gateway
HTTP API's 30 s, AWS calls that take time. Nobody sleeps: latencies move the shared clock, deadlines are
cooperative, and the harness records every point where Lambda would already have cut the invocation off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from oauth_keeper.domain.deadlines import API_GATEWAY_LIMIT

from local.apigw import LambdaContext, _timeout

# AWS operations that change something: one landing after the cut-off would be work Lambda never finished.
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem", "SendMessage",
          "SendMessageBatch", "PutEvents", "GenerateDataKey"}


def function_timeout(function: str) -> float:
    """The function's Timeout in template.yaml (its own, else Globals')."""
    return _timeout(function)


@dataclass
class Invocation:
    function: str
    started: float
    cutoff: float  # when Lambda (or API Gateway, for a route) ends it
    late: list[str] = field(default_factory=list)  # what happened after the cut-off

    def context(self, clock: Any) -> LambdaContext:
        context = LambdaContext(self.function)
        context.get_remaining_time_in_millis = lambda: max(0, int((self.cutoff - clock.now()) * 1000))
        return context


class SimulatedLambda:
    """`with lam.invoke("CallbackFunction", api=True) as call: handler(event, call.context(clock))`, then
    `assert not call.late`. AWS calls advance `clock` by `aws_latency` seconds each."""

    def __init__(self, clock: Any, *, aws_latency: float = 0.02) -> None:
        self._clock = clock
        self.aws_latency = aws_latency
        self._current: Invocation | None = None
        self._lock = threading.Lock()

    @contextmanager
    def invoke(self, function: str, *, api: bool = False) -> Iterator[Invocation]:
        import botocore.client

        now = self._clock.now()
        limit = function_timeout(function)
        if api:
            limit = min(limit, API_GATEWAY_LIMIT)
        call = Invocation(function, now, now + limit)
        original = botocore.client.BaseClient._make_api_call
        harness = self

        def timed(client: Any, operation: str, params: dict[str, Any]) -> Any:
            harness._check(call, f"{operation} started")
            answer = original(client, operation, params)
            harness._clock.advance(harness.aws_latency)
            if operation in WRITES:
                harness._check(call, f"{operation} landed")
            return answer

        botocore.client.BaseClient._make_api_call = timed
        try:
            yield call
        finally:
            botocore.client.BaseClient._make_api_call = original
            self._check(call, "the answer was returned")

    def _check(self, call: Invocation, what: str) -> None:
        over = self._clock.now() - call.cutoff
        if over > 0:
            with self._lock:
                call.late.append(f"{what} {over:.1f} s after {call.function} was cut off")
