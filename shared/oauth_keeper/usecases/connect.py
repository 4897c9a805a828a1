"""Connecting an account: connect sessions, the authorize redirect and the callback (RFC 6749 section 4.1).

Three use cases, one per step the browser takes: the app's backend creates a single-use connect session,
the browser follows it to the provider's consent screen, and the provider sends the browser back to the
callback, which exchanges the code and stores the connection before anything else.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypedDict
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..domain.connection import DISCONNECTED, Connection, Grant, Reason
from ..domain.deadlines import CHAIN_LINK_MIN, ENRICH_MIN, SAVE_RESERVE, USERINFO_RESERVE, budget
from ..domain.errors import (
    FailureKind,
    FlowRejected,
    FlowRejection,
    NotFound,
    OwnerErased,
    ProviderError,
    TokenDecryptionError,
)
from ..domain.flows import SESSION_TTL, ConnectSession, OAuthFlow, secret_hash
from ..domain.lifecycle import NoUsableRefreshToken, plan_grant
from ..domain.protocol import authorize_url, new_code_verifier, new_secret
from ..domain.providers import ProviderProfile
from ..domain.renewal import grant_end, plan
from ..domain.timestamps import iso8601
from ..domain.tokens import ClientCredentials, TokenSet
from ..domain.validation import checked_return_to, normalize_origin, parse_connect_request, requested_scopes
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, ConnectionRepository, Credentials, FlowStore, ProviderClient, ProviderProfiles, Sleep
from .claims import PendingGrants
from .erasure import Erasures
from .orphans import OrphanGrants
from .outbox import OutboxRelay

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
    # The provider issued no refresh token (and none usable is stored): the connection could not stay
    # connected, so nothing was stored. Trying again usually gets a complete answer.
    "incomplete_grant": True,
    # The flow was issued before its owner's data was erased (usecases/erasure.py): nothing was stored. A connect
    # started now, after the erasure, works.
    "owner_erased": True,
}


_SAVE_ATTEMPTS = 12  # concurrent callbacks for one account: each retries on the other's write


class ConnectLink(TypedDict):
    """`POST /connect-sessions`' answer: the single-use link for the user's browser and when it ends."""

    connect_url: str
    expires_at: str


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


class ConnectSessions:
    """Step 1, `POST /connect-sessions` (IAM): the app's backend asks for a connect link for one owner."""

    def __init__(self, *, flows: FlowStore, profiles: ProviderProfiles, connections: ConnectionRepository,
                 clock: Clock, allowed_return_origins: frozenset[str], erasures: Erasures | None = None) -> None:
        """`erasures` refuses an owner being erased this very second and names the owner on the session by
        its keyed hash (None: no erasure checks, for tests of other steps)."""
        self._erasures = erasures
        self._flows = flows
        self._profiles = profiles
        self._connections = connections
        self._clock = clock
        self._allowed_origins = allowed_return_origins

    def create(self, body: dict, base_url: str) -> ConnectLink:
        """A single-use connect session (10 minutes) for `body`'s owner, provider, return_to and scopes.

        `body` is the parsed JSON object; `base_url` the service's public origin. With `connection_id`, a
        scope upgrade: the session asks for that connection's granted scopes plus the new ones.
        Raises InvalidInput (400) for any bad field, NotFound for an unknown provider or connection, OwnerErased
        (409) when the owner's erasure happened in this same second (asking again a second later works)."""
        request = parse_connect_request(body)
        profile = self._profiles.profile(request.provider)
        return_to = checked_return_to(request.return_to, self._allowed_origins)
        scopes = requested_scopes(profile, request.scopes)
        if request.connection_id:  # a scope upgrade: ask for what it has plus what is wanted now
            existing = self._connections.get(request.connection_id)
            if existing is None or existing.owner_id != request.owner_id or existing.provider != profile.name \
                    or existing.erase_requested:  # being erased: nothing of it may reach a new connection
                raise NotFound("No such connection for this owner.", code="connection_not_found",
                               field="connection_id")
            scopes = tuple(dict.fromkeys((*existing.scopes_granted, *scopes)))
        now = self._clock.now()
        # Checked before the write, with the session's issue time stored: an erasure landing between the two
        # is later than that time, so the next step refuses the session (and the erasure may delete it).
        owner_key = self._erasures.check(owner_id=request.owner_id, issued_at=int(now)) if self._erasures else None
        token = new_secret()
        session = ConnectSession(
            owner_id=request.owner_id, provider=profile.name, return_to=return_to, scopes=scopes,
            expires_at=int(now) + SESSION_TTL, connection_id=request.connection_id, mode=request.mode,
            issued_at=int(now), owner_key=owner_key,
        )
        self._flows.put_session(token, session)
        logger.info("Connect session created", extra={"owner_id": request.owner_id, "provider": profile.name})
        record_metric("ConnectSessionsCreated", MetricUnit.Count, 1)
        return {
            "connect_url": f"{base_url}/connect/{profile.name}?" + urlencode({"session": token}),
            "expires_at": iso8601(session.expires_at) or "",
        }


class Authorization:
    """Step 2, `GET /connect/{provider}?session=`: the browser is sent to the provider's consent screen."""

    def __init__(self, *, flows: FlowStore, profiles: ProviderProfiles, credentials: Credentials,
                 clock: Clock, erasures: Erasures | None = None) -> None:
        self._erasures = erasures
        self._flows = flows
        self._profiles = profiles
        self._credentials = credentials
        self._clock = clock

    def start(self, provider: str, query: dict[str, list[str]], base_url: str) -> AuthorizationRedirect:
        """Consume the connect session and create the OAuth flow (state and browser nonce stored as hashes,
        a PKCE verifier per RFC 7636), then build the authorization request URL (RFC 6749 section 4.1.1).

        Raises FlowRejected (an HTML page) for a missing, used or expired session, or one issued before its
        owner's erasure (`owner_erased`, 410); NotFound for a provider that is not enabled."""
        profile = self._profiles.profile(provider)
        token = _single(query, "session")
        if not token:
            raise FlowRejected("This link is missing its connect session. Start again from the app.",
                               code="missing_session")
        now = self._clock.now()
        session = self._flows.take_session(token, profile.name, now)
        if session is None:
            raise FlowRejected(
                "This connect link has expired or was already used. Go back to the app and start again.",
                code="session_invalid", status=410, title="This connect link is no longer valid",
            )
        owner_key = session.owner_key
        if self._erasures is not None:
            try:
                owner_key = self._erasures.check(issued_at=session.issued, owner_key=session.owner_key,
                                                 owner_id=session.owner_id)
            except OwnerErased:
                raise FlowRejected(
                    "This connect link was cancelled. Go back to the app and start again.",
                    code="owner_erased", status=410, title="This connect link is no longer valid",
                ) from None
        state, nonce = new_secret(), new_secret()
        verifier = new_code_verifier() if profile.sends_pkce else None
        uri = redirect_uri(base_url, profile.name)
        self._flows.put_flow(state, OAuthFlow(
            provider=profile.name, owner_id=session.owner_id, return_to=session.return_to, scopes=session.scopes,
            redirect_uri=uri, code_verifier=verifier, nonce_hash=secret_hash("nonce", nonce),
            expires_at=int(now) + SESSION_TTL, mode=session.mode, connection_id=session.connection_id,
            issued_at=session.issued, owner_key=owner_key,  # the flow is as old as the link it came from
        ))
        client = self._credentials.credentials(profile, with_secret=False)
        location = authorize_url(profile, client_id=client.client_id, redirect_uri=uri, state=state,
                                 scopes=session.scopes, code_verifier=verifier)
        logger.info("Authorization started", extra={"owner_id": session.owner_id, "provider": profile.name})
        return AuthorizationRedirect(location, flow_cookie_name(state), nonce, SESSION_TTL)


_REJECTIONS = {
    "unknown": (400, "This sign-in was already completed or is unknown. Go back to the app and start again."),
    "expired": (410, "This sign-in took too long and has expired. Go back to the app and start again."),
    "foreign_browser": (403, "This sign-in was started in another browser or window. Go back to the app "
                             "and start again in this browser."),
    "wrong_provider": (400, "This sign-in does not belong to this service. Go back to the app and start again."),
}


class Callback:
    """Step 3, `GET /callback/{provider}`: the provider sends the browser back with a code or an error."""

    def __init__(self, *, flows: FlowStore, profiles: ProviderProfiles, credentials: Credentials,
                 provider: ProviderClient, connections: ConnectionRepository, outbox: OutboxRelay, clock: Clock,
                 sleep: Sleep = time.sleep, orphans: OrphanGrants | None = None,
                 erasures: Erasures | None = None, pending: PendingGrants | None = None,
                 expiry_warning: int = 14 * 86_400,
                 after_connect: Callable[[Connection, str, float | None], None] | None = None) -> None:
        """`expiry_warning` (seconds): how early Connection Expiring comes before a grant's hard cap, so the first
        plan looks at the connection then. `orphans` takes the grants the provider made that no connection keeps,
        for revoking in the background (None: they are left to expire); `erasures` refuses flows issued before
        their owner's erasure (None: no erasure checks, for tests of other steps); `pending` holds each grant for
        the app's backend to claim (connect confirmation, usecases/claims.py; None: `ConnectConfirmation=off`,
        stored at once).

        `after_connect(connection, access_token, deadline)`: optional work after the display name, when time is
        left (the channels listed, usecases/channels.py; it never raises)."""
        self._pending = pending
        self._after_connect = after_connect
        self._expiry_warning = expiry_warning
        self._erasures = erasures
        self._flows = flows
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._connections = connections
        self._outbox = outbox
        self._clock = clock
        self._sleep = sleep
        self._orphans = orphans

    def complete(self, provider: str, query: dict[str, list[str]], cookies: dict[str, str], *,
                 deadline: float | None = None) -> CallbackResult:
        """Finish the authorization: consume the flow (one conditional delete needing this browser's cookie),
        check the response (RFC 6749 section 4.1.2, RFC 9207 `iss`), exchange the code (section 4.1.3), store
        the connection first, then enrich it and publish its event. `deadline` (epoch seconds) is when the
        invocation must be over: the exchange ends early enough for the grant to be stored, and the display name
        is fetched only if time is left (else the next refresh fetches it). A connect chain's link without time
        left, or failing transiently, is left to the worker (`_chained`, ADR 0025).

        Returns where to send the browser back: `status=pending_confirmation&claim=...` (connect confirmation:
        the grant waits for the app's backend to claim it), `status=connected&connection_id=...` (confirmation
        off; plus `status_reason=connect_finishing` while the chain's rest runs in the background) or
        `status=error&error=<one of CALLBACK_ERRORS>&retryable=...`. Raises FlowRejected (an HTML page, nothing
        stored, the provider not called) when there is no trustworthy flow to return to."""
        profile = self._profiles.profile(provider)
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
        now = self._clock.now()
        try:
            flow = self._flows.take_flow(state, profile.name, nonce, now)
        except FlowRejection as rejection:
            status, message = _REJECTIONS[rejection.reason]
            logger.warning("Callback refused", extra={"provider": profile.name, "reason": rejection.reason})
            record_metric("CallbacksRefused", MetricUnit.Count, 1)
            raise FlowRejected(message, code=rejection.reason, status=status) from None

        def fail(error: str) -> CallbackResult:
            record_metric("ConnectFailed", MetricUnit.Count, 1)
            return CallbackResult(flow.return_to, {"status": "error", "error": error,
                                                   "retryable": str(CALLBACK_ERRORS[error]).lower()},
                                  cookie_name, flow.mode)

        # RFC 9207: a response carrying another issuer's `iss` (or none, when this server promised it) may come
        # from a mix-up attack: never send its code to this provider's token endpoint.
        if profile.issuer and (issuer != profile.issuer if issuer is not None else profile.require_iss):
            logger.warning("Authorization response from an unexpected issuer refused",
                           extra={"owner_id": flow.owner_id})
            return fail("issuer_mismatch")

        if self._erased(flow):  # before the exchange: no tokens are made for an erased owner
            return fail("owner_erased")

        if provider_error is not None:
            error = provider_error if provider_error in CALLBACK_ERRORS else "provider_error"
            logger.info("Provider returned an error", extra={"owner_id": flow.owner_id, "error": error})
            return fail(error)
        if not code:
            return fail("invalid_request")

        try:
            creds = self._credentials.credentials(profile)
            tokens = self._provider.exchange_code(
                profile, creds, code=code, redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier,
                deadline=None if deadline is None else deadline - SAVE_RESERVE,
            )
        except ProviderError as exc:
            logger.warning("Code exchange failed", extra={
                "owner_id": flow.owner_id, "provider_error": exc.code, "kind": exc.kind,
                "provider_log_id": exc.log_id,
            })
            return fail("provider_config" if exc.kind == FailureKind.OPERATOR else "exchange_failed")
        try:
            tokens, chain_next = self._chained(profile, creds, tokens, deadline)
        except ProviderError as exc:
            # Refused: never stored as if it were the long-lived token. The connect fails, and the short-lived grant
            # the provider made is nobody's (revoked in the background where the provider can revoke).
            logger.warning("Token chain failed", extra={
                "owner_id": flow.owner_id, "provider_error": exc.code, "kind": exc.kind,
                "provider_log_id": exc.log_id,
            })
            self._orphan(profile.name, tokens, "incomplete_grant")
            return fail("provider_config" if exc.kind == FailureKind.OPERATOR else "exchange_failed")
        if profile.account_id_source == "userinfo" and not tokens.account_id:
            tokens = self._with_account(profile, tokens, deadline)
        tokens = replace(tokens, refresh_expires_at=grant_end(
            profile, end=tokens.refresh_expires_at, answer=tokens, connected_at=int(now)))

        granted = tokens.scopes or profile.split_scopes(granted_param)
        if not tokens.account_id:
            # Without the account id we cannot tell a reconnect from a new account; never guess.
            self._orphan(profile.name, tokens, "account_unavailable")
            return fail("account_unavailable")
        grant = Grant(owner_id=flow.owner_id, provider=profile.name, account_id=tokens.account_id, tokens=tokens,
                      scopes_requested=flow.scopes, scopes_granted=granted or flow.scopes)
        if flow.connection_id and not self._holds_account(flow.connection_id, grant):
            # The user picked another account while upgrading this connection's scopes.
            logger.info("Scope upgrade with another account refused", extra={"owner_id": flow.owner_id})
            self._orphan(profile.name, tokens, "account_mismatch")
            return fail("account_mismatch")
        missing = [s for s in flow.scopes if s not in grant.scopes_granted]
        next_refresh_at = plan(profile, issued_at=tokens.issued_at, access_expires_at=tokens.access_expires_at,
                               refresh_expires_at=tokens.refresh_expires_at, expiry_warning=self._expiry_warning)
        if self._erased(flow):  # an erasure during the exchange: its marking may be over, so never store
            self._orphan(profile.name, tokens, "owner_erased")
            return fail("owner_erased")

        if self._pending is not None:
            if profile.issues_refresh_tokens and not tokens.refresh_token and chain_next is None:
                # Held grants never keep an existing connection's refresh token: one without its own is refused
                # (a chain still to run may issue it with the long-lived token).
                record_metric("ConnectsWithoutRefreshToken", MetricUnit.Count, 1)
                self._orphan(profile.name, tokens, "incomplete_grant")
                return fail("incomplete_grant")
            try:
                claim = self._pending.hold(flow, grant, missing_scopes=missing, next_refresh_at=next_refresh_at,
                                           renews_with_access_token=profile.refreshes_with_access_token,
                                           chain_next=chain_next)
            except Exception:  # nobody keeps this grant: revoke it in the background, then let the page say so
                self._orphan(profile.name, tokens, "not_stored")
                raise
            # No connection id: nothing is connected until the app's backend claims it for its logged-in owner.
            return CallbackResult(flow.return_to, {"status": "pending_confirmation", "claim": claim},
                                  cookie_name, flow.mode)

        try:
            saved = save_grant(self._connections, grant, next_refresh_at=next_refresh_at, missing_scopes=missing,
                               now=int(now), sleep=self._sleep, requires_refresh_token=profile.issues_refresh_tokens,
                               renews_with_access_token=profile.refreshes_with_access_token,
                               chain_next=chain_next)
        except NoUsableRefreshToken:
            # Never `active` without a way to a valid access token. The grant the provider made is orphaned:
            # revoking it is background work (not inside the browser's request).
            logger.warning("Connect refused: no refresh token issued", extra={"owner_id": flow.owner_id,
                                                                               "provider": profile.name})
            record_metric("ConnectsWithoutRefreshToken", MetricUnit.Count, 1)
            self._orphan(profile.name, tokens, "incomplete_grant")
            return fail("incomplete_grant")
        except RuntimeError:  # provably not stored (every conditional write lost): nobody keeps this grant
            self._orphan(profile.name, tokens, "not_stored")
            raise
        connection, created = saved.connection, saved.created
        logger.append_keys(connection_id=connection.connection_id)
        logger.info("Connection saved", extra={"owner_id": flow.owner_id, "new_connection": created})
        record_metric("ConnectionsCreated" if created else "ConnectionsReconnected", MetricUnit.Count, 1)

        self._outbox.publish(connection)  # the event first: it matters more than the display name
        if budget(deadline, self._clock.now()) >= ENRICH_MIN:
            self.enrich(connection, tokens.access_token, deadline)
            if self._after_connect is not None:  # else a refresh or the first channel read lists them
                self._after_connect(connection, tokens.access_token, deadline)
        else:
            self._connections.mark_profile_pending(connection.connection_id)

        params = {"status": "connected", "connection_id": connection.connection_id,
                  "granted_scopes": ",".join(grant.scopes_granted)}
        if missing:
            params["missing_scopes"] = ",".join(missing)
        if chain_next is not None:  # usable now on the short-lived token; the worker finishes the chain
            params["status_reason"] = Reason.CONNECT_FINISHING
        return CallbackResult(flow.return_to, params, cookie_name, flow.mode)

    def _chained(self, profile: ProviderProfile, creds: ClientCredentials, tokens: TokenSet,
                 deadline: float | None) -> tuple[TokenSet, int | None]:
        """The code's tokens through the profile's connect chain (code, short-lived, long-lived token), each link
        within the callback's deadline. Returns (the last link's tokens, with the account and scopes the earlier
        answers named when it names none; the index of the first link not run, or None when all ran).

        A link is not sent with less than `CHAIN_LINK_MIN` left (plus `USERINFO_RESERVE` when the account id must
        still come from user info), and it must end before the save (and that call) are due; a link that fails
        transiently (timeout, network, 5xx, rate limited, an unusable answer, no time) is left too: the
        connection is stored on the short-lived tokens so far and the worker runs the rest (ADR 0025). Raises
        ProviderError when the provider refuses a link (reconnect, operator or request errors): the connect
        fails."""
        userinfo = USERINFO_RESERVE if profile.account_id_source == "userinfo" and not tokens.account_id else 0.0
        for index in range(len(profile.chain)):
            if budget(deadline, self._clock.now()) < CHAIN_LINK_MIN + userinfo:
                logger.info("No time for the token chain's next link: finished in the background",
                            extra={"link": index})
                record_metric("ConnectChainsDeferred", MetricUnit.Count, 1)
                return tokens, index
            try:
                link = self._provider.exchange_link(
                    profile, creds, index, tokens.access_token,
                    deadline=None if deadline is None else deadline - SAVE_RESERVE - userinfo)
            except ProviderError as exc:
                if exc.kind != FailureKind.TRANSIENT:
                    raise
                logger.warning("Token chain link failed transiently: finished in the background", extra={
                    "link": index, "provider_error": exc.code, "provider_log_id": exc.log_id})
                record_metric("ConnectChainsDeferred", MetricUnit.Count, 1)
                return tokens, index
            tokens = replace(link, account_id=link.account_id or tokens.account_id,
                             scopes=link.scopes or tokens.scopes,
                             anomalies=tuple(dict.fromkeys((*tokens.anomalies, *link.anomalies))))
        return tokens, None

    def _with_account(self, profile: ProviderProfile, tokens: TokenSet, deadline: float | None) -> TokenSet:
        """The account id from the user-info call, for a profile whose token answers carry none
        (`account_id_source: userinfo`). A failed call leaves it None: the connect then fails honestly."""
        try:
            user = self._provider.fetch_user(profile, tokens.access_token,
                                             deadline=None if deadline is None else deadline - SAVE_RESERVE)
        except ProviderError as exc:
            logger.warning("User info for the account id failed", extra={
                "provider_error": exc.code, "kind": exc.kind, "provider_log_id": exc.log_id})
            return tokens
        return replace(tokens, account_id=user.account_id)

    def _holds_account(self, connection_id: str, grant: Grant) -> bool:
        """Whether the connection a scope upgrade names is this grant's account (of the same owner and provider);
        one deleted since does not stand in the way (the grant then makes a new connection)."""
        upgraded = self._connections.get(connection_id)
        return upgraded is None or (upgraded.owner_id, upgraded.provider, upgraded.account_id) == (
            grant.owner_id, grant.provider, grant.account_id)

    def _erased(self, flow: OAuthFlow) -> bool:
        if self._erasures is None:
            return False
        try:
            self._erasures.check(issued_at=flow.issued, owner_key=flow.owner_key, owner_id=flow.owner_id)
        except OwnerErased:
            return True
        return False

    def _orphan(self, provider: str, tokens: TokenSet, why: str) -> None:
        """Hand a grant nobody keeps to the background revoke; the browser's answer never waits for it."""
        if self._orphans is None:
            return
        try:
            self._orphans.record(provider, tokens, why)
        except Exception as exc:  # noqa: BLE001 - the user's answer matters more: the grant expires on its own
            logger.warning("Could not record an orphaned grant", extra={"error_type": type(exc).__name__})

    def enrich(self, connection: Connection, access_token: str, deadline: float | None) -> None:
        """Display name and avatar: nice to have, so a failure here never loses the connection (the next
        refresh tries again)."""
        profile = self._profiles.profile(connection.provider)
        try:
            user = self._provider.fetch_user(profile, access_token, deadline=deadline)
            self._connections.set_profile(connection.connection_id, user.display_name, user.avatar_url)
        except Exception as exc:  # noqa: BLE001 - enrichment must never fail the callback
            logger.warning("Profile enrichment failed", extra={"error_type": type(exc).__name__})
            try:
                self._connections.mark_profile_pending(connection.connection_id)
            except Exception:  # noqa: BLE001
                logger.warning("Could not mark the profile pending")
            return
        try:
            owners = {c.owner_id for c in map(self._connections.get, self._connections.of_account(
                connection.provider, connection.account_id)) if c and c.status != DISCONNECTED}
        except Exception:  # noqa: BLE001
            return
        if len(owners) > 1:
            # TikTok may keep one grant per (app, user): another owner's refresh could rotate this one away.
            logger.warning("Account connected by several owners", extra={"owners": len(owners)})
            record_metric("AccountsSharedByOwners", MetricUnit.Count, 1)


@dataclass(frozen=True)
class SavedGrant:
    connection: Connection  # as written, its new event still in the outbox
    created: bool  # a new connection, not a reconnect


def save_grant(connections: ConnectionRepository, grant: Grant, *, next_refresh_at: int | None,
               missing_scopes: list[str], now: int, sleep: Sleep = time.sleep,
               requires_refresh_token: bool = True, renews_with_access_token: bool = False,
               chain_next: int | None = None) -> SavedGrant:
    """Store a completed authorization: a new connection (a random id), or the existing one back to `active`
    (same id). The existing one is the one the guard item of (owner, provider, account) names
    (`ConnectionRepository.find`).

    Planned on the item as read and written guarded on its revision (a new one with its guard, in one
    transaction), so two callbacks for the same account never make two connections or lose a write; the
    Created/Reconnected event goes into the item's outbox in the same write, so a crash after it cannot lose
    the event. A response without a refresh token keeps the stored one while it is usable. `chain_next`: the
    connect chain's link still to run on these short-lived tokens (stored `active`, reason `connect_finishing`,
    due now: see `plan_grant`). Raises NoUsableRefreshToken when no refresh token would be held and
    `requires_refresh_token`, TokenDecryptionError when the stored tokens cannot be opened, RuntimeError when
    the item keeps changing under twelve attempts. (A claimed grant is stored by `PendingGrants.claim`, in one
    transaction with its pending item.)"""
    for attempt in range(_SAVE_ATTEMPTS):
        existing = connections.find(grant.owner_id, grant.provider, grant.account_id)
        connection_id = existing.connection_id if existing is not None \
            else connections.new_id(grant.owner_id, grant.provider, grant.account_id)
        # A disconnected connection's tokens are dead (the webhook leaves them for the worker to erase): never kept.
        stored_refresh = _stored_refresh_token(connections, existing) \
            if existing and existing.status != DISCONNECTED and not grant.tokens.refresh_token else None
        plan = plan_grant(existing, grant, connection_id=connection_id, stored_refresh_token=stored_refresh,
                          next_refresh_at=next_refresh_at, missing_scopes=missing_scopes, now=now,
                          requires_refresh_token=requires_refresh_token,
                          renews_with_access_token=renews_with_access_token, chain_next=chain_next)
        written = connections.write_grant(plan)
        if written:
            return SavedGrant(written, plan.created)
        sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - de-synchronise contenders
    raise RuntimeError("Connection kept changing while saving a grant.")


def _stored_refresh_token(connections: ConnectionRepository, existing: Connection) -> str | None:
    """The refresh token a reconnect could keep; None when the stored tokens fail authentication."""
    try:
        return connections.open_tokens(existing).get("refresh_token")
    except TokenDecryptionError:
        return None


# -- helpers ------------------------------------------------------------------------------------------------
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
