"""What a provider's endpoints answer, as values: token sets (RFC 6749 section 5.1), user profiles, credentials."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientCredentials:
    """The confidential client's identity at the provider (RFC 6749 section 2.3.1)."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***)"


@dataclass(frozen=True)
class TokenSet:
    """One successful token response, every expiry taken from the response itself (epoch seconds)."""

    access_token: str
    refresh_token: str | None
    token_type: str
    access_expires_at: int | None
    refresh_expires_at: int | None
    scopes: tuple[str, ...]
    account_id: str | None
    issued_at: int  # when the request was sent: expiries count from here, never from when it arrived
    anomalies: tuple[str, ...] = ()  # fields the provider got wrong and what was assumed instead (no values)
    # A refresh token's end as reported when its lifetime was below the profile's minimum (refresh_expires_at
    # then holds the fallback): trusted only where it matches the end already known, i.e. the provider told
    # the remaining life of a refresh token it did not extend.
    short_refresh_expires_at: int | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=***, refresh_token={'***' if self.refresh_token else None}, "
            f"access_expires_at={self.access_expires_at}, refresh_expires_at={self.refresh_expires_at}, "
            f"scopes={self.scopes}, account_id={self.account_id!r}, anomalies={self.anomalies})"
        )


@dataclass(frozen=True)
class UserProfile:
    """The account's public face from the provider's user-info endpoint; every field may be missing."""

    account_id: str | None
    display_name: str | None
    avatar_url: str | None
