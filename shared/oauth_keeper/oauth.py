"""The OAuth 2.0 protocol as a confidential client: PKCE, authorize URLs, token and user-info calls."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from .errors import ProviderError
from .providers import ProviderProfile

# HTTP timeout < refresh lease < function timeout (design.md). 8 s stays well inside a 10 s function.
HTTP_TIMEOUT = httpx.Timeout(8.0, connect=3.0)


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***)"


@dataclass(frozen=True)
class TokenSet:
    """One token response, with every expiry taken from the response itself."""

    access_token: str
    refresh_token: str | None
    token_type: str
    access_expires_at: int | None
    refresh_expires_at: int | None
    scopes: tuple[str, ...]
    account_id: str | None
    issued_at: int

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=***, refresh_token={'***' if self.refresh_token else None}, "
            f"access_expires_at={self.access_expires_at}, refresh_expires_at={self.refresh_expires_at}, "
            f"scopes={self.scopes}, account_id={self.account_id!r})"
        )


@dataclass(frozen=True)
class UserProfile:
    account_id: str | None
    display_name: str | None
    avatar_url: str | None


def new_secret() -> str:
    """256 bits of randomness, URL-safe: states, nonces, connect-session tokens."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, inside RFC 7636's 43..128


def code_challenge(verifier: str, mode: str) -> str | None:
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


class TokenEndpoint:
    """Calls a provider's token, user-info and revoke endpoints with form bodies, TLS verified."""

    def __init__(self, http: httpx.Client, now: Any) -> None:
        self._http = http
        self._now = now

    def exchange_code(
        self,
        profile: ProviderProfile,
        creds: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
    ) -> TokenSet:
        form = {
            "code": code,  # already decoded once from the callback query; httpx form-encodes it once
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
        }
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token_request(profile, creds, form)

    def refresh(self, profile: ProviderProfile, creds: ClientCredentials, refresh_token: str) -> TokenSet:
        return self._token_request(profile, creds, {"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _token_request(self, profile: ProviderProfile, creds: ClientCredentials, form: dict[str, str]) -> TokenSet:
        sent_at = int(self._now())
        body, status = self._post_form(profile, profile.token_url, form, creds)
        access = body.get(profile.token_fields.access_token) if isinstance(body, dict) else None
        if not access or not isinstance(access, str):
            # Success is the presence of an access token, whatever the status says (TikTok's are undocumented).
            raise _provider_error(profile, body, status)
        return parse_token_response(profile, body, sent_at)

    def revoke(self, profile: ProviderProfile, creds: ClientCredentials, access_token: str) -> str | None:
        """Revoke a grant at the provider (form body, credentials in it). Returns the provider's log id."""
        if not profile.revoke_url:
            return None
        body, status = self._post_form(profile, profile.revoke_url, {"token": access_token}, creds)
        code = body.get("error") if isinstance(body, dict) else None
        if status >= 400 or code:
            raise _provider_error(profile, body, status)
        return _log_id(body)

    def fetch_user(self, profile: ProviderProfile, access_token: str) -> UserProfile:
        if not profile.userinfo_url:
            return UserProfile(None, None, None)
        try:
            response = self._http.get(
                profile.userinfo_url,
                params=profile.userinfo.query or None,
                headers={"Authorization": f"Bearer {access_token}"},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError(
                "User info unavailable.", code="provider_unavailable", kind=ProviderError.TRANSIENT
            ) from exc
        fields = profile.userinfo
        ok = response.status_code < 400 and (
            fields.success_path is None or _dig(body, fields.success_path) == fields.success_value
        )
        if not ok:
            code = _dig(body, "error.code") if isinstance(_dig(body, "error"), dict) else _dig(body, "error")
            raise ProviderError(
                "User info refused.",
                code=str(code or "userinfo_failed"),
                kind=profile.classify(str(code or ""), response.status_code),
                log_id=_log_id(body),
                http_status=response.status_code,
            )
        return UserProfile(
            account_id=_str_or_none(_dig(body, fields.account_id)),
            display_name=_str_or_none(_dig(body, fields.display_name)),
            avatar_url=_str_or_none(_dig(body, fields.avatar_url)),
        )

    def _post_form(self, profile: ProviderProfile, url: str, form: dict[str, str],
                   creds: ClientCredentials) -> tuple[Any, int]:
        """POST a form body with the client authenticated as the profile says (RFC 6749 section 2.3.1)."""
        headers = {"Accept": "application/json"}
        if profile.client_auth == "client_secret_basic":
            pair = f"{quote(creds.client_id, safe='')}:{quote(creds.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:  # client_secret_post: everything in the body (TikTok takes nothing else)
            form = {profile.client_id_param: creds.client_id, "client_secret": creds.client_secret, **form}
        try:
            response = self._http.post(url, data=form, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{profile.display_name} did not answer in time.", code="timeout", kind=ProviderError.TRANSIENT
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{profile.display_name} could not be reached.", code="network_error", kind=ProviderError.TRANSIENT
            ) from exc
        try:
            return response.json(), response.status_code
        except ValueError:
            return {}, response.status_code


def parse_token_response(profile: ProviderProfile, body: dict[str, Any], sent_at: int) -> TokenSet:
    """Map a successful token response to a TokenSet. Expiries count from when the request was sent."""
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
        return _str_or_none(_dig(_jwt_claims(body.get("id_token")), path[len("id_token."):]))
    return _str_or_none(_dig(body, path))


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


def _provider_error(profile: ProviderProfile, body: Any, status: int) -> ProviderError:
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, dict):  # some APIs nest {"error": {"code": ...}}
        code = code.get("code")
    code = str(code) if code else ("http_" + str(status))
    return ProviderError(
        f"{profile.display_name} refused the token request ({code}).",
        code=code,
        kind=profile.classify(code, status),
        log_id=_log_id(body),
        http_status=status,
    )


def _log_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    value = body.get("log_id") or _dig(body, "error.log_id")
    return str(value) if value else None


def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
