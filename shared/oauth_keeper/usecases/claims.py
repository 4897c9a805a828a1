"""Connect confirmation: pending grants held by the callback, claimed by the app's backend, or discarded.

The callback stores the grant as `pending#<hash of the claim code>` in the Connections table (tokens sealed like
a connection's; never touching an existing connection) and sends the browser back with the code. The app's
backend claims it with the owner of its logged-in session (`POST /connections/claims`): the same owner makes it
a connection (new, or the existing one reconnected or upgraded) and publishes Created or Reconnected; another
owner burns the code and discards the grant. A grant never claimed is discarded when its code expires: the item
is due (Due index) at that moment, and the refresh worker handles it. A discarded grant is revoked at the
provider only if no other live or pending connection holds the same account: TikTok may keep one grant per app
and user, so a revoke could end the rightful owner's connection.

The item carries `owner_id` and `account_key`, so the ByOwner and ByAccount indexes find it (an erasure deletes
it; a revoke decision sees it), while `ConnectionStore.get` never reads it as a connection (no token served).
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

from .. import audit
from ..domain import events
from ..domain.claims import (
    CLAIM_TTL,
    CLAIMED,
    EXPIRED,
    MAX_CLAIM_LENGTH,
    PENDING,
    PENDING_KEPT,
    REFUSED,
    is_pending_key,
    pending_key,
    tokens_from_data,
    tokens_to_data,
)
from ..domain.connection import DISCONNECTED, DISCONNECTING, Grant, Reason, TokenBinding
from ..domain.deadlines import ENRICH_MIN, budget
from ..domain.errors import ClaimRefused, InvalidInput, OwnerErased, TokenDecryptionError
from ..domain.flows import OAuthFlow
from ..domain.protocol import new_secret
from ..domain.schedule import due_shard
from ..domain.validation import OWNER_ID, OWNER_ID_RULE
from ..observability import MetricUnit, logger, record_metric
from ..ports import MISSING, Clock, ConnectionRepository, EventPublisher, ItemStore
from .connections import ConnectionView, connection_view
from .erasure import Erasures
from .orphans import OrphanGrants
from .outbox import OutboxRelay

_CLAIM_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_CLAIM_FIELDS = {"claim", "owner_id"}


class ClaimAnswer(TypedDict):
    """`POST /connections/claims`' answer (openapi.yaml `ClaimResult`)."""

    result: Literal["created", "reconnected"]
    connection: ConnectionView


class PendingGrants:
    def __init__(self, *, items: ItemStore, connections: ConnectionRepository, outbox: OutboxRelay,
                 publisher: EventPublisher, clock: Clock, orphans: OrphanGrants | None = None,
                 erasures: Erasures | None = None, save: Any = None, enrich: Any = None) -> None:
        """`items` is the Connections table; `save(grant, next_refresh_at, missing, now, claim_key)` stores a
        grant as the callback would (usecases/connect.py `save_grant`); `enrich(connection, access_token,
        deadline)` fetches the display name (best effort)."""
        self._items = items
        self._connections = connections
        self._outbox = outbox
        self._publisher = publisher
        self._clock = clock
        self._orphans = orphans
        self._erasures = erasures
        self._save = save
        self._enrich = enrich

    # -- the callback -----------------------------------------------------------------------------------------
    def hold(self, flow: OAuthFlow, grant: Grant, *, missing_scopes: list[str],
             next_refresh_at: int | None) -> str:
        """Store `grant` pending for CLAIM_TTL; return the claim code (256-bit; only its hash is stored)."""
        code = new_secret()
        key = pending_key(code)
        now = int(self._clock.now())
        sealed = self._connections.seal_tokens_of(
            TokenBinding(key, grant.provider, grant.owner_id, grant.account_id, 0),
            {"grant": tokens_to_data(grant.tokens)})
        self._items.update(key, set={
            "owner_id": grant.owner_id, "provider": grant.provider, "account_id": grant.account_id,
            "account_key": f"{grant.provider}#{grant.account_id}", "state": PENDING, "tokens": sealed,
            "scopes_requested": ",".join(grant.scopes_requested), "scopes_granted": ",".join(grant.scopes_granted),
            "missing_scopes": ",".join(missing_scopes) or None, "planned_refresh_at": next_refresh_at,
            "target_connection": flow.connection_id, "issued_at": flow.issued, "owner_key": flow.owner_key,
            "created_at": now, "expires_at": now + CLAIM_TTL, "purge_at": now + CLAIM_TTL + PENDING_KEPT,
            # Due at expiry: the worker discards it then if it was never claimed.
            "next_refresh_at": now + CLAIM_TTL, "due_shard": due_shard(key, self._connections.shards),
        }, expect={"state": MISSING})
        record_metric("GrantsPendingConfirmation", MetricUnit.Count, 1)
        logger.info("Grant held for confirmation", extra={"owner_id": grant.owner_id, "provider": grant.provider})
        return code

    # -- the app's backend ------------------------------------------------------------------------------------
    def claim(self, body: dict[str, Any], *, deadline: float | None = None) -> ClaimAnswer:
        """`POST /connections/claims {claim, owner_id}`: make the pending grant a connection for `owner_id`, the
        owner of the app's logged-in session. Repeating a successful claim answers the same.

        Raises InvalidInput (400: bad body), ClaimRefused (404 `claim_not_found`; 410 `claim_expired` or
        `claim_used`; 409 `owner_mismatch`: another owner began this connect, the code is now burned and the
        grant discarded), OwnerErased (409: the owner was erased after the connect began; the grant is
        discarded)."""
        claim, owner_id = _parse(body)
        key = pending_key(claim)
        item = self._items.get(key)
        if item is None or "state" not in item:
            raise ClaimRefused("No such claim code.", code="claim_not_found", status=404)
        now = int(self._clock.now())
        state = item["state"]
        if state == CLAIMED:
            if item["owner_id"] != owner_id:
                audit.note(grant_owner_id=item["owner_id"])  # the rightful owner, for the audit record only
                raise ClaimRefused("This claim belongs to another owner.", code="owner_mismatch", status=409)
            return self._answer(item["claimed_connection"], item["claim_result"])
        if state != PENDING:
            code = "claim_expired" if state == EXPIRED else "claim_used"
            raise ClaimRefused("This claim code can no longer be used.", code=code, status=410)
        if now >= int(item["expires_at"]):
            self.discard(key, Reason.CLAIM_EXPIRED)
            raise ClaimRefused("This claim code has expired.", code="claim_expired", status=410)
        if item["owner_id"] != owner_id:
            audit.note(grant_owner_id=item["owner_id"])  # the rightful owner, for the audit record only
            self.discard(key, Reason.OWNER_MISMATCH)
            logger.warning("Claim by another owner refused; grant discarded", extra={"owner_id": owner_id})
            record_metric("ClaimsRefused", MetricUnit.Count, 1)
            raise ClaimRefused("This connect was begun by another owner.", code="owner_mismatch", status=409)
        if self._erasures is not None:
            try:
                self._erasures.check(issued_at=int(item["issued_at"]), owner_key=item.get("owner_key"),
                                     owner_id=owner_id)
            except OwnerErased:
                self.discard(key, Reason.OWNER_ERASED)
                raise
        return self._confirm(key, item, now, deadline)

    def _confirm(self, key: str, item: dict[str, Any], now: int, deadline: float | None) -> ClaimAnswer:
        try:
            data = self._connections.open_tokens_of(_binding(key, item), item["tokens"])
        except TokenDecryptionError:  # counted in TokenIntegrityFailures (its alarm): never made a connection
            logger.error("Pending grant's tokens failed authentication; grant discarded")
            self.discard(key, Reason.TOKEN_UNREADABLE)
            raise ClaimRefused("This claim code can no longer be used.", code="claim_used", status=410) from None
        tokens = tokens_from_data(data["grant"])
        grant = Grant(owner_id=item["owner_id"], provider=item["provider"], account_id=item["account_id"],
                      tokens=tokens, scopes_requested=_split(item.get("scopes_requested")),
                      scopes_granted=_split(item.get("scopes_granted")))
        saved = self._save(grant, item.get("planned_refresh_at"), list(_split(item.get("missing_scopes"))), now,
                           key)
        result = "created" if saved.created else "reconnected"
        self._items.update(key, set={
            "state": CLAIMED, "claimed_connection": saved.connection.connection_id, "claim_result": result,
            "claimed_at": now, "tokens": None, "next_refresh_at": None, "due_shard": None,
        }, expect={"state": PENDING})
        record_metric("ConnectionsCreated" if saved.created else "ConnectionsReconnected", MetricUnit.Count, 1)
        logger.info("Grant claimed", extra={"connection_id": saved.connection.connection_id,
                                            "new_connection": saved.created})
        connection = self._outbox.publish(saved.connection)
        if self._enrich is not None and budget(deadline, self._clock.now()) >= ENRICH_MIN:
            self._enrich(connection, tokens.access_token, deadline)
        return self._answer(connection.connection_id, result)

    def _answer(self, connection_id: str, result: str) -> ClaimAnswer:
        connection = self._connections.get(connection_id)
        if connection is None:  # deleted since (an erasure): the claim did happen, nothing is left of it
            raise ClaimRefused("The connection this claim made is gone.", code="claim_used", status=410)
        return {"result": "created" if result == "created" else "reconnected",
                "connection": connection_view(connection, self._clock.now())}

    # -- discarding: refused, expired, erased -----------------------------------------------------------------
    def discard(self, key: str, reason: str, *, delete: bool = False) -> str:
        """End a pending grant unclaimed: the state first (the code is burned), then `Connection Confirmation
        Failed`, then the tokens go to the background revoke unless another live or pending connection holds
        the same account (else dropped). Every step is repeatable: an item whose event or tokens are still on it
        stays due, and `expire` (the worker) finishes it. `delete` (an erasure): the item goes too, once done.
        Returns `discarded` or `not_pending`."""
        item = self._items.get(key)
        if item is None or "state" not in item:
            return "not_pending"
        if item["state"] == PENDING:
            final = REFUSED if reason != Reason.CLAIM_EXPIRED else EXPIRED
            event = events.confirmation_failed_event(
                owner_id=item["owner_id"], provider=item["provider"], connection_id=item.get("target_connection"),
                reason=reason, occurred_at=self._clock.now())
            if not self._items.update(key, set={"state": final, "failed_event": json.dumps(event),
                                                "erase_requested": True if delete else None,
                                                "next_refresh_at": int(self._clock.now())},
                                      expect={"state": PENDING}):
                return self.discard(key, reason, delete=delete)  # changed meanwhile: settle what is there now
            item = self._items.get(key) or {}
        elif item["state"] == CLAIMED:
            if delete:  # the connection it made is the erasure's to end; the answer for a repeat goes
                self._items.delete(key, expect={"state": CLAIMED})
            return "not_pending"
        elif delete and not item.get("erase_requested"):
            self._items.update(key, set={"erase_requested": True}, expect={"state": item["state"]})
            item = {**item, "erase_requested": True}
        self._finish(key, item)
        return "discarded"

    def expire(self, key: str) -> str:
        """The worker's step for a due `pending#` item: discard it when its code has expired, finish a discard a
        crash interrupted. Returns `discarded`, `not_due` or `not_pending`."""
        item = self._items.get(key)
        if item is None or "state" not in item:
            return "not_pending"
        if item["state"] == PENDING:
            if int(self._clock.now()) < int(item["expires_at"]):
                return "not_due"
            record_metric("ClaimsExpired", MetricUnit.Count, 1)
            return self.discard(key, Reason.CLAIM_EXPIRED)
        if item["state"] in (REFUSED, EXPIRED):
            self._finish(key, item)
            return "discarded"
        return "not_pending"

    def _finish(self, key: str, item: dict[str, Any]) -> None:
        if item.get("failed_event"):
            if self._publisher.publish([json.loads(item["failed_event"])]):
                self._items.update(key, set={"failed_event": None}, expect={"state": item["state"]})
            else:
                return  # still due: the next sweep tries again
        if item.get("tokens"):
            if not self._held_elsewhere(key, item["provider"], item["account_id"]) and self._orphans is not None:
                try:
                    data = self._connections.open_tokens_of(_binding(key, item), item["tokens"])
                    self._orphans.record(item["provider"], tokens_from_data(data["grant"]), "unclaimed")
                except TokenDecryptionError:
                    logger.warning("Unclaimed grant unreadable; left to expire")
            self._items.update(key, set={"tokens": None}, expect={"state": item["state"]})
        if item.get("erase_requested"):
            self._items.delete(key, expect={"state": item["state"]})
            return
        self._items.update(key, set={"next_refresh_at": None, "due_shard": None}, expect={"state": item["state"]})

    def _held_elsewhere(self, key: str, provider: str, account_id: str) -> bool:
        """Whether another live connection or pending grant holds this provider account (any owner)."""
        now = int(self._clock.now())
        for other in self._connections.of_account(provider, account_id):
            if other == key:
                continue
            if is_pending_key(other):
                found = self._items.get(other, ("state", "expires_at"))
                if found and found.get("state") == PENDING and int(found.get("expires_at", 0)) > now:
                    return True
                continue
            connection = self._connections.get(other)
            if connection is not None and connection.status not in (DISCONNECTED, DISCONNECTING):
                return True
        return False

    def pending_until(self, provider: str, account_id: str, owner_id: str) -> int | None:
        """When the latest pending grant of this owner for this account expires (epoch seconds), or None: while
        one waits for its claim, a new consent may have superseded the connection's grant at the provider, so
        the refresh token's refusal is not (yet) the user's revocation."""
        now, until = int(self._clock.now()), None
        for other in self._connections.of_account(provider, account_id):
            if is_pending_key(other):
                found = self._items.get(other, ("state", "expires_at", "owner_id"))
                if found and found.get("state") == PENDING and found.get("owner_id") == owner_id \
                        and int(found.get("expires_at", 0)) > now:
                    until = max(until or 0, int(found["expires_at"]))
        return until


def _parse(body: dict[str, Any]) -> tuple[str, str]:
    unknown = set(body) - _CLAIM_FIELDS
    if unknown:
        raise InvalidInput(f"Unknown field: {sorted(unknown)[0]}.", field=sorted(unknown)[0])
    claim, owner_id = body.get("claim"), body.get("owner_id")
    if not isinstance(claim, str) or not 0 < len(claim) <= MAX_CLAIM_LENGTH or not set(claim) <= _CLAIM_CHARS:
        raise InvalidInput("claim must be the code from the connect's return address.", field="claim")
    if not isinstance(owner_id, str) or not OWNER_ID.fullmatch(owner_id):
        raise InvalidInput(OWNER_ID_RULE, field="owner_id")
    return claim, owner_id


def _split(value: Any) -> tuple[str, ...]:
    return tuple(v for v in str(value or "").split(",") if v)


def _binding(key: str, item: dict[str, Any]) -> TokenBinding:
    """What a pending grant's tokens are sealed to: its key, provider, owner and account (written once: version 0).
    An item whose owner was rewritten (to be claimed by another owner) no longer opens."""
    return TokenBinding(key, item["provider"], item["owner_id"], item["account_id"], 0)
