"""The client: every backend API route as a method, SigV4-signed with the caller's AWS credentials, retried when
the answer says a retry can help."""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

from . import errors
from .models import AccessToken, Channel, ClaimResult, Connection, ConnectSession, Operation, Page, RefreshResult

__version__ = "0.1.0"
SERVICE = "execute-api"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
logger = logging.getLogger("oauth_keeper_client")


@dataclass(frozen=True)
class RetryPolicy:
    """How retryable failures (429, 503, API Gateway's 502/504, no answer at all) are retried.

    `max_attempts` counts the first call (1: never retry). Attempt n waits a random time between half of and the
    whole of `base_delay * 2**(n-1)` seconds, capped at `max_delay`; an answer's `Retry-After` (seconds) raises
    the wait, and one asking for more than `max_delay` ends the retries at once (the error carries it).
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The API never redirects; a redirect would carry a signed request elsewhere. It surfaces as an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """oauth-keeper's backend API (the AWS_IAM routes), for an app's backend.

    Args:
        base_url: the API's origin, e.g. the stack output `ApiUrl` (`https://abc123.execute-api.eu-west-1.
            amazonaws.com`), a custom domain, or `http://127.0.0.1:3000` for `make dev`.
        region: the region the API runs in, for SigV4. Default: read from an `execute-api` host name, else the
            botocore session's region (`AWS_DEFAULT_REGION`, the profile's `region`).
        session: the botocore session whose credential chain signs (environment, shared files and profiles, SSO,
            container or instance roles). Default: a new `botocore.session.Session()`.
        credentials: explicit botocore credentials instead of the session's chain.
        timeout: seconds to wait for each answer (default 35: API Gateway answers within 30).
        retry: the `RetryPolicy`.
        sleep, clock, rng: injectable `time.sleep`, `time.monotonic` and jitter source (tests never really wait).

    Every method raises a subclass of `errors.OAuthKeeperError` on an error answer (see each method) and
    `botocore.exceptions.NoCredentialsError` when no credentials can be found. A client is safe to share between
    threads; each call opens its own HTTP connection.
    """

    def __init__(self, base_url: str, *, region: str | None = None, session: Session | None = None,
                 credentials: Any = None, timeout: float = 35.0, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) origin, not {base_url!r}")
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._session = session
        self._credentials = credentials
        self._region = region or _region_of(parts.hostname)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep, self._clock, self._rng = sleep, clock, rng or random.Random()  # noqa: S311 - jitter only
        self._opener: urllib.request.OpenerDirector | None = None

    # -- connect ------------------------------------------------------------------------------------------------
    def create_connect_session(self, *, owner_id: str, return_to: str, provider: str = "tiktok",
                               scopes: Sequence[str] | None = None, connection_id: str | None = None,
                               mode: str = "redirect") -> ConnectSession:
        """`POST /connect-sessions`: a single-use connect link for `owner_id`, valid 10 minutes.

        `return_to` is where the browser comes back (its origin must be in `AllowedReturnOrigins`); `scopes` the
        scopes to ask for (default: the stack's `TikTokScopes`); `connection_id` turns it into a scope upgrade of
        that connection; `mode` is `redirect` or `popup`. Raises InvalidRequest (400: `invalid_return_to`,
        `return_to_not_allowed`, ...), NotFound (`unknown_provider`, `connection_not_found`), OwnerErased.
        """
        body: dict[str, Any] = {"owner_id": _required(owner_id, "owner_id"), "provider": provider,
                                "return_to": return_to, "mode": mode}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if connection_id is not None:
            body["connection_id"] = connection_id
        return ConnectSession.from_json(self._call("POST", "/connect-sessions", body=body))

    def claim(self, claim: str, *, owner_id: str) -> ClaimResult:
        """`POST /connections/claims`: turn the grant a connect holds (`status=pending_confirmation&claim=<code>` on
        `return_to`) into a connection of `owner_id`, the owner of the session your page runs in (never one taken
        from the address). Claiming the same code again answers the same.

        Raises ClaimRejected (409 `owner_mismatch`: the link was made for another owner; 410 `claim_expired`,
        `claim_used`), NotFound (`claim_not_found`), OwnerErased, InvalidRequest.
        """
        body = {"claim": _required(claim, "claim"), "owner_id": _required(owner_id, "owner_id")}
        return ClaimResult.from_json(self._call("POST", "/connections/claims", body=body))

    # -- connections ----------------------------------------------------------------------------------------------
    def list_connections(self, *, owner_id: str, limit: int | None = None, cursor: str | None = None) -> Page:
        """`GET /connections`: one page (`limit` 1-100, default 50) of the owner's connections, oldest first.
        Pass the page's `next_cursor` as `cursor` for the next one. Raises InvalidRequest (`invalid_cursor`, ...)."""
        query = {"owner_id": _required(owner_id, "owner_id"), "limit": limit, "cursor": cursor}
        return Page.from_json(self._call("GET", "/connections", query=query))

    def iter_connections(self, *, owner_id: str, page_size: int = 50) -> Iterator[Connection]:
        """Every connection of the owner, fetching pages of `page_size` (1-100) as the iteration needs them."""
        cursor: str | None = None
        while True:
            page = self.list_connections(owner_id=owner_id, limit=page_size, cursor=cursor)
            yield from page.connections
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_connection(self, connection_id: str, *, owner_id: str) -> Connection:
        """`GET /connections/{id}`: status and health. Raises NotFound (also for another owner's connection)."""
        return Connection.from_json(self._on_connection("GET", connection_id, "", owner_id))

    def get_token(self, connection_id: str, *, owner_id: str, min_valid_seconds: int | None = None,
                  channel_id: str | None = None) -> AccessToken:
        """`GET /connections/{id}/token`: an access token valid for at least `min_valid_seconds` (0-3600, default
        300; refreshed first when it expires sooner, which can take up to ~22 s when a refresh is in flight).
        With `channel_id` (one of `list_channels`): that channel's own token when it has one, else the
        connection's (`token_source` says which).

        Raises NeedsReauthorization (409: `status` `needs_reauth`, `disconnecting` or `disconnected`, with
        `reason`), ProviderUnavailable (503, `retryable`, after the client's own retries), NotFound (also
        `channel_not_found`), InvalidRequest (a malformed `channel_id`).
        """
        return AccessToken.from_json(self._on_connection("GET", connection_id, "/token", owner_id,
                                                         min_valid_seconds=min_valid_seconds,
                                                         channel_id=channel_id))

    def list_channels(self, connection_id: str, *, owner_id: str) -> tuple[Channel, ...]:
        """`GET /connections/{id}/channels`: the Pages, organizations or channels the connection's grant can post
        to, as last listed (empty for a provider without channels). No token. Raises NotFound."""
        answer = self._on_connection("GET", connection_id, "/channels", owner_id)
        return tuple(Channel.from_json(c) for c in answer.get("channels") or [])

    def refresh(self, connection_id: str, *, owner_id: str) -> RefreshResult:
        """`POST /connections/{id}/refresh`: refresh now. Provider trouble is in `result` (`retrying`, `paused`),
        not raised. Raises NeedsReauthorization (409), NotFound."""
        return RefreshResult.from_json(self._on_connection("POST", connection_id, "/refresh", owner_id))

    def disconnect(self, connection_id: str, *, owner_id: str) -> Operation:
        """`DELETE /connections/{id}` (202): the connection is `disconnecting` at once (no token is served any
        more); a background job revokes the grant and erases the tokens. Follow it with `get_operation` or
        `wait_for_operation`. Idempotent. Raises NotFound."""
        return Operation.from_json(self._on_connection("DELETE", connection_id, "", owner_id))

    # -- data protection --------------------------------------------------------------------------------------------
    def erase_owner(self, owner_id: str) -> Operation:
        """`DELETE /owners/{owner_id}/connections` (202): erase every connection of the owner (revoked, then
        deleted by a background job) and refuse connect links issued before. Raises InvalidRequest."""
        path = f"/owners/{quote(_required(owner_id, 'owner_id'), safe='')}/connections"
        return Operation.from_json(self._call("DELETE", path))

    def erase_account(self, provider: str, account_id: str) -> Operation:
        """`DELETE /providers/{provider}/accounts/{account_id}/connections` (202): a provider's data-deletion
        request: erase every connection of that provider account, whichever owner made it. Raises InvalidRequest,
        NotFound (`unknown_provider`)."""
        path = (f"/providers/{quote(_required(provider, 'provider'), safe='')}/accounts/"
                f"{quote(_required(account_id, 'account_id'), safe='')}/connections")
        return Operation.from_json(self._call("DELETE", path))

    # -- operations -----------------------------------------------------------------------------------------------
    def get_operation(self, operation: Operation | str) -> Operation:
        """`GET /operations/{operation_id}` (the operation's `status_url`): its progress. Raises NotFound
        (`operation_not_found`: unknown, or older than 30 days)."""
        if isinstance(operation, Operation):
            path = urlsplit(operation.status_url).path  # a path today; an absolute URL would do as well
        else:
            path = f"/operations/{quote(_required(operation, 'operation_id'), safe='')}"
        return Operation.from_json(self._call("GET", path))

    def wait_for_operation(self, operation: Operation | str, *, timeout: float = 120.0,
                           interval: float = 2.0) -> Operation:
        """Poll `get_operation` every `interval` seconds until the operation is done (`succeeded` or `superseded`)
        and return it. A disconnect usually finishes within seconds; one whose provider keeps failing is retried
        for up to 24 hours. Raises OperationTimeout (with the last `operation` read) after `timeout` seconds."""
        deadline = self._clock() + timeout
        current = self.get_operation(operation)
        while not current.done:
            if self._clock() + interval > deadline:
                raise errors.OperationTimeout(
                    f"operation {current.operation_id} still running after {timeout:g} s "
                    f"({current.remaining} remaining)", operation=current)
            self._sleep(interval)
            current = self.get_operation(current)
        return current

    # -- the wire ---------------------------------------------------------------------------------------------------
    def _on_connection(self, method: str, connection_id: str, tail: str, owner_id: str, **query: Any) -> Any:
        """A per-connection call: always scoped to `owner_id` (another owner's connection answers 404)."""
        path = f"/connections/{quote(_required(connection_id, 'connection_id'), safe='')}{tail}"
        return self._call(method, path, query={"owner_id": _required(owner_id, "owner_id"), **query})

    def _call(self, method: str, path: str, *, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> Any:
        """Sign and send one call, retrying what the retry policy allows; the answer's JSON, or an exception."""
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urlencode(params, quote_via=quote, safe="") if params else "")
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(method, url, content)
            except errors.OAuthKeeperError as exc:
                delay = self._backoff(attempt, exc)
                if delay is None:
                    raise
                logger.warning("oauth-keeper %s %s: %s; retry %d of %d in %.2f s", method, path, exc.code or
                               exc.http_status or type(exc).__name__, attempt, self.retry.max_attempts - 1, delay)
                self._sleep(delay)

    def _backoff(self, attempt: int, exc: errors.OAuthKeeperError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final."""
        if not exc.retryable or attempt >= self.retry.max_attempts:
            return None
        ceiling = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        if exc.retry_after is not None:
            if exc.retry_after > self.retry.max_delay:
                return None
            delay = max(delay, exc.retry_after)
        return delay

    def _send(self, method: str, url: str, content: bytes | None) -> Any:
        headers = {"Accept": "application/json", "User-Agent": f"oauth-keeper-client/{__version__}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=url, data=content or b"", headers=headers)
        SigV4Auth(self._frozen_credentials(), SERVICE, self._signing_region()).add_auth(request)
        # S310: base_url's scheme was checked to be http or https in __init__.
        wire = urllib.request.Request(url, data=content, method=method,  # noqa: S310
                                      headers=dict(request.headers.items()))
        try:
            with self._http().open(wire, timeout=self.timeout) as answer:  # noqa: S310
                return _json_of(answer.status, answer.read(), answer.headers)
        except urllib.error.HTTPError as answer:
            with answer:
                raw = answer.read()
            raise errors.from_answer(answer.code, _parse(raw), request_id=answer.headers.get("apigw-requestid"),
                                     retry_after=_retry_after(answer.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, cut, TLS, timeout
            reason = getattr(exc, "reason", exc)
            # A certificate that does not verify will not verify on a retry either.
            raise errors.TransportError(f"no answer from {urlsplit(url).netloc}: {reason}",
                                        retryable=not isinstance(reason, ssl.SSLCertVerificationError)) from exc

    def _http(self) -> urllib.request.OpenerDirector:
        """urllib, with proxies from the environment as usual, no redirects, and TLS verified against the CA bundle
        botocore would use (`AWS_CA_BUNDLE`, the profile's `ca_bundle`), else the system's."""
        if self._opener is None:
            self._session = self._session or Session()
            context = ssl.create_default_context(cafile=self._session.get_config_variable("ca_bundle") or None)
            self._opener = urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=context))
        return self._opener

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            from botocore.exceptions import NoCredentialsError

            self._session = self._session or Session()
            self._credentials = self._session.get_credentials()
            if self._credentials is None:
                raise NoCredentialsError()
        # Refreshable credentials (roles, SSO) refresh here; one consistent key, secret and token per request.
        freeze = getattr(self._credentials, "get_frozen_credentials", None)
        return freeze() if freeze else self._credentials

    def _signing_region(self) -> str:
        if self._region is None:
            self._session = self._session or Session()
            self._region = self._session.get_config_variable("region")
            if not self._region:
                raise ValueError("No AWS region for SigV4: pass region=..., or set AWS_DEFAULT_REGION (or the "
                                 "profile's region) to the API's region")
        return self._region


def _region_of(host: str) -> str | None:
    """The region in an `execute-api` host name (`abc123.execute-api.eu-west-1.amazonaws.com`), else None."""
    found = _EXECUTE_API_HOST.match(host)
    return found.group(1) if found else None


def _required(value: str | None, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is required (a non-empty string)")
    return value


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _json_of(status: int, raw: bytes, headers: Any) -> Any:
    data = _parse(raw)
    if not isinstance(data, dict):
        raise errors.ServiceError(f"HTTP {status} without a JSON object", http_status=status,
                                  request_id=headers.get("apigw-requestid"))
    return data


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from API Gateway; the backoff stands
