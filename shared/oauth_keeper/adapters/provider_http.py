"""The provider client over HTTP (httpx): token, revoke and user-info endpoints, TLS verified, deadlines set."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from ..domain.errors import FailureKind, ProviderError
from ..domain.protocol import (
    MAX_ACCOUNT_ID_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    bounded_text,
    bounded_url,
    dig,
    log_id_of,
    provider_error,
    token_answer,
)
from ..domain.providers import ProviderProfile
from ..domain.tokens import ClientCredentials, TokenSet, UserProfile
from ..observability import MetricUnit, logger, record_metric

# HTTP timeout < refresh lease < function timeout (docs/architecture.md, "Deadlines"). 8 s a phase stays well
# inside the API function's 25 s.
HTTP_TIMEOUT = httpx.Timeout(8.0, connect=3.0)
MAX_ANSWER_BYTES = 256 * 1024  # a provider answer is a few hundred bytes; anything huge is not parsed


def _json_body(response: Any) -> Any:
    """The answer's JSON, or {} when it is not JSON or too large to be a real answer."""
    content = getattr(response, "content", None)
    if isinstance(content, bytes) and len(content) > MAX_ANSWER_BYTES:
        return {}
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}


def new_http_client() -> httpx.Client:
    """The one pooled client a warm container uses for every provider call (TLS verified, no redirects)."""
    return httpx.Client(timeout=HTTP_TIMEOUT, verify=True, follow_redirects=False,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))


class HttpProviderClient:
    """The `ProviderClient` port over HTTP: form bodies to the token and revoke endpoints (RFC 6749 section
    4.1.3, 6; RFC 7009), a bearer GET to user info. Failures become `ProviderError` with a `FailureKind`."""

    def __init__(self, http: httpx.Client, now: Callable[[], float]) -> None:
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
        """Exchange an authorization code (RFC 6749 section 4.1.3, with RFC 7636's `code_verifier`).

        Raises ProviderError (kind from the profile's error table; `timeout`/`network_error` are transient)."""
        form = {
            "code": code,  # already decoded once from the callback query; httpx form-encodes it once
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
        }
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token_request(profile, creds, form)

    def refresh(self, profile: ProviderProfile, creds: ClientCredentials, refresh_token: str) -> TokenSet:
        """Use a refresh token (RFC 6749 section 6). Under strict rotation the old one dies when this succeeds.

        Raises ProviderError; a `timeout` may have reached the provider (the caller marks it in doubt)."""
        return self._token_request(profile, creds, {"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _token_request(self, profile: ProviderProfile, creds: ClientCredentials, form: dict[str, str]) -> TokenSet:
        sent_at = int(self._now())
        body, status, retry_after = self._post_form(profile, profile.token_url, form, creds)
        try:
            tokens = token_answer(profile, body, status, sent_at)
        except ProviderError as exc:
            if status == 429:
                exc.retry_after = retry_after
            raise
        if tokens.anomalies:  # names of fields only, never values
            logger.warning("Provider answer corrected", extra={"provider": profile.name,
                                                                "anomalies": list(tokens.anomalies)})
            record_metric("ProviderAnswerAnomalies", MetricUnit.Count, len(tokens.anomalies))
        return tokens

    def revoke(self, profile: ProviderProfile, creds: ClientCredentials, access_token: str) -> str | None:
        """Revoke a grant at the provider (form body, credentials in it). Returns the provider's log id."""
        if not profile.revoke_url:
            return None
        body, status, _ = self._post_form(profile, profile.revoke_url, {"token": access_token}, creds)
        code = body.get("error") if isinstance(body, dict) else None
        if status >= 400 or code:
            raise provider_error(profile, body, status)
        return log_id_of(body)

    def fetch_user(self, profile: ProviderProfile, access_token: str) -> UserProfile:
        """The account's display name and avatar (TikTok's /v2/user/info/ or OIDC userinfo). Raises ProviderError."""
        if not profile.userinfo_url:
            return UserProfile(None, None, None)
        try:
            response = self._http.get(
                profile.userinfo_url,
                params=profile.userinfo.query or None,
                headers={"Authorization": f"Bearer {access_token}"},
            )
            body = _json_body(response)
        except httpx.HTTPError as exc:
            raise ProviderError(
                "User info unavailable.", code="provider_unavailable", kind=ProviderError.TRANSIENT
            ) from exc
        fields = profile.userinfo
        ok = response.status_code < 400 and (
            fields.success_path is None or dig(body, fields.success_path) == fields.success_value
        )
        if not ok:
            code = dig(body, "error.code") if isinstance(dig(body, "error"), dict) else dig(body, "error")
            raise ProviderError(
                "User info refused.",
                code=str(code or "userinfo_failed"),
                kind=profile.classify(str(code or ""), response.status_code),
                log_id=log_id_of(body),
                http_status=response.status_code,
            )
        return UserProfile(
            account_id=bounded_text(dig(body, fields.account_id), MAX_ACCOUNT_ID_LENGTH),
            display_name=bounded_text(dig(body, fields.display_name), MAX_DISPLAY_NAME_LENGTH),
            avatar_url=bounded_url(dig(body, fields.avatar_url)),
        )

    def _post_form(self, profile: ProviderProfile, url: str, form: dict[str, str],
                   creds: ClientCredentials) -> tuple[Any, int, int | None]:
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
            # Only a connect (or pool) timeout proves the request never left; any later one may have been processed.
            raise ProviderError(
                f"{profile.display_name} did not answer in time.", code="timeout", kind=FailureKind.TRANSIENT,
                maybe_processed=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{profile.display_name} could not be reached.", code="network_error", kind=FailureKind.TRANSIENT,
                maybe_processed=not isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol),
            ) from exc
        return _json_body(response), response.status_code, self._retry_after(response)

    def _retry_after(self, response: Any) -> int | None:
        """Seconds from an HTTP Retry-After header (RFC 9110 section 10.2.3: seconds or an HTTP-date); None
        when absent or unreadable. Bounding it is the breaker's business."""
        value = (getattr(response, "headers", None) or {}).get("retry-after")
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) <= 9:
            return int(value) or None
        try:
            from email.utils import parsedate_to_datetime

            seconds = int(parsedate_to_datetime(value).timestamp() - self._now())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        return seconds if seconds > 0 else None


