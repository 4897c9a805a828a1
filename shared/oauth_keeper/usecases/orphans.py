"""Orphaned grants: tokens a provider issued that no connection will keep, revoked in the background.

A connect refused because the answer held no refresh token, or a scope upgrade that came back for another
account, leaves a live grant at the provider. Revoking it inside the browser's request would make the user wait
on a slow provider and could outrun the callback. Instead the grant is recorded (tokens sealed, as a
connection's are) on an item the refresh sweep finds through the same Due index, and a refresh worker revokes it
(RFC 7009), retrying with backoff for up to a day before it gives up. Either way the item, and its tokens, go.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from ..domain.deadlines import MIN_PROVIDER_CALL, budget
from ..domain.errors import FailureKind, ProviderError, TokenDecryptionError
from ..domain.schedule import backoff_delay, due_shard
from ..domain.tokens import TokenSet
from ..observability import MetricUnit, logger, record_metric
from ..ports import MISSING, Clock, Credentials, ItemStore, ProviderClient, ProviderProfiles, TokenCipher

PREFIX = "orphan#"
GIVE_UP_AFTER = 86_400  # seconds of failed revokes before the grant is left to expire on its own
RETRY_CAP = 3600  # seconds between attempts at most


def is_orphan(key: str) -> bool:
    return key.startswith(PREFIX)


class OrphanGrants:
    def __init__(self, *, items: ItemStore, cipher: TokenCipher, profiles: ProviderProfiles, credentials: Credentials,
                 provider: ProviderClient, clock: Clock, due_shards: int, rng: random.Random | None = None) -> None:
        self._items = items
        self._cipher = cipher
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._clock = clock
        self._shards = due_shards
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def record(self, provider: str, tokens: TokenSet, why: str) -> str:
        """Keep the grant's tokens (sealed) for the background revoke; due at once. Idempotent per token.

        Returns the item's key (`orphan#` and a hash of the access token: never the token itself)."""
        key = PREFIX + hashlib.sha256(tokens.access_token.encode()).hexdigest()[:32]
        now = int(self._clock.now())
        sealed = self._cipher.seal({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token},
                                   connection_id=key, provider=provider)
        self._items.update(key, set={"provider": provider, "tokens": sealed, "orphaned_at": now, "why": why,
                                     "attempts": 0, "next_refresh_at": now, "due_shard": due_shard(key, self._shards)},
                           expect={"orphaned_at": MISSING})
        record_metric("GrantsOrphaned", MetricUnit.Count, 1)
        logger.info("Orphaned grant recorded for revocation", extra={"provider": provider, "why": why})
        return key

    def revoke(self, key: str, *, deadline: float | None = None) -> str:
        """One attempt at revoking the orphaned grant `key`. Returns `revoked`, `retrying`, `abandoned` or
        `gone` (already handled). Raises only for storage trouble (the message is then delivered again)."""
        item = self._items.get(key)
        if item is None or "orphaned_at" not in item:
            return "gone"
        now = int(self._clock.now())
        try:
            profile = self._profiles.profile(item["provider"])
            tokens = self._cipher.open(item["tokens"], connection_id=key, provider=item["provider"])
        except (TokenDecryptionError, Exception) as exc:  # noqa: BLE001 - nothing usable to revoke with
            logger.warning("Orphaned grant unreadable; dropped", extra={"error_type": type(exc).__name__})
            self._items.delete(key, expect={})
            return "abandoned"
        if budget(deadline, now) < MIN_PROVIDER_CALL:
            return self._later(key, item, now, error=None)
        try:
            self._provider.revoke(profile, self._credentials.credentials(profile), tokens["access_token"],
                                  deadline=deadline)
        except ProviderError as exc:
            if exc.kind != FailureKind.TRANSIENT:  # refused outright: the grant is already gone, or never will be
                logger.info("Orphaned grant revoke refused", extra={"provider_error": exc.code})
                self._items.delete(key, expect={})
                return "abandoned"
            return self._later(key, item, now, error=exc)
        except Exception as exc:  # noqa: BLE001 - configuration trouble: try again later
            return self._later(key, item, now, error=exc)
        self._items.delete(key, expect={})
        record_metric("OrphanedGrantsRevoked", MetricUnit.Count, 1)
        return "revoked"

    def _later(self, key: str, item: dict[str, Any], now: int, *, error: Exception | None) -> str:
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
                                     "due_shard": due_shard(key, self._shards)}, expect={})
        return "retrying"
