"""The provider client over HTTP (httpx): token, revoke, user-info and channel-list endpoints, TLS verified, one
total deadline.

httpx's timeouts apply per phase and per socket read: a provider that drips its body a byte at a time, just
inside the read timeout, would hold a call for minutes. Every call here gets one total budget instead: the
smaller of PROVIDER_CALL_LIMIT and what the caller's deadline leaves. The caller waits for the request at most
that long; the request stops between reads once the budget is spent. Time is read from the injected clock, so
simulated latencies in tests count exactly as real ones do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..domain.channels import Listing, read_page
from ..domain.deadlines import MIN_PROVIDER_CALL, PROVIDER_CALL_LIMIT
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
from ..domain.providers import ProviderProfile, RequestShape
from ..domain.tokens import ClientCredentials, TokenSet, UserProfile
from ..observability import MetricUnit, logger, record_metric

CONNECT_LIMIT = 3.0  # seconds to open a connection (within the call's budget)
HTTP_TIMEOUT = httpx.Timeout(PROVIDER_CALL_LIMIT, connect=CONNECT_LIMIT)  # defaults; every call sets its own
_LONGER_THAN_ANY_CAP = 1_000_000_000  # seconds: a Retry-After of ten digits or more
MAX_ANSWER_BYTES = 256 * 1024  # a provider answer is a few hundred bytes; anything huge is not parsed


def new_http_client() -> httpx.Client:
    """The one pooled client a warm container uses for every provider call (TLS verified, no redirects)."""
    return httpx.Client(timeout=HTTP_TIMEOUT, verify=True, follow_redirects=False,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any  # parsed JSON, or {} when it was not JSON or too large
    retry_after: str | None


class _Late(Exception):
    """The next read could end past the call's budget."""


class HttpProviderClient:
    """The `ProviderClient` port over HTTP: token, chain, revoke and user-info requests shaped per step by the
    profile (by default form bodies to the token and revoke endpoints, RFC 6749 section 4.1.3, 6 and RFC 7009,
    and a bearer GET to user info). Failures become `ProviderError` with a `FailureKind`.

    Every method takes `deadline`: epoch seconds (per the injected clock) by which the call must be over."""

    def __init__(self, http: Any, now: Callable[[], float]) -> None:
        self._http = http
        self._now = now

    def exchange_code(self, profile: ProviderProfile, creds: ClientCredentials, *, code: str, redirect_uri: str,
                      code_verifier: str | None, deadline: float | None = None) -> TokenSet:
        """Exchange an authorization code (RFC 6749 section 4.1.3, with RFC 7636's `code_verifier`), shaped as
        the profile's `code_exchange` request says (method, encoding, client authentication, extra params).

        Raises ProviderError (kind from the profile's error rules and table; `timeout`/`network_error` are
        transient)."""
        params = {
            "code": code,  # already decoded once from the callback query; httpx encodes it once
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
        }
        if code_verifier:
            params["code_verifier"] = code_verifier
        return self._token_request(profile, profile.request("code_exchange"), "code_exchange", params, creds,
                                   deadline)

    def exchange_link(self, profile: ProviderProfile, creds: ClientCredentials, index: int, access_token: str, *,
                      deadline: float | None = None) -> TokenSet:
        """Chain link `index` of the profile's connect chain: the previous access token exchanged for the next
        (Meta's short-lived for long-lived token: `ig_exchange_token`, `th_exchange_token`, `fb_exchange_token`).

        Returns the link's TokenSet (its own lifetime; account and scopes are the caller's to carry over).
        Raises ProviderError like `exchange_code`."""
        shape = profile.link(index)
        return self._token_request(profile, shape, "chain", {shape.credential_param or "access_token": access_token},
                                   creds, deadline)

    def refresh(self, profile: ProviderProfile, creds: ClientCredentials, refresh_token: str, *,
                deadline: float | None = None) -> TokenSet:
        """Renew a grant (RFC 6749 section 6) with its refresh credential: the refresh token, or, under the
        `extend` and `re_exchange` strategies, the access token itself (Meta's `ig_refresh_token`,
        `fb_exchange_token`), shaped as the profile's `refresh` request says. Under strict rotation the old
        refresh token dies when this succeeds.

        Raises ProviderError; `maybe_processed` says the provider may have rotated (the caller marks it)."""
        shape = profile.request("refresh")
        params = {"grant_type": "refresh_token", shape.credential_param or "refresh_token": refresh_token}
        return self._token_request(profile, shape, "refresh", params, creds, deadline)

    def revoke(self, profile: ProviderProfile, creds: ClientCredentials, access_token: str, *,
               deadline: float | None = None) -> str | None:
        """Revoke a grant at the provider (RFC 7009; by default a form body with the client's credentials).
        Returns its log id; None when the profile has no revoke endpoint."""
        shape = profile.request("revoke")
        if not shape.url:
            return None
        answer = self._call(profile, shape.method, shape.url, deadline,
                            **self._shaped(profile, shape, {shape.credential_param or "token": access_token}, creds))
        code = answer.body.get("error") if isinstance(answer.body, dict) else None
        if answer.status >= 400 or code:
            raise provider_error(profile, answer.body, answer.status, step="revoke")
        return log_id_of(answer.body)

    def fetch_user(self, profile: ProviderProfile, access_token: str, *,
                   deadline: float | None = None) -> UserProfile:
        """The account's id, display name and avatar from the user-info endpoint (TikTok's /v2/user/info/, OIDC
        userinfo, X's /2/users/me), the access token as a bearer header (RFC 6750 section 2.1) or, when the
        profile's `userinfo` request says `bearer: false`, as a query parameter (Meta's Graph API). Raises
        ProviderError."""
        shape = profile.request("userinfo")
        if not shape.url:
            return UserProfile(None, None, None)
        params = {**profile.userinfo.query, **shape.params}
        headers = {"Accept": "application/json", **profile.headers}
        if shape.bearer:
            headers["Authorization"] = f"Bearer {access_token}"
        else:
            params[shape.credential_param or "access_token"] = access_token
        answer = self._call(profile, shape.method, shape.url, deadline, params=params or None, headers=headers)
        body, fields = answer.body, profile.userinfo
        ok = answer.status < 400 and (
            fields.success_path is None or dig(body, fields.success_path) == fields.success_value
        )
        if not ok:
            code = dig(body, "error.code") if isinstance(dig(body, "error"), dict) else dig(body, "error")
            code, kind = profile.classify_answer(body, answer.status, "userinfo", str(code or "") or None)
            raise ProviderError(
                "User info refused.",
                code=str(code or "userinfo_failed")[:64],
                kind=kind,
                log_id=log_id_of(body),
                http_status=answer.status,
            )
        return UserProfile(
            account_id=bounded_text(dig(body, fields.account_id), MAX_ACCOUNT_ID_LENGTH),
            display_name=bounded_text(dig(body, fields.display_name), MAX_DISPLAY_NAME_LENGTH),
            avatar_url=bounded_url(dig(body, fields.avatar_url)),
        )

    def list_channels(self, profile: ProviderProfile, access_token: str, *,
                      deadline: float | None = None) -> Listing:
        """The channels the grant can post to, per the profile's `channels` section (ADR 0024): its GET with the
        access token (bearer, or the `credential_param` query parameter), then its `next` page URLs on the same
        host, at most `max_pages` answers in all, every one within `deadline`. An empty Listing when the profile
        lists no channels. Raises ProviderError when the provider refuses (4xx/5xx, classified by the profile's
        error rules) or does not answer in time; an answer of the wrong shape lists nothing (`refused`)."""
        fields = profile.channels
        if fields is None:
            return Listing(())
        headers = {"Accept": "application/json", **profile.headers, **fields.headers}
        params: dict[str, str] | None = dict(fields.query)
        if fields.bearer:
            headers["Authorization"] = f"Bearer {access_token}"
        else:
            params = {**fields.query, fields.credential_param: access_token}
        origin = urlsplit(fields.url)[:2]
        url: str | None = fields.url
        kept: list = []
        refused, truncated = 0, False
        for _ in range(fields.max_pages):
            if url is None:
                break
            answer = self._call(profile, "GET", url, deadline, params=params or None, headers=headers)
            if answer.status >= 400:
                error = dig(answer.body, "error")
                code = dig(answer.body, "error.code") if isinstance(error, dict) else error
                code, kind = profile.classify_answer(answer.body, answer.status, "channels", str(code or "") or None)
                raise ProviderError("Channel list refused.", code=str(code or "channels_failed")[:64], kind=kind,
                                    log_id=log_id_of(answer.body), http_status=answer.status)
            page = read_page(fields, answer.body, kept=len(kept))
            seen = {c.channel_id for c in kept}
            kept.extend(c for c in page.channels if c.channel_id not in seen)  # a page repeating an earlier one
            refused += page.refused
            truncated = truncated or page.truncated
            following = dig(answer.body, fields.next) if fields.next else None
            # The next page only on the listing's own host: an answer never sends the token anywhere else.
            url = following if isinstance(following, str) and urlsplit(following)[:2] == origin else None
            params = None  # a next-page URL carries its own query (Graph's holds the token and the cursor)
            if page.truncated or len(kept) >= fields.max_items:
                truncated = truncated or url is not None
                break
        else:
            truncated = truncated or url is not None
        if refused or truncated:
            logger.warning("Channel list bounded", extra={"provider": profile.name, "refused": refused,
                                                          "truncated": truncated})
            record_metric("ProviderAnswerAnomalies", MetricUnit.Count, refused + int(truncated))
        return Listing(tuple(kept), refused, truncated)

    # -- internals -------------------------------------------------------------------------------------------
    def _token_request(self, profile: ProviderProfile, shape: RequestShape, step: str, params: dict[str, str],
                       creds: ClientCredentials, deadline: float | None) -> TokenSet:
        sent_at = int(self._now())
        answer = self._call(profile, shape.method, shape.url or profile.token_url, deadline,
                            **self._shaped(profile, shape, params, creds))
        try:
            tokens = token_answer(profile, answer.body, answer.status, sent_at, step=step,
                                  bounds=shape.access_lifetime)
        except ProviderError as exc:
            if answer.status == 429:
                exc.retry_after = self._retry_after(answer.retry_after)
            raise
        if tokens.anomalies:  # names of fields only, never values
            logger.warning("Provider answer corrected", extra={"provider": profile.name,
                                                                "anomalies": list(tokens.anomalies)})
            record_metric("ProviderAnswerAnomalies", MetricUnit.Count, len(tokens.anomalies))
        return tokens

    @staticmethod
    def _shaped(profile: ProviderProfile, shape: RequestShape, params: dict[str, str],
                creds: ClientCredentials) -> dict[str, Any]:
        """The request's parameters, encoded and with the client authenticated as `shape` says (RFC 6749 section
        2.3.1: `client_secret_basic` or `client_secret_post`; `client_secret_only`: the secret without the id;
        `none`: nothing), plus the profile's fixed `params` (they may replace a default such as `grant_type`)
        and its required headers."""
        headers = {"Accept": "application/json", **profile.headers}
        values = {**params, **shape.params}
        if shape.client_auth == "client_secret_basic":
            pair = f"{quote(creds.client_id, safe='')}:{quote(creds.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif shape.client_auth == "client_secret_post":  # everything in the body (TikTok takes nothing else)
            values = {profile.client_id_param: creds.client_id, "client_secret": creds.client_secret, **values}
        elif shape.client_auth == "client_secret_only":
            values = {"client_secret": creds.client_secret, **values}
        if shape.encoding == "query":
            return {"params": values, "headers": headers}
        if shape.encoding == "json":
            return {"json": values, "headers": headers}
        if shape.encoding == "multipart":
            return {"files": {k: (None, v) for k, v in values.items()}, "headers": headers}
        return {"data": values, "headers": headers}

    def _call(self, profile: ProviderProfile, method: str, url: str, deadline: float | None,
              **request: Any) -> _Answer:
        """One request within one total budget. Raises ProviderError: `no_time` (not sent), `timeout` or
        `network_error` (`maybe_processed` unless the request provably never left).

        The request runs on a pool thread and the caller waits at most the budget for it: however the provider
        drips its answer, the caller is free in time. The thread itself stops at the budget too (it checks the
        clock between reads), or at one read timeout after it, when a read stalls."""
        started = self._now()
        budget = PROVIDER_CALL_LIMIT if deadline is None else min(PROVIDER_CALL_LIMIT, deadline - started)
        if budget < MIN_PROVIDER_CALL:  # too little to tell an answer from a hang: not started
            raise ProviderError(f"No time left to call {profile.display_name}.", code="no_time",
                                kind=FailureKind.TRANSIENT)
        future = _calls().submit(self._exchange, profile, method, url, started, budget, request)
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            raise ProviderError(f"{profile.display_name} did not answer in time.", code="timeout",
                                kind=FailureKind.TRANSIENT, maybe_processed=True) from None

    def _exchange(self, profile: ProviderProfile, method: str, url: str, started: float, budget: float,
                  request: dict[str, Any]) -> _Answer:
        left = budget - (self._now() - started)
        if left < MIN_PROVIDER_CALL:
            # This call waited for a free pool thread until its caller gave up (or nearly): never send it. A
            # refresh sent now could rotate a token whose answer nobody is waiting for.
            raise ProviderError(f"No time left to call {profile.display_name}.", code="no_time",
                                kind=FailureKind.TRANSIENT)
        chunks: list[bytes] = []
        size = 0
        timeout = httpx.Timeout(left, connect=min(left, CONNECT_LIMIT))
        try:
            with self._http.stream(method, url, timeout=timeout, **request) as response:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size <= MAX_ANSWER_BYTES:
                        chunks.append(chunk)
                    if self._now() - started > budget:
                        raise _Late
                status, retry_after = response.status_code, response.headers.get("retry-after")
            if self._now() - started > budget:  # the answer came, but later than the caller may wait
                raise _Late
        except (_Late, httpx.TimeoutException) as exc:
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
        return _Answer(status, _json(b"".join(chunks)) if size <= MAX_ANSWER_BYTES else {}, retry_after)

    def _retry_after(self, value: str | None) -> int | None:
        """Seconds from an HTTP Retry-After header (RFC 9110 section 10.2.3: seconds or an HTTP-date); None
        when absent or unreadable. Bounding it is the breaker's business."""
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        if value.isascii() and value.isdigit():
            # Any number of digits is a wait; past nine it is longer than any cap, so it is not converted.
            return (int(value) if len(value) <= 9 else _LONGER_THAN_ANY_CAP) or None
        try:
            from email.utils import parsedate_to_datetime

            seconds = int(parsedate_to_datetime(value).timestamp() - self._now())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        return seconds if seconds > 0 else None


@cache
def _calls() -> ThreadPoolExecutor:
    """The threads provider calls run on (the refresh worker runs up to RefreshConcurrency calls at once)."""
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="provider-call")


def _json(content: bytes) -> Any:
    """The answer's JSON, or {} when it is not JSON."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
