"""The errors the layer raises, as values the handlers map to HTTP answers in one place (web.py)."""

from __future__ import annotations


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

    TRANSIENT = "transient"  # back off and retry
    TERMINAL = "terminal"  # the grant is gone: the user must reconnect
    OPERATOR = "operator"  # our client configuration is wrong: alarm, don't blame the user
    REJECTED = "rejected"  # this one request was refused (e.g. a used authorization code)

    def __init__(
        self, message: str, *, code: str, kind: str, log_id: str | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.kind = kind
        self.log_id = log_id
        self.http_status = http_status

    @property
    def retryable(self) -> bool:
        return self.kind in (self.TRANSIENT, self.REJECTED)


class ConfigurationError(OAuthKeeperError):
    """The deployment is missing something (a parameter, a secret)."""

    status = 500
    code = "configuration_error"


class TokenDecryptionError(OAuthKeeperError):
    """A stored ciphertext failed authentication: tampered, truncated or moved to another connection."""

    status = 500
    code = "token_unreadable"
