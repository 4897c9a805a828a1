"""The exceptions the client raises: one per kind of answer an app handles differently, under one base class."""

from __future__ import annotations

from typing import Any


class OAuthKeeperError(Exception):
    """Base class of every error this client raises.

    Attributes:
        http_status: the HTTP status of the answer (None when no answer came: `TransportError`).
        code: the API's stable error code (`error.code`, e.g. `connection_not_found`), or None for an answer
            API Gateway gave itself (`{"message": ...}`: 403, 429, its own 5xx).
        field: the input the error is about (`owner_id`, `return_to`, `claim`, ...), or None.
        message: for humans; never holds a token, claim code or secret.
        status: the connection's status when the answer names one (409 and 503: `needs_reauth`, `at_risk`, ...).
        reason: why the connection is in that status (`invalid_grant`, `app_disconnected`, ...), or None.
        retryable: whether the same call may succeed later, unchanged.
        request_id: API Gateway's request id (`apigw-requestid`), for support; None when absent.
    """

    retryable = False

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None,
                 field: str | None = None, status: str | None = None, reason: str | None = None,
                 retryable: bool | None = None, request_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.field = field
        self.status = status
        self.reason = reason
        if retryable is not None:
            self.retryable = retryable
        self.request_id = request_id
        self.retry_after = retry_after  # seconds the answer asked to wait (Retry-After), if it did

    def __str__(self) -> str:
        parts = [f"{self.http_status}" if self.http_status else None, self.code, self.message]
        return ": ".join(p for p in parts if p)


class InvalidRequest(OAuthKeeperError):
    """400 (or API Gateway's 413): the input was refused; `field` names it. Fix the call, do not retry it."""


class Forbidden(OAuthKeeperError):
    """403 from API Gateway before any function ran: no valid SigV4 signature (credentials, region, clock), or the
    identity may not invoke this route (`execute-api:Invoke`)."""


class NotFound(OAuthKeeperError):
    """404: no such connection (`connection_not_found`, also a connection of another owner), operation
    (`operation_not_found`), provider (`unknown_provider`) or claim code (`claim_not_found`)."""


class NeedsReauthorization(OAuthKeeperError):
    """409: the connection cannot give tokens without the user. `status` is `needs_reauth`, `disconnecting` or
    `disconnected`; `reason` says why (`invalid_grant`, `refresh_token_expired`, `user_revoked`,
    `app_disconnected`, ...). Ask the user to connect again."""


class ClaimRejected(OAuthKeeperError):
    """A claim code that cannot make a connection: 409 `owner_mismatch` (the connect link was made for another
    owner; the code is burned), 410 `claim_expired` or `claim_used`. Start a new connect."""


class OwnerErased(OAuthKeeperError):
    """409 `owner_erased`: the owner was erased after this connect began (or in this same second, for a new connect
    session: ask again a second later)."""


class ProviderUnavailable(OAuthKeeperError):
    """503 `provider_unavailable`: the provider could not refresh the connection just now and the token held is no
    longer valid. The connection itself is fine: `retryable` is True; try again in a minute."""

    retryable = True


class Throttled(OAuthKeeperError):
    """429: API Gateway's route throttling refused the call. Retryable after a pause."""

    retryable = True


class ServiceError(OAuthKeeperError):
    """A 5xx other than `provider_unavailable`: 500 from the service (`token_unreadable`, `internal_error`,
    `configuration_error`; not retryable) or 502/503/504 from API Gateway (retryable)."""


class TransportError(OAuthKeeperError):
    """No HTTP answer: the connection was refused or cut, TLS failed, or the timeout passed. Retryable, except a
    server certificate that does not verify."""

    retryable = True


class OperationTimeout(OAuthKeeperError, TimeoutError):
    """`wait_for_operation` gave up while the operation was still running; `operation` is the last one read."""

    def __init__(self, message: str, *, operation: Any) -> None:
        super().__init__(message, retryable=True)
        self.operation = operation


def from_answer(http_status: int, body: Any, *, request_id: str | None = None,
                retry_after: float | None = None) -> OAuthKeeperError:
    """The exception for an error answer: `body` is its parsed JSON (the API's `{"error": {...}}` or API Gateway's
    `{"message": ...}`), or None when it was not JSON."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        message = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
        return _gateway_answer(http_status, message or f"HTTP {http_status}", request_id, retry_after)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    facts: dict[str, Any] = {
        "http_status": http_status, "code": code, "field": error.get("field"), "status": error.get("status"),
        "reason": error.get("reason"), "request_id": request_id, "retry_after": retry_after,
    }
    message = str(error.get("message") or code or f"HTTP {http_status}")
    retryable = error.get("retryable") if isinstance(error.get("retryable"), bool) else None
    if http_status == 400:
        return InvalidRequest(message, **facts)
    if http_status == 404:
        return NotFound(message, **facts)
    if http_status == 410 or code == "owner_mismatch":
        return ClaimRejected(message, **facts)
    if code == "owner_erased":
        return OwnerErased(message, **facts)
    if http_status == 409:
        return NeedsReauthorization(message, **facts)
    if http_status == 429:
        return Throttled(message, **facts)
    if http_status == 503 and code == "provider_unavailable":
        return ProviderUnavailable(message, retryable=True if retryable is None else retryable, **facts)
    if http_status >= 500:
        return ServiceError(message, retryable=bool(retryable), **facts)
    return OAuthKeeperError(message, retryable=retryable, **facts)


def _gateway_answer(http_status: int, message: str, request_id: str | None,
                    retry_after: float | None) -> OAuthKeeperError:
    """API Gateway's own answers (no function ran, or the function failed)."""
    facts: dict[str, Any] = {"http_status": http_status, "request_id": request_id, "retry_after": retry_after}
    if http_status == 403:
        return Forbidden(f"{message} (API Gateway refused the call: check the SigV4 credentials, region and clock, "
                         "and that the identity may invoke this route)", **facts)
    if http_status == 429:
        return Throttled(message, **facts)
    if http_status == 404:
        return NotFound(message, **facts)
    if http_status in (400, 413):
        return InvalidRequest(message, **facts)
    if http_status in (502, 503, 504):
        return ServiceError(message, retryable=True, **facts)
    return ServiceError(message, **facts) if http_status >= 500 else OAuthKeeperError(message, **facts)
