"""Connecting an account: connect sessions, the authorize redirect and the callback (design.md flows 1-3)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import events
from .clock import iso8601
from .connections import Connection, Grant, connection_id_for
from .errors import FlowRejected, InvalidInput, NotFound, ProviderError
from .flows import SESSION_TTL, ConnectSession, FlowRejection, OAuthFlow, secret_hash
from .oauth import TokenSet, authorize_url, new_code_verifier, new_secret
from .observability import MetricUnit, logger, metrics
from .runtime import services
from .schedule import plan_next_refresh
from .settings import normalize_origin
from .validation import checked_return_to, parse_connect_request, requested_scopes

COOKIE_PREFIX = "__Host-okf-"
MAX_SECRET_LENGTH = 512

# The closed list of error codes the app may receive on return_to, and whether trying again can help.
CALLBACK_ERRORS: dict[str, bool] = {
    "access_denied": False,  # the user cancelled on the consent screen
    "invalid_scope": False,
    "invalid_request": False,
    "unauthorized_client": False,
    "unsupported_response_type": False,
    "server_error": True,
    "temporarily_unavailable": True,
    "exchange_failed": True,  # the code exchange failed: wait a few minutes and try again
    "provider_config": False,  # our client configuration is wrong: an operator must fix it
    "account_unavailable": True,  # the provider did not say which account was connected
    "account_mismatch": True,  # a scope upgrade came back for another account than the connection's
    "issuer_mismatch": False,  # the response names another authorization server (RFC 9207 mix-up defence)
    "provider_error": True,
}


@dataclass(frozen=True)
class AuthorizationRedirect:
    location: str
    cookie_name: str
    cookie_value: str
    max_age: int


@dataclass(frozen=True)
class CallbackResult:
    return_to: str
    params: dict[str, str]
    cookie_name: str
    mode: str

    @property
    def location(self) -> str:
        return with_query(self.return_to, self.params)

    @property
    def origin(self) -> str:
        return normalize_origin(self.return_to)

    @property
    def message(self) -> dict[str, object]:
        """What a pop-up posts to its opener: the same facts as the redirect's query."""
        message: dict[str, object] = dict(self.params)
        if "retryable" in message:
            message["retryable"] = message["retryable"] == "true"
        for name in ("missing_scopes", "granted_scopes"):
            if name in message:
                message[name] = str(message[name]).split(",")
        return message


def flow_cookie_name(state: str) -> str:
    """Per-flow cookie name, derived one-way from the state: two tabs connecting at once each keep theirs."""
    return COOKIE_PREFIX + hashlib.sha256(f"cookie:{state}".encode()).hexdigest()[:20]


def redirect_uri(base_url: str, provider: str) -> str:
    return f"{base_url}/callback/{provider}"


# -- 1. POST /connect-sessions ---------------------------------------------------------------------------
def create_connect_session(body: dict, base_url: str) -> dict[str, str]:
    svc = services()
    request = parse_connect_request(body)
    profile = svc.profile(request.provider)
    return_to = checked_return_to(request.return_to, svc.settings.allowed_return_origins)
    scopes = requested_scopes(profile, request.scopes)
    if request.connection_id:  # a scope upgrade: ask for what it has plus what is wanted now
        existing = svc.connections.get(request.connection_id)
        if existing is None or existing.owner_id != request.owner_id or existing.provider != profile.name:
            raise NotFound("No such connection for this owner.", code="connection_not_found", field="connection_id")
        scopes = tuple(dict.fromkeys((*existing.scopes_granted, *scopes)))
    now = svc.now()
    token = new_secret()
    session = ConnectSession(
        owner_id=request.owner_id, provider=profile.name, return_to=return_to, scopes=scopes,
        expires_at=int(now) + SESSION_TTL, connection_id=request.connection_id, mode=request.mode,
    )
    svc.flows.put_session(token, session)
    logger.info("Connect session created", extra={"owner_id": request.owner_id, "provider": profile.name})
    metrics.add_metric("ConnectSessionsCreated", MetricUnit.Count, 1)
    return {
        "connect_url": f"{base_url}/connect/{profile.name}?" + urlencode({"session": token}),
        "expires_at": iso8601(session.expires_at) or "",
    }


# -- 2. GET /connect/{provider} ---------------------------------------------------------------------------
def start_authorization(provider: str, query: dict[str, list[str]], base_url: str) -> AuthorizationRedirect:
    svc = services()
    profile = svc.profile(provider)
    token = _single(query, "session")
    if not token:
        raise FlowRejected("This link is missing its connect session. Start again from the app.",
                           code="missing_session")
    now = svc.now()
    session = svc.flows.take_session(token, profile.name, now)
    if session is None:
        raise FlowRejected(
            "This connect link has expired or was already used. Go back to the app and start again.",
            code="session_invalid", status=410, title="This connect link is no longer valid",
        )
    state, nonce = new_secret(), new_secret()
    verifier = new_code_verifier() if profile.pkce != "none" else None
    uri = redirect_uri(base_url, profile.name)
    svc.flows.put_flow(state, OAuthFlow(
        provider=profile.name, owner_id=session.owner_id, return_to=session.return_to, scopes=session.scopes,
        redirect_uri=uri, code_verifier=verifier, nonce_hash=secret_hash("nonce", nonce),
        expires_at=int(now) + SESSION_TTL, mode=session.mode, connection_id=session.connection_id,
    ))
    client = svc.credentials(profile, with_secret=False)
    location = authorize_url(profile, client_id=client.client_id, redirect_uri=uri, state=state,
                             scopes=session.scopes, code_verifier=verifier)
    logger.info("Authorization started", extra={"owner_id": session.owner_id, "provider": profile.name})
    return AuthorizationRedirect(location, flow_cookie_name(state), nonce, SESSION_TTL)


# -- 3. GET /callback/{provider} --------------------------------------------------------------------------
_REJECTIONS = {
    "unknown": (400, "This sign-in was already completed or is unknown. Go back to the app and start again."),
    "expired": (410, "This sign-in took too long and has expired. Go back to the app and start again."),
    "foreign_browser": (403, "This sign-in was started in another browser or window. Go back to the app "
                             "and start again in this browser."),
    "wrong_provider": (400, "This sign-in does not belong to this service. Go back to the app and start again."),
}


def complete_callback(provider: str, query: dict[str, list[str]], cookies: dict[str, str]) -> CallbackResult:
    svc = services()
    profile = svc.profile(provider)
    state = _single(query, "state")
    if not state:
        raise FlowRejected("This sign-in link is incomplete. Go back to the app and start again.",
                           code="missing_state")
    cookie_name = flow_cookie_name(state)
    nonce = cookies.get(cookie_name)
    if not nonce or len(nonce) > MAX_SECRET_LENGTH:
        raise FlowRejected(
            "We couldn't confirm this sign-in was started in this browser (cookies may be blocked). "
            "Go back to the app and start again.", code="missing_cookie", status=403,
        )
    # Read every parameter before consuming the flow: a malformed one must not use up the browser's flow.
    code = _single(query, "code")
    issuer = _single(query, "iss")
    provider_error = _single(query, "error")
    granted_param = _single(query, profile.granted_scopes_param) if profile.granted_scopes_param else None
    now = svc.now()
    try:
        flow = svc.flows.take_flow(state, profile.name, nonce, now)
    except FlowRejection as rejection:
        status, message = _REJECTIONS[rejection.reason]
        logger.warning("Callback refused", extra={"provider": profile.name, "reason": rejection.reason})
        metrics.add_metric("CallbacksRefused", MetricUnit.Count, 1)
        raise FlowRejected(message, code=rejection.reason, status=status) from None

    def fail(error: str) -> CallbackResult:
        metrics.add_metric("ConnectFailed", MetricUnit.Count, 1)
        return CallbackResult(flow.return_to, {"status": "error", "error": error,
                                               "retryable": str(CALLBACK_ERRORS[error]).lower()},
                              cookie_name, flow.mode)

    # RFC 9207: a response carrying another issuer's `iss` (or none, when this server promised it) may come
    # from a mix-up attack: never send its code to this provider's token endpoint.
    if profile.issuer and (issuer != profile.issuer if issuer is not None else profile.require_iss):
        logger.warning("Authorization response from an unexpected issuer refused", extra={"owner_id": flow.owner_id})
        return fail("issuer_mismatch")

    if provider_error is not None:
        error = provider_error if provider_error in CALLBACK_ERRORS else "provider_error"
        logger.info("Provider returned an error", extra={"owner_id": flow.owner_id, "error": error})
        return fail(error)
    if not code:
        return fail("invalid_request")

    try:
        creds = svc.credentials(profile)
        tokens = svc.token_endpoint.exchange_code(
            profile, creds, code=code, redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier
        )
    except ProviderError as exc:
        logger.warning("Code exchange failed", extra={
            "owner_id": flow.owner_id, "provider_error": exc.code, "kind": exc.kind, "provider_log_id": exc.log_id,
        })
        return fail("provider_config" if exc.kind == ProviderError.OPERATOR else "exchange_failed")

    granted = tokens.scopes or profile.split_scopes(granted_param)
    if not tokens.account_id:
        # Without the account id we cannot tell a reconnect from a new account; never guess.
        return fail("account_unavailable")
    grant = Grant(owner_id=flow.owner_id, provider=profile.name, account_id=tokens.account_id, tokens=tokens,
                  scopes_requested=flow.scopes, scopes_granted=granted or flow.scopes)
    if flow.connection_id and connection_id_for(grant.owner_id, grant.provider, grant.account_id) \
            != flow.connection_id:
        # The user picked another TikTok account while upgrading this connection's scopes.
        logger.info("Scope upgrade with another account refused", extra={"owner_id": flow.owner_id})
        return fail("account_mismatch")
    missing = [s for s in flow.scopes if s not in grant.scopes_granted]

    def event_for(connection: Connection, created: bool, previous: str | None) -> dict:
        return events.connection_event(
            events.CREATED if created else events.RECONNECTED, connection,
            reason="connected" if created else "reconnected", occurred_at=now,
            extra={"scopes_granted": list(connection.scopes_granted), "missing_scopes": missing,
                   "previous_status": previous},
        )

    saved = svc.connections.save_grant(grant, now, event_for, _schedule)  # persist first: nothing comes before
    connection = saved.connection
    logger.append_keys(connection_id=connection.connection_id)
    logger.info("Connection saved", extra={"owner_id": flow.owner_id, "new_connection": saved.created})
    metrics.add_metric("ConnectionsCreated" if saved.created else "ConnectionsReconnected", MetricUnit.Count, 1)

    _enrich(connection, tokens.access_token)
    _publish_outbox(connection)

    params = {"status": "connected", "connection_id": connection.connection_id,
              "granted_scopes": ",".join(grant.scopes_granted)}
    if missing:
        params["missing_scopes"] = ",".join(missing)
    return CallbackResult(flow.return_to, params, cookie_name, flow.mode)


def _enrich(connection: Connection, access_token: str) -> None:
    """Display name and avatar: nice to have, so a failure here never loses the connection."""
    svc = services()
    profile = svc.profile(connection.provider)
    try:
        user = svc.token_endpoint.fetch_user(profile, access_token)
        svc.connections.set_profile(connection.connection_id, user.display_name, user.avatar_url)
    except Exception as exc:  # noqa: BLE001 - enrichment must never fail the callback
        logger.warning("Profile enrichment failed", extra={"error_type": type(exc).__name__})
        return
    try:
        owners = svc.connections.owners_of_account(connection.provider, connection.account_id)
    except Exception:  # noqa: BLE001
        return
    if len(owners) > 1:
        # TikTok may keep one grant per (app, user): another owner's refresh could rotate this one away.
        logger.warning("Account connected by several owners", extra={"owners": len(owners)})
        metrics.add_metric("AccountsSharedByOwners", MetricUnit.Count, 1)


def _schedule(provider: str, tokens: TokenSet, now: int) -> int:
    return plan_next_refresh(services().profile(provider).refresh_policy, issued_at=tokens.issued_at,
                             access_expires_at=tokens.access_expires_at, refresh_expires_at=tokens.refresh_expires_at)


def _publish_outbox(connection: Connection) -> None:
    services().refresher.flush_events(connection)


# -- helpers ------------------------------------------------------------------------------------------------
def parse_query(raw: str | None, *, max_length: int = 4096) -> dict[str, list[str]]:
    """Decode a raw query string exactly once. Repeated keys are kept so callers can refuse them."""
    if raw and len(raw) > max_length:
        raise InvalidInput("The query string is too long.", code="too_large", field="query")
    try:
        # Strict UTF-8: a code decoded with replacement characters would reach the provider mangled.
        pairs = parse_qsl(raw or "", keep_blank_values=True, max_num_fields=50, encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The query string is malformed (too many parameters, or not UTF-8).",
                           field="query") from exc
    result: dict[str, list[str]] = {}
    for key, value in pairs:
        result.setdefault(key, []).append(value)
    return result


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise FlowRejected(f"The link carries '{name}' more than once. Go back to the app and start again.",
                           code="duplicate_parameter")
    if len(values[0]) > MAX_SECRET_LENGTH * 4:
        raise FlowRejected("The link is malformed. Go back to the app and start again.", code="too_large")
    return values[0]


def with_query(url: str, params: dict[str, str]) -> str:
    """Append our parameters to return_to, keeping its own query string."""
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
