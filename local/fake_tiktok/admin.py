"""The simulator's control API under /_sim/, which the local dashboard drives: stats, users, faults, and what a
user does inside TikTok (remove the app, outlive a refresh token)."""

import json
import threading
from collections import Counter

from .authority import Authority
from .faults import Faults
from .wire import Response, json_response


class Admin:
    def __init__(self, *, authority: Authority, faults: Faults, stats: Counter[str], lock: threading.RLock):
        self._authority = authority
        self._faults = faults
        self._stats = stats
        self._lock = lock

    def handle(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body or b"{}") if method == "POST" else {}
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            if (method, path) == ("GET", "/_sim/stats"):
                with self._lock:  # one consistent picture of the counters and the fault controls
                    return json_response(
                        200,
                        {
                            "stats": dict(self._stats),
                            "outage": self._faults.outage,
                            "fail_next": self._faults.queued,
                            "latency": self._faults.latency,
                        },
                    )
            if (method, path) == ("GET", "/_sim/users"):
                return json_response(200, {"users": {h: vars(u) for h, u in self._authority.users.items()}})
            if (method, path) == ("POST", "/_sim/outage"):
                self._faults.set_outage(payload.get("kind"))
                return json_response(200, {"outage": payload.get("kind")})
            if (method, path) == ("POST", "/_sim/fail-next"):
                self._faults.fail_next(int(payload["n"]), payload["kind"])
                return json_response(200, {"fail_next": self._faults.queued})
            if (method, path) == ("POST", "/_sim/latency"):
                self._faults.latency = float(payload["seconds"])
                return json_response(200, {"latency": self._faults.latency})
            if (method, path) == ("POST", "/_sim/revoke"):
                return json_response(200, {"revoked": self._authority.revoke_user(payload["open_id"])})
            if (method, path) == ("POST", "/_sim/expire-refresh"):
                return json_response(200, {"expired": self._authority.expire_refresh_token(payload["open_id"])})
        except (ValueError, KeyError, TypeError) as exc:
            return json_response(400, {"error": "invalid_request", "error_description": str(exc)})
        return json_response(404, {"error": "not_found", "error_description": f"no such endpoint: {method} {path}"})
