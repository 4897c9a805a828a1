"""Conformance tests run oauth-keeper against a real OAuth 2.0 server (oidc-provider, see oidc_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.oidc_server import OidcServer


@pytest.fixture
def oidc() -> Iterator[OidcServer]:
    """A fresh server per test: one confidential client (client_secret_post), redirect URI
    https://keeper.example.com/callback/oidc, 120 s access tokens, 1 day refresh tokens.
    Tests needing other settings call `OidcServer.start(...)` themselves (`with OidcServer.start(...) as s:`)."""
    with OidcServer.start() as server:
        yield server
