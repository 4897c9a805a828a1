"""Orphaned grants: tokens a provider issued that no connection will keep, revoked in the background.

A connect refused because the answer held no refresh token, or a scope upgrade that came back for another
account, leaves a live grant at the provider. Revoking it inside the browser's request would make the user wait
on a slow provider and could outrun the callback. Instead the grant is recorded (tokens sealed, as a
connection's are) on an item the refresh sweep finds through the same Due index, and a refresh worker revokes it
(RFC 7009), retrying with backoff for up to a day before it gives up. Either way the item, and its tokens, go.

A revoke takes the access token, which lives hours while the refresh token lives months. So when the access token
has expired (or the revoke is refused) and a refresh token is held, the worker refreshes first, stores the rotated
tokens on the item (a guarded write, under a lease: the provider's old refresh token died with the refresh), then
revokes with the fresh access token. A refresh refused as `invalid_grant` means the grant has already ended.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from typing import Any

from ..domain.claims import PENDING, is_pending_key
from ..domain.connection import DISCONNECTED, DISCONNECTING, TokenBinding
from ..domain.deadlines import COMMIT_RESERVE, LEASE_SECONDS, MIN_PROVIDER_CALL, REFRESH_MIN_TIME, budget
from ..domain.errors import FailureKind, ProviderError, TokenDecryptionError
from ..domain.schedule import backoff_delay, due_shard
from ..domain.tokens import TokenSet
from ..observability import MetricUnit, logger, record_metric
from ..ports import (
    MISSING,
    Clock,
    ConnectionRepository,
    Credentials,
    ItemStore,
    ProviderClient,
    ProviderProfiles,
    TokenCipher,
)

PREFIX = "orphan#"
GIVE_UP_AFTER = 86_400  # seconds of failed revokes before the grant is left to expire on its own
RETRY_CAP = 3600  # seconds between attempts at most


def is_orphan(key: str) -> bool:
    return key.startswith(PREFIX)


def _binding(key: str, provider: str, account_id: str | None) -> TokenBinding:
    """An orphaned grant is written once and belongs to no owner: its blob is bound to its key, provider and the
    account it is for (empty when unknown, and on items recorded before the account was kept): an item whose
    `account_id` is rewritten no longer opens, so nobody can steer the held-elsewhere check."""
    return TokenBinding(connection_id=key, provider=provider, owner_id="", account_id=account_id or "",
                        token_version=0)


def account_held(connections: ConnectionRepository, items: ItemStore, provider: str, account_id: str, now: int,
                 *, besides: str | None = None) -> bool:
    """Whether a live connection (any status but `disconnecting` and `disconnected`) or a claimable pending grant
    (`pending`, code not expired) of any owner holds this provider account; the item `besides` is not counted.
    Reads the ByAccount index, then each item strongly consistent."""
    for other in connections.of_account(provider, account_id):
        if other == besides:
            continue
        if is_pending_key(other):
            found = items.get(other, ("state", "expires_at"))
            if found and found.get("state") == PENDING and int(found.get("expires_at", 0)) > now:
                return True
            continue
        connection = connections.get(other)
        if connection is not None and connection.status not in (DISCONNECTED, DISCONNECTING):
            return True
    return False


class OrphanGrants:
    def __init__(self, *, items: ItemStore, cipher: TokenCipher, profiles: ProviderProfiles, credentials: Credentials,
                 provider: ProviderClient, clock: Clock, due_shards: int, rng: random.Random | None = None,
                 connections: ConnectionRepository | None = None) -> None:
        """`connections` finds who else holds a grant's account (None: every grant is revoked, for tests of the
        revoke alone)."""
        self._items = items
        self._connections = connections
        self._cipher = cipher
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._clock = clock
        self._shards = due_shards
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def record(self, provider: str, tokens: TokenSet, why: str) -> str:
        """Keep the grant's tokens (sealed) for the background revoke; due at once. Idempotent per token. The
        account (`tokens.account_id`, when the provider said) is kept for the held-elsewhere check at the revoke.

        Returns the item's key (`orphan#` and a hash of the access token: never the token itself)."""
        key = PREFIX + hashlib.sha256(tokens.access_token.encode()).hexdigest()[:32]
        now = int(self._clock.now())
        sealed = self._cipher.seal({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token},
                                   _binding(key, provider, tokens.account_id))
        # The expiries tell the revoke whether the access token can still do it (older items lack them).
        self._items.update(key, set={"provider": provider, "account_id": tokens.account_id, "tokens": sealed,
                                     "orphaned_at": now, "why": why,
                                     "access_expires_at": tokens.access_expires_at,
                                     "refresh_expires_at": tokens.refresh_expires_at,
                                     "attempts": 0, "next_refresh_at": now, "due_shard": due_shard(key, self._shards)},
                           expect={"orphaned_at": MISSING})
        record_metric("GrantsOrphaned", MetricUnit.Count, 1)
        logger.info("Orphaned grant recorded for revocation", extra={"provider": provider, "why": why})
        return key

    def revoke(self, key: str, *, deadline: float | None = None) -> str:
        """One attempt at revoking the orphaned grant `key`, with a refresh first when its access token has
        expired or is refused. Returns `revoked`, `ended` (the grant had already ended: nothing left to revoke),
        `held` (another live connection or pending grant holds the account: dropped, never revoked),
        `retrying`, `waiting` (another worker holds its refresh lease), `abandoned` or `gone` (already handled).
        Raises only for storage trouble (the message is then delivered again)."""
        item = self._items.get(key)
        if item is None or "orphaned_at" not in item:
            return "gone"
        now = int(self._clock.now())
        if int(item.get("lease_expires_at") or 0) > now:
            return "waiting"  # a refresh is at the provider; the item stays due, so the sweep brings it back
        try:
            profile = self._profiles.profile(item["provider"])
            tokens = self._cipher.open(item["tokens"], _binding(key, item["provider"], item.get("account_id")))
        except (TokenDecryptionError, Exception) as exc:  # noqa: BLE001 - nothing usable to revoke with
            logger.warning("Orphaned grant unreadable; dropped", extra={"error_type": type(exc).__name__})
            self._items.delete(key, expect={})
            return "abandoned"
        if item.get("account_id") and self._connections is not None and account_held(
                self._connections, self._items, item["provider"], item["account_id"], now):
            logger.info("Orphaned grant's account held by another connection: not revoked",
                        extra={"provider": item["provider"], "why": item.get("why")})
            record_metric("OrphanedGrantsKept", MetricUnit.Count, 1)
            self._items.delete(key, expect={})
            return "held"
        if budget(deadline, now) < MIN_PROVIDER_CALL:
            return self._later(key, item, now, error=None)
        # One refresh at most, and none without a revoke endpoint (a fresh access token could do nothing).
        may_refresh = bool(tokens.get("refresh_token") and profile.revoke_url)
        expires = item.get("access_expires_at")
        if may_refresh and expires is not None and int(expires) <= now:
            item, tokens, result = self._refresh_first(key, item, tokens, now, deadline)
            if result:
                return result
            may_refresh = False
        while True:
            try:
                self._revoke(profile, tokens["access_token"], deadline)
            except ProviderError as exc:
                if exc.kind == FailureKind.TRANSIENT:
                    return self._later(key, item, now, error=exc)
                if exc.kind in (FailureKind.TERMINAL, FailureKind.REJECTED) and may_refresh:
                    # The provider may have ended the access token sooner than it said: a fresh one can revoke.
                    item, tokens, result = self._refresh_first(key, item, tokens, now, deadline)
                    if result:
                        return result
                    may_refresh = False
                    continue
                # Refused outright: the grant is already gone, or never will be.
                logger.info("Orphaned grant revoke refused", extra={"provider_error": exc.code})
                self._items.delete(key, expect={})
                return "abandoned"
            except Exception as exc:  # noqa: BLE001 - configuration trouble: try again later
                return self._later(key, item, now, error=exc)
            self._items.delete(key, expect={})
            record_metric("OrphanedGrantsRevoked", MetricUnit.Count, 1)
            return "revoked"

    def _revoke(self, profile: Any, access_token: str, deadline: float | None) -> None:
        self._provider.revoke(profile, self._credentials.credentials(profile), access_token, deadline=deadline)

    def _refresh_first(self, key: str, item: dict[str, Any], tokens: dict[str, Any], now: int,
                       deadline: float | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
        """One refresh (RFC 6749 section 6) under a lease on the item, its answer stored in a guarded write
        before the revoke. Returns (the item as it now stands, its tokens, None) to go on and revoke, or the
        attempt's result (`ended`, `abandoned`, `retrying`, `waiting`)."""
        provider = item["provider"]
        expires = item.get("refresh_expires_at")
        if expires is not None and int(expires) <= now:
            return item, tokens, self._ended(key, "refresh_token_expired")  # the grant ran out with it
        if budget(deadline, now) < REFRESH_MIN_TIME:
            return item, tokens, self._later(key, item, now, error=None)
        try:
            profile = self._profiles.profile(provider)
            credentials = self._credentials.credentials(profile)
        except Exception as exc:  # noqa: BLE001 - configuration trouble: try again later
            return item, tokens, self._later(key, item, now, error=exc)
        self._cipher.prepare(LEASE_SECONDS)  # no key-service call under the lease
        # A lease left by a worker that died at the provider may have rotated a token nobody saved: an
        # invalid_grant is then no proof that the grant is gone.
        in_doubt = bool(item.get("refresh_in_doubt") or item.get("lease_owner"))
        lease = f"{uuid.uuid4()}"
        claim = {"lease_owner": lease, "lease_expires_at": now + LEASE_SECONDS,
                 "refresh_in_doubt": True if in_doubt else None}
        if not self._items.update(key, set=claim, expect={"lease_owner": item.get("lease_owner") or MISSING,
                                                          "orphaned_at": item["orphaned_at"]}):
            return item, tokens, "waiting"
        item = {**item, **claim}
        provider_deadline = min(now + LEASE_SECONDS, math.inf if deadline is None else deadline) - COMMIT_RESERVE
        try:
            answer = self._provider.refresh(profile, credentials, tokens["refresh_token"], deadline=provider_deadline)
        except ProviderError as exc:
            if exc.kind == FailureKind.TERMINAL:
                if in_doubt:
                    logger.warning("Orphaned grant's refresh refused after a lost answer; dropped",
                                   extra={"provider_error": exc.code})
                    self._items.delete(key, expect={})
                    return item, tokens, "abandoned"
                return item, tokens, self._ended(key, exc.code)
            return item, tokens, self._later(key, item, now, error=exc, release=True,
                                             in_doubt=in_doubt or (exc.maybe_processed and exc.code != "no_time"))
        fresh = {"access_token": answer.access_token, "refresh_token": answer.refresh_token or tokens["refresh_token"]}
        stored = {"tokens": self._cipher.seal(fresh, _binding(key, provider, item.get("account_id"))),
                  "access_expires_at": answer.access_expires_at,
                  "refresh_expires_at": answer.refresh_expires_at or item.get("refresh_expires_at"),
                  "lease_owner": None, "lease_expires_at": None, "refresh_in_doubt": None}
        if not self._items.update(key, set=stored, expect={"lease_owner": lease}):
            # The lease ran out under a slow store: the revoke goes on with the fresh token all the same.
            logger.warning("Orphaned grant's refreshed tokens not stored", extra={"provider": provider})
        return {**item, **stored}, fresh, None

    def _ended(self, key: str, why: str) -> str:
        logger.info("Orphaned grant already ended at the provider", extra={"provider_error": why})
        self._items.delete(key, expect={})
        return "ended"

    def _later(self, key: str, item: dict[str, Any], now: int, *, error: Exception | None,
               release: bool = False, in_doubt: bool = False) -> str:
        """The next attempt after capped backoff, or the grant left to expire after a day of attempts.
        `release` gives back this attempt's refresh lease; `in_doubt`: a refresh may have rotated the refresh
        token without our storing the answer."""
        attempts = int(item.get("attempts", 0)) + 1
        if now - int(item["orphaned_at"]) >= GIVE_UP_AFTER:
            logger.warning("Orphaned grant could not be revoked for a day; left to expire",
                           extra={"provider": item.get("provider"), "attempts": attempts})
            record_metric("OrphanedGrantsAbandoned", MetricUnit.Count, 1)
            self._items.delete(key, expect={})
            return "abandoned"
        next_at = now + max(30, backoff_delay(attempts, cap=RETRY_CAP, rng=self._rng))
        # The shard as today's count gives it: one written under an older count is left behind.
        self._items.update(key, set={"attempts": attempts, "next_refresh_at": next_at,
                                     "due_shard": due_shard(key, self._shards),
                                     **({"lease_owner": None, "lease_expires_at": None} if release else {}),
                                     **({"refresh_in_doubt": True} if in_doubt else {})}, expect={})
        return "retrying"
