"""oauth-keeper's backend API for Python: `Client` signs each call with SigV4 (botocore) and answers typed values
(`models`) or raises typed errors (`errors`)."""

from .client import Client, RetryPolicy, __version__
from .errors import (
    ClaimRejected,
    Forbidden,
    InvalidRequest,
    NeedsReauthorization,
    NotFound,
    OAuthKeeperError,
    OperationTimeout,
    OwnerErased,
    ProviderUnavailable,
    ServiceError,
    Throttled,
    TransportError,
)
from .models import (
    AccessToken,
    Channel,
    ClaimResult,
    Connection,
    ConnectSession,
    LastRefresh,
    Operation,
    Page,
    RefreshResult,
    RevokeState,
)

__all__ = [
    "AccessToken", "Channel", "ClaimRejected", "ClaimResult", "Client", "ConnectSession", "Connection", "Forbidden",
    "InvalidRequest", "LastRefresh", "NeedsReauthorization", "NotFound", "OAuthKeeperError", "Operation",
    "OperationTimeout", "OwnerErased", "Page", "ProviderUnavailable", "RefreshResult", "RetryPolicy", "RevokeState",
    "ServiceError", "Throttled", "TransportError", "__version__",
]
