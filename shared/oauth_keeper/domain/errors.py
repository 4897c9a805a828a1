"""The errors the layer raises, as values the HTTP layer maps to answers in one place (http/responses.py)."""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    """Whose problem a provider's refusal is; it decides what the service does next."""

    TRANSIENT = "transient"  # back off and retry: nobody did anything wrong
    TERMINAL = "terminal"  # the grant is gone (RFC 6749 section 5.2 invalid_grant): the user must reconnect
    OPERATOR = "operator"  # our client configuration is wrong: alarm, never blame the user
    REJECTED = "rejected"  # this one request was refused (e.g. a used authorization code)


class OAuthKeeperError(Exception):
    """Base class. `code` is stable and safe to show; `message` never contains a secret."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}  # more safe-to-show facts for the API's error body (status, reason, ...)
        if code:
            self.code = code


class InvalidInput(OAuthKeeperError):
    status = 400
    code = "invalid_request"


class NotFound(OAuthKeeperError):
    status = 404
    code = "not_found"


class Unauthorized(OAuthKeeperError):
    status = 401
    code = "unauthorized"


class ConnectionUnavailable(OAuthKeeperError):
    """The connection cannot give a token without the user: the app should prompt a reconnect."""

    status = 409
    code = "connection_unavailable"


class OwnerErased(OAuthKeeperError):
    """What was asked for was issued on or before its owner's erasure (domain/erasure.py): refused, nothing stored.
    A new request, made after the erasure, works."""

    status = 409
    code = "owner_erased"


class ClaimRefused(OAuthKeeperError):
    """A claim of a pending grant (domain/claims.py) that cannot make a connection: unknown (404), used, expired
    or ended by the user at the provider (410), for another owner (409 `owner_mismatch`, the code is burned)."""

    status = 410
    code = "claim_refused"

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code, field="claim")
        self.status = status


class TemporarilyUnavailable(OAuthKeeperError):
    """The provider cannot be reached right now; the connection itself is fine. Retry later."""

    status = 503
    code = "provider_unavailable"


class FlowRejected(OAuthKeeperError):
    """A browser step that cannot continue and has no trustworthy return_to: answered with an HTML page."""

    status = 400
    code = "flow_rejected"

    def __init__(self, message: str, *, code: str, status: int = 400, title: str = "") -> None:
        super().__init__(message, code=code)
        self.status = status
        self.title = title or "This connection link can't be used"


class ProviderError(OAuthKeeperError):
    """The provider refused or failed a request. `kind` says whose problem it is."""

    status = 502
    code = "provider_error"

    TRANSIENT = FailureKind.TRANSIENT
    TERMINAL = FailureKind.TERMINAL
    OPERATOR = FailureKind.OPERATOR
    REJECTED = FailureKind.REJECTED

    def __init__(
        self, message: str, *, code: str, kind: str, log_id: str | None = None, http_status: int | None = None,
        maybe_processed: bool = False, retry_after: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.kind = FailureKind(kind)
        self.log_id = log_id
        self.http_status = http_status
        # The provider may have processed the request (and, for a refresh, rotated the token) although we hold
        # no usable answer: the request was sent and then timed out or was cut, a 5xx came back from something
        # that may sit in front of the provider, or a 2xx carried an answer we cannot use.
        self.maybe_processed = maybe_processed
        self.retry_after = retry_after  # seconds the provider asked us to wait (HTTP Retry-After), if it did

    @property
    def retryable(self) -> bool:
        return self.kind in (self.TRANSIENT, self.REJECTED)


class ConfigurationError(OAuthKeeperError):
    """The deployment is missing something (an environment variable, a parameter, a secret).

    Raised at cold start by `Settings.from_env` so a broken deployment fails its first invocation loudly,
    and later by the SSM adapter when a client credential is missing."""

    status = 500
    code = "configuration_error"


class TokenDecryptionError(OAuthKeeperError):
    """A stored ciphertext failed authentication: tampered, truncated or moved to another connection."""

    status = 500
    code = "token_unreadable"


class FlowRejection(Exception):
    """Why a flow could not be consumed: unknown (or already used), expired, foreign_browser, wrong_provider."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
