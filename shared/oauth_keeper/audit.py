"""The audit trail: one JSON record per audited API call (who, what, which, when, outcome), whatever the LogLevel.

The shape is `AuditRecord`, documented in docs/audit.md. Records go to stdout (the function's log group) through
their own Powertools Logger: its own service name makes it its own Python logger, and its level is fixed here, so
POWERTOOLS_LOG_LEVEL (the template's `LogLevel`), which sets the service logger, never silences it. A record
never holds a token, code, state, cookie, secret or request body: only the caller's identity, the action, ids
from the path or the use case, the time and the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal, TypedDict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares import BaseMiddlewareHandler, NextMiddleware

from .domain.errors import OAuthKeeperError
from .domain.timestamps import iso8601

AUDIT_SERVICE = "oauth-keeper-audit"
AUDIT_VERSION = 1
AUDIT_MESSAGE = "Audit"

# INFO given explicitly: Powertools then ignores POWERTOOLS_LOG_LEVEL for this logger (only a Lambda Advanced
# Logging Controls level would still win, and the template sets none).
audit_logger = Logger(service=AUDIT_SERVICE, level="INFO")

Outcome = Literal["allowed", "refused", "error"]
ALLOWED: Outcome = "allowed"  # answered with 2xx/3xx
REFUSED: Outcome = "refused"  # a 4xx: bad input, unknown id, a connection that cannot give a token, ...
ERROR: Outcome = "error"  # a 5xx: our side or the provider's; nothing was handed out

_WHICH = ("connection_id", "owner_id", "operation_id", "provider", "account_id", "grant_owner_id")
_MAX_VALUE = 256  # ids come from the path before validation: bounded, so a record stays small


class AuditRecord(TypedDict):
    """One audited request (docs/audit.md). None values are left out of the JSON line (Powertools drops them):
    an id the request did not name or reach, an error code of an allowed call, `caller` on a public route."""

    audit: str  # what: the action, e.g. "token_read"
    audit_version: int  # AUDIT_VERSION; a change of meaning gets a new version
    outcome: Outcome
    http_status: int  # what the route answered
    error_code: str | None  # the API's `error.code` when refused or failed, e.g. "needs_reauth"
    error_field: str | None  # the parameter a 400 refused, e.g. "min_valid_seconds"
    reason: str | None  # why a connection could not serve, e.g. "invalid_grant" (the API's `error.reason`)
    caller: str | None  # who: the IAM principal's ARN (requestContext.authorizer.iam.userArn); None on public routes
    caller_account: str | None  # its AWS account (iam.accountId)
    caller_id: str | None  # its unique id (iam.callerId, e.g. "AROA...:session")
    source_ip: str | None  # requestContext.http.sourceIp, the only "who" of a public route
    connection_id: str | None
    owner_id: str | None  # the owner named in the path, or the owner of the connection the request reached
    operation_id: str | None
    provider: str | None  # a provider account's erasure: the provider and the account id (decoded) in its path
    account_id: str | None
    grant_owner_id: str | None  # a claim refused `owner_mismatch`: the owner who began that connect (never answered)
    at: str | None  # when, ISO 8601 UTC from the service's clock
    correlation_id: str | None  # API Gateway's requestId: the same key in the function's logs and the access log


_open: ContextVar[AuditRecord | None] = ContextVar("oauth_keeper_audit_record", default=None)


def note(**which: str | None) -> None:
    """Tell the audit record of the request in progress which connection, owner, operation or provider account
    it reached (`connection_id`, `owner_id`, `operation_id`, `provider`, `account_id`; `grant_owner_id`: whose
    connect a refused claim was); the first value of each
    wins. Outside an audited request (the sweep, the worker, another thread) it does nothing. Raises TypeError
    for another name."""
    record = _open.get()
    for name, value in which.items():
        if name not in _WHICH:
            raise TypeError(f"note() takes {', '.join(_WHICH)}, not {name}")
        if record is not None and isinstance(value, str) and value and record[name] is None:
            record[name] = _bounded(value)


class Audited(BaseMiddlewareHandler):
    """A Powertools route middleware that writes one audit record per call of its route, whatever the outcome:
    `@app.get(path, middlewares=[Audited("token_read", now=...)])`. `now` gives epoch seconds (the service's
    injectable clock). Errors still reach the resolver's exception handlers unchanged."""

    def __init__(self, action: str, *, now: Callable[[], float]) -> None:
        super().__init__()
        self.action = action
        self._now = now

    def handler(self, app: Any, next_middleware: NextMiddleware) -> Response:
        event = app.current_event
        record = _started(self.action, event.raw_event.get("requestContext") or {}, event.path_parameters or {})
        opened = _open.set(record)
        try:
            response = next_middleware(app)
        except OAuthKeeperError as exc:
            reason = exc.extra.get("reason")
            _write(record, self._now, exc.status, code=exc.code, field=exc.field,
                   reason=reason if isinstance(reason, str) else None)
            raise
        except Exception:
            _write(record, self._now, 500, code="internal_error")
            raise
        finally:
            _open.reset(opened)
        _write(record, self._now, response.status_code)
        return response


def _started(action: str, request_context: dict[str, Any], path: dict[str, str]) -> AuditRecord:
    iam = (request_context.get("authorizer") or {}).get("iam") or {}
    http = request_context.get("http") or {}
    return {
        "audit": action, "audit_version": AUDIT_VERSION, "outcome": ERROR, "http_status": 500,
        "error_code": None, "error_field": None, "reason": None,
        "caller": _text(iam.get("userArn")), "caller_account": _text(iam.get("accountId")),
        "caller_id": _text(iam.get("callerId")), "source_ip": _text(http.get("sourceIp")),
        "connection_id": _text(path.get("connection_id")), "owner_id": _text(path.get("owner_id")),
        "operation_id": _text(path.get("operation_id")), "provider": _text(path.get("provider")),
        "account_id": None,  # percent-encoded in the path: the route notes it decoded
        "grant_owner_id": None,
        "at": None, "correlation_id": _text(request_context.get("requestId")),
    }


def _write(record: AuditRecord, now: Callable[[], float], status: int, *, code: str | None = None,
           field: str | None = None, reason: str | None = None) -> None:
    record["http_status"] = status
    record["outcome"] = ALLOWED if status < 400 else REFUSED if status < 500 else ERROR
    record["error_code"], record["error_field"], record["reason"] = code, _text(field), _text(reason)
    record["at"] = iso8601(now())
    audit_logger.info(AUDIT_MESSAGE, extra=dict(record))


def _text(value: Any) -> str | None:
    return _bounded(value) if isinstance(value, str) and value else None


def _bounded(value: str) -> str:
    return value[:_MAX_VALUE]
