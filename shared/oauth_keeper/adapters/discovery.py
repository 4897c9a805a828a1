"""OAuth server metadata discovery (RFC 8414 / OpenID Connect Discovery) for generic profiles."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..domain.errors import ConfigurationError
from ..domain.providers import ProviderProfile


def discovered(profile: ProviderProfile, http: Any) -> ProviderProfile:
    """Fill the profile's endpoints from `<issuer>/.well-known/openid-configuration`.

    The document's issuer must be exactly the configured one, or it may be someone else's metadata.
    Explicitly configured endpoint URLs win over discovered ones.
    """
    if not profile.discovery or not profile.issuer:
        return profile
    url = profile.issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"})
        metadata = response.json()
    except Exception as exc:  # noqa: BLE001 - any failure here is the deployment's to fix
        raise ConfigurationError(f"Discovery failed for {profile.name}.") from exc
    if not isinstance(metadata, dict) or metadata.get("issuer") != profile.issuer:
        raise ConfigurationError(f"Discovery for {profile.name} names another issuer.")
    return replace(
        profile,
        authorize_url=profile.authorize_url or metadata.get("authorization_endpoint", ""),
        token_url=profile.token_url or metadata.get("token_endpoint", ""),
        userinfo_url=profile.userinfo_url or metadata.get("userinfo_endpoint"),
        revoke_url=profile.revoke_url or metadata.get("revocation_endpoint"),
        require_iss=bool(metadata.get("authorization_response_iss_parameter_supported")),
    )
