"""OAuth 2.0 as a confidential client, the pure part: secrets, PKCE, authorize URLs, token and error answers.

No I/O here: the HTTP adapter sends what these functions build and hands back what the provider said, so
every rule below (RFC 6749, RFC 7636, RFC 9207's `iss`, OIDC's id_token `sub`) is testable on plain data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import urlencode

from .errors import ProviderError
from .providers import ProviderProfile
from .tokens import TokenSet


def new_secret() -> str:
    """256 bits of randomness, URL-safe (43 characters): states, nonces, connect-session tokens.

    RFC 9700 section 4.7.1: a state must be unguessable; it is stored only as a hash."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636 section 4.1): 64 URL-safe characters, inside the 43..128 allowed."""
    return secrets.token_urlsafe(48)  # 64 characters, inside RFC 7636's 43..128


def code_challenge(verifier: str, mode: str) -> str | None:
    """The PKCE challenge for `mode`: `s256` is RFC 7636 section 4.2 (base64url SHA-256), `s256-hex` is
    TikTok's variant (the hex digest, still labelled S256), `none` gives None."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if mode == "s256":
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if mode == "s256-hex":  # TikTok's desktop/mobile variant: the hex digest, still labelled S256
        return digest.hex()
    return None


def authorize_url(
    profile: ProviderProfile,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: tuple[str, ...],
    code_verifier: str | None,
) -> str:
    """The authorization request URL (RFC 6749 section 4.1.1, RFC 7636 section 4.3): the profile's endpoint
    with client id, `response_type=code`, scopes joined the provider's way, redirect URI, state, challenge."""
    params = {
        profile.client_id_param: client_id,
        "response_type": "code",
        "scope": profile.join_scopes(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    challenge = code_challenge(code_verifier, profile.pkce) if code_verifier else None
    if challenge:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    separator = "&" if "?" in profile.authorize_url else "?"
    return profile.authorize_url + separator + urlencode(params)


def parse_token_response(profile: ProviderProfile, body: dict[str, Any], sent_at: int) -> TokenSet:
    """A successful token response (RFC 6749 section 5.1) as a TokenSet, mapped by the profile's field names.

    Expiries count from `sent_at` (epoch seconds, when the request left), so a slow answer never stretches
    them. An empty or missing refresh token becomes None: it never overwrites a stored one."""
    f = profile.token_fields
    refresh = body.get(f.refresh_token)
    return TokenSet(
        access_token=body[f.access_token],
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,  # empty never overwrites
        token_type=str(body.get(f.token_type) or "Bearer"),
        access_expires_at=_expiry(sent_at, body.get(f.expires_in)),
        refresh_expires_at=_expiry(sent_at, body.get(f.refresh_expires_in)) if f.refresh_expires_in else None,
        scopes=profile.split_scopes(body.get(f.scope) if isinstance(body.get(f.scope), str) else None),
        account_id=_account_id(body, f.account_id),
        issued_at=sent_at,
    )


def _account_id(body: dict[str, Any], path: str | None) -> str | None:
    """The account the tokens belong to: a response field, or a claim of the id_token (`id_token.sub`).

    The id_token came straight from the token endpoint over TLS to an authenticated client, so OIDC Core
    3.1.3.7 lets us read it without checking its signature; we only need its subject.
    """
    if not path:
        return None
    if path.startswith("id_token."):
        return str_or_none(dig(_jwt_claims(body.get("id_token")), path[len("id_token."):]))
    return str_or_none(dig(body, path))


def _jwt_claims(token: Any) -> dict[str, Any]:
    try:
        payload = str(token).split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return data if isinstance(data, dict) else {}
    except (IndexError, ValueError):
        return {}


def _expiry(sent_at: int, seconds: Any) -> int | None:
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return None
    return sent_at + value if value > 0 else None


def provider_error(profile: ProviderProfile, body: Any, status: int) -> ProviderError:
    """An error answer (RFC 6749 section 5.2, or a nested `{"error": {"code"}}`) as a classified ProviderError."""
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, dict):  # some APIs nest {"error": {"code": ...}}
        code = code.get("code")
    code = str(code) if code else ("http_" + str(status))
    return ProviderError(
        f"{profile.display_name} refused the token request ({code}).",
        code=code,
        kind=profile.classify(code, status),
        log_id=log_id_of(body),
        http_status=status,
    )


def log_id_of(body: Any) -> str | None:
    """The provider's request id (TikTok's `log_id`), for support tickets; never a secret."""
    if not isinstance(body, dict):
        return None
    value = body.get("log_id") or dig(body, "error.log_id")
    return str(value) if value else None


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (`data.user.open_id`) in parsed JSON; None when any step is missing."""
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
