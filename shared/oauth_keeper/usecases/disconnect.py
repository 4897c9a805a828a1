"""Ending connections: disconnect (revoke, then erase the tokens), owner erasure, and the provider's own removal."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, TypedDict

from ..domain import events
from ..domain.connection import DISCONNECTED, Connection, Reason
from ..domain.deadlines import ERASE_RESERVE, MIN_PROVIDER_CALL, budget
from ..domain.errors import FailureKind, InvalidInput, ProviderError, TokenDecryptionError
from ..domain.provider_events import removal_applies
from ..domain.validation import OWNER_ID, OWNER_ID_RULE
from ..observability import MetricUnit, logger, record_metric
from ..ports import Clock, ConnectionRepository, Credentials, ProviderClient, ProviderProfiles, Sleep
from .connections import ConnectionView, connection_view, existing
from .outbox import OutboxRelay

REVOKE_ATTEMPTS = 3


class ErasureReport(TypedDict):
    owner_id: str
    erased: int  # connections deleted for good
    pending: int  # disconnected, deleted once their last event is published (by the sweep)


class AccountRemoval(TypedDict):
    disconnected: int  # connections this call made `disconnected`
    kept: list[str]  # ids of live connections granted on or after `granted_before`: left alone


class Disconnection:
    def __init__(self, *, connections: ConnectionRepository, profiles: ProviderProfiles, credentials: Credentials,
                 provider: ProviderClient, outbox: OutboxRelay, clock: Clock, sleep: Sleep = time.sleep) -> None:
        self._connections = connections
        self._profiles = profiles
        self._credentials = credentials
        self._provider = provider
        self._outbox = outbox
        self._clock = clock
        self._sleep = sleep

    def disconnect(self, connection_id: str, *, reason: str = Reason.APP_DISCONNECTED,
                   deadline: float | None = None) -> ConnectionView:
        """Revoke at the provider (RFC 7009; best effort, retried 3 times), then erase the tokens whatever
        happened: `disconnected`, Connection Disconnected. Idempotent. Raises NotFound."""
        connection = existing(self._connections, connection_id)
        if connection.status != DISCONNECTED:
            revoke_log_id, revoke_failed = self._revoke(connection, deadline)
            connection = self.mark_disconnected(connection_id, reason, provider_log_id=revoke_log_id,
                                                revoke_failed=revoke_failed) \
                or existing(self._connections, connection_id)
        return connection_view(connection, self._clock.now())

    def mark_disconnected(self, connection_id: str, reason: str, *, provider_log_id: str | None = None,
                          revoke_failed: bool = False, extra: dict[str, Any] | None = None,
                          granted_before: int | None = None) -> Connection | None:
        """Erase the tokens, leave the due index, publish Connection Disconnected (with `extra` in its detail).

        `granted_before` (epoch seconds): only if the connection's latest grant is older (a provider's event
        about an earlier grant); checked on the revision the guarded write is made from, so a reconnect landing
        meanwhile is left alone. None when the connection is unknown, already disconnected or granted since.
        Raises RuntimeError when it keeps changing under five guarded attempts."""
        store = self._connections
        for _ in range(5):
            connection = store.get(connection_id)
            if connection is None or connection.status == DISCONNECTED:
                return None
            if granted_before is not None and not removal_applies(connection, granted_before):
                return None
            now = self._clock.now()
            changes: dict[str, Any] = {
                "status": DISCONNECTED, "status_reason": reason, "tokens": None, "updated_at": int(now),
                "revoke_failed": True if revoke_failed else None, "revoke_log_id": provider_log_id,
                **store.schedule_attributes(connection_id, None),
            }
            event = events.connection_event(
                events.DISCONNECTED, replace(connection, status=DISCONNECTED, status_reason=reason), reason=reason,
                occurred_at=now, provider_log_id=provider_log_id,
                extra={"revoke_failed": revoke_failed, **(extra or {})},
            )
            written = store.apply(connection, changes, remove=("lease_owner", "lease_expires_at"), events=[event])
            if written:
                written = self._outbox.publish(written)
                record_metric("ConnectionsDisconnected", MetricUnit.Count, 1)
                logger.info("Connection disconnected", extra={"connection_id": connection_id, "reason": reason,
                                                              "revoke_failed": revoke_failed})
                return written
        raise RuntimeError("Connection kept changing while disconnecting.")

    def erase_owner(self, owner_id: str, *, deadline: float | None = None) -> ErasureReport:
        """Data-protection erasure: disconnect (revoke, event) and delete every connection of one owner.

        Raises InvalidInput for an owner id outside the allowed characters."""
        if not OWNER_ID.fullmatch(owner_id):
            raise InvalidInput(OWNER_ID_RULE, field="owner_id")
        store = self._connections
        erased, pending = 0, 0
        start = None
        while True:
            keys, start = store.owned_by(owner_id, limit=100, start=start)
            for key in keys:
                self.disconnect(key, deadline=deadline)
                if store.erase(key):
                    erased += 1
                    continue
                # Its Disconnected event still waits (EventBridge down): the sweep publishes it, then erases.
                current = store.get(key)
                if current and store.apply(current, {"erase_requested": True}):
                    pending += 1
                elif store.erase(key):
                    erased += 1
            if not start:
                break
        logger.info("Owner erased", extra={"owner_id": owner_id, "erased": erased, "pending": pending})
        return {"owner_id": owner_id, "erased": erased, "pending": pending}

    def disconnect_account(self, provider: str, account_id: str, reason: str,
                           extra: dict[str, Any] | None = None, *, granted_before: int | None = None,
                           ) -> AccountRemoval:
        """Every live connection of one provider account (any owner) becomes disconnected, without a revoke
        (the provider already ended the grant); with `granted_before` (epoch seconds), only those whose latest
        grant is older: the others are `kept`. Repeats change nothing."""
        store = self._connections
        removal: AccountRemoval = {"disconnected": 0, "kept": []}
        for key in list(store.of_account(provider, account_id)):
            if self.mark_disconnected(key, reason, extra=extra, granted_before=granted_before):
                removal["disconnected"] += 1
            elif granted_before is not None:
                current = store.get(key)  # told apart from "already disconnected"
                if current and current.status != DISCONNECTED and not removal_applies(current, granted_before):
                    removal["kept"].append(key)
        return removal

    def _revoke(self, connection: Connection, deadline: float | None) -> tuple[str | None, bool]:
        """(the provider's log id, whether the revoke failed for good)."""
        try:
            access_token = self._connections.open_tokens(connection).get("access_token")
        except TokenDecryptionError:
            return None, True
        if not access_token:
            return None, False
        profile = self._profiles.profile(connection.provider)
        log_id = None
        for attempt in range(REVOKE_ATTEMPTS):
            if budget(deadline, self._clock.now()) < MIN_PROVIDER_CALL + ERASE_RESERVE:  # keep time to erase
                break
            try:
                return self._provider.revoke(profile, self._credentials.credentials(profile), access_token,
                                             deadline=None if deadline is None else deadline - ERASE_RESERVE), False
            except ProviderError as exc:
                log_id = exc.log_id
                logger.warning("Revoke failed", extra={"connection_id": connection.connection_id,
                                                       "provider_error": exc.code, "attempt": attempt + 1})
                if exc.kind != FailureKind.TRANSIENT:
                    break
                self._sleep(0.2 * (attempt + 1))
            except Exception:  # noqa: BLE001 - revoking is best effort; erasing the tokens is not
                logger.exception("Revoke failed")
                break
        record_metric("RevokeFailed", MetricUnit.Count, 1)
        return log_id, True
