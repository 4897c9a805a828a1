"""Fault injection for the simulated TikTok: outages, failures queued for the next token requests, latency,
held answers, and the TikTok-shaped answer each kind of fault produces."""

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .wire import OAuthErrors, Response, json_response, userinfo_error

FAULT_KINDS = ("5xx", "temporarily_unavailable", "timeout", "429")


@dataclass(frozen=True)
class AnswerChange:
    """How a token answer TikTok already made (tokens issued, the old refresh token rotated away) is changed
    on its way back: the hostile world after the provider processed the request."""

    patch: dict[str, Any] = field(default_factory=dict)  # fields set to these values (any JSON, absurd ones too)
    drop: tuple[str, ...] = ()  # fields removed
    status: int | None = None  # another HTTP status for the same body
    raw: bytes | None = None  # the whole body replaced (not JSON, truncated, HTML from a proxy...)
    fault: str | None = None  # "timeout" or "5xx": the answer is lost after TikTok processed the request

    def apply(self, answer: dict[str, Any], faults: "Faults") -> Response:
        if self.fault:
            return faults.token_answer(self.fault)
        body = {k: v for k, v in answer.items() if k not in self.drop}
        body.update(self.patch)
        response = json_response(self.status or 200, body)
        if self.raw is not None:
            response = Response(self.status or 200, self.raw, {"Content-Type": "application/json"})
        return response


class Faults:
    """What is currently broken, and how long answers are held. `latency` and `timeout_delay` are plain
    attributes: tests and in-process transports set them directly."""

    def __init__(self, *, lock: threading.RLock, stats: Counter[str], oauth_error: OAuthErrors):
        self.latency = 0.0  # seconds every token-endpoint answer is held
        self.timeout_delay = 3.0  # how long a "timeout" fault holds its answer: longer than a client waits
        self._lock = lock
        self._stats = stats
        self._oauth_error = oauth_error
        self._outage: str | None = None
        self._fail_queue: list[str] = []
        self._changes: list[AnswerChange] = []
        self._released = threading.Event()  # set while the server stops, so nothing stays held

    # ---- controls --------------------------------------------------------------------------------

    @property
    def outage(self) -> str | None:
        with self._lock:
            return self._outage

    @property
    def queued(self) -> int:
        """How many of the next token requests will still fail."""
        with self._lock:
            return len(self._fail_queue)

    def set_outage(self, kind: str | None) -> None:
        """Make the token, user-info and revoke endpoints fail with `kind` until cleared with None."""
        if kind is not None and kind not in FAULT_KINDS:
            raise ValueError(f"outage kind must be None or one of {FAULT_KINDS}")
        with self._lock:
            self._outage = kind

    def clear(self) -> None:
        """No outage and no queued failures: TikTok behaves again from the next request."""
        with self._lock:
            self._outage = None
            self._fail_queue.clear()
            self._changes.clear()

    def fail_next(self, n: int, kind: str) -> None:
        """The next n token-endpoint requests fail with `kind`, then it behaves again."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._fail_queue.extend([kind] * n)

    def change_next(self, n: int, change: AnswerChange) -> None:
        """The next n successful token answers are processed by TikTok, then changed on the way back."""
        if change.fault is not None and change.fault not in ("timeout", "5xx"):
            raise ValueError("an answer lost after processing is a 'timeout' or a '5xx'")
        with self._lock:
            self._changes.extend([change] * n)

    def take_change(self) -> AnswerChange | None:
        with self._lock:
            return self._changes.pop(0) if self._changes else None

    def take_token_fault(self) -> str | None:
        """The fault this token request meets: a queued failure (used up) first, else the outage, if any."""
        with self._lock:
            return self._fail_queue.pop(0) if self._fail_queue else self._outage

    # ---- holding answers -------------------------------------------------------------------------

    def hold(self, seconds: float) -> None:
        if seconds > 0:
            self._released.wait(seconds)  # release_held() lets held requests go at once

    def release_held(self) -> None:
        self._released.set()

    def rearm(self) -> None:
        self._released.clear()

    # ---- the answers -----------------------------------------------------------------------------

    def token_answer(self, kind: str) -> Response:
        """A token (or revoke) endpoint failing with `kind`."""
        self._stats["faults_injected"] += 1
        if kind == "timeout":
            self.hold(self.timeout_delay)
        if kind == "429":
            response = self._oauth_error("rate_limit_exceeded", "Too many requests (simulated)", 429)
        elif kind == "temporarily_unavailable":
            # An OAuth error code, not an HTTP one: clients must classify by body, whatever the status.
            response = self._oauth_error("temporarily_unavailable", "Service temporarily unavailable (simulated)")
        else:
            response = self._oauth_error("server_error", f"Internal error (simulated {kind})", 503)
        # Lets an in-process transport turn a "timeout" into a client-side timeout without waiting.
        response.headers["X-Sim-Fault"] = kind
        return response

    def userinfo_answer(self, kind: str) -> Response:
        """The user-info endpoint failing with `kind`, in that endpoint's own error shape."""
        self._stats["faults_injected"] += 1
        if kind == "timeout":
            self.hold(self.timeout_delay)
        if kind == "429":
            return userinfo_error(429, "rate_limit_exceeded", "Too many requests (simulated)")
        code = "temporarily_unavailable" if kind == "temporarily_unavailable" else "internal_error"
        return userinfo_error(503, code, f"Service unavailable (simulated {kind})")
