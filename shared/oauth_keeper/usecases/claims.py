"""Connect confirmation: pending grants held by the callback, claimed by the app's backend, or discarded.

The callback stores the grant as `pending#<hash of the claim code>` in the Connections table (tokens sealed like
a connection's; never touching an existing connection) and sends the browser back with the code. The app's
backend claims it with the owner of its logged-in session (`POST /connections/claims`): the same owner makes it
a connection (new, or the existing one reconnected or upgraded) and publishes Created or Reconnected; the
connection and the pending item's `claimed` state are one transaction, so a claim never answers for a grant the
expiry discarded meanwhile. Another owner burns the code and the grant is discarded, unless that owner already
holds a live connection of the same provider account: the same provider user consented in that owner's session,
so the grant reconnects that connection (TikTok may keep one grant per app and user: the consent has just
superseded its old grant). A grant never claimed is discarded when its code expires: the item is due (Due index)
at that moment, and the refresh worker handles it. A provider's removal event (`note_removal`, the webhook)
ends a grant consented before it: claim and worker discard it (`user_revoked`). A discarded grant goes to the
orphan revoke, which revokes it only if no other live or pending connection holds the same account
(`orphans.account_held`): a revoke could end the rightful owner's connection.

The item carries `owner_id` and `account_key`, so the ByOwner and ByAccount indexes find it (an erasure deletes
it; a revoke decision sees it), while `ConnectionStore.get` never reads it as a connection (no token served).
"""

from __future__ import annotations

import json
import random
import time
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
from ..domain.connection import DISCONNECTED, DISCONNECTING, Connection, Grant, Reason, TokenBinding
from ..domain.deadlines import ENRICH_MIN, budget
from ..domain.errors import ClaimRefused, InvalidInput, OwnerErased, TokenDecryptionError
from ..domain.flows import OAuthFlow
from ..domain.lifecycle import GrantPlan, plan_grant
from ..domain.protocol import new_secret
from ..domain.provider_events import granted_at
from ..domain.schedule import due_shard
from ..domain.tokens import TokenSet
from ..domain.validation import OWNER_ID, OWNER_ID_RULE
from ..observability import MetricUnit, logger, record_metric
from ..ports import MISSING, Clock, ConnectionRepository, EventPublisher, ItemStore, Sleep, TransactWrite
from .connections import ConnectionView, connection_view
from .erasure import Erasures
from .orphans import OrphanGrants
from .outbox import OutboxRelay

_CLAIM_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_CLAIM_FIELDS = {"claim", "owner_id"}
_ATTEMPTS = 12  # lost races per claim (a connection or the pending item written meanwhile): each re-reads


class ClaimAnswer(TypedDict):
    """`POST /connections/claims`' answer (openapi.yaml `ClaimResult`)."""

    result: Literal["created", "reconnected"]
    connection: ConnectionView


class PendingGrants:
    def __init__(self, *, items: ItemStore, connections: ConnectionRepository, outbox: OutboxRelay,
                 publisher: EventPublisher, clock: Clock, orphans: OrphanGrants | None = None,
                 erasures: Erasures | None = None, sleep: Sleep = time.sleep, enrich: Any = None) -> None:
        """`items` is the Connections table; `enrich(connection, access_token, deadline)` fetches the display
        name (best effort); `sleep` spaces the retries of a lost race."""
        self._items = items
        self._connections = connections
        self._outbox = outbox
        self._publisher = publisher
        self._clock = clock
        self._orphans = orphans
        self._erasures = erasures
        self._sleep = sleep
        self._enrich = enrich

    # -- the callback -----------------------------------------------------------------------------------------
    def hold(self, flow: OAuthFlow, grant: Grant, *, missing_scopes: list[str],
             next_refresh_at: int | None, renews_with_access_token: bool = False,
             chain_next: int | None = None) -> str:
        """Store `grant` pending for CLAIM_TTL; return the claim code (256-bit; only its hash is stored).
        `renews_with_access_token`: the provider's strategy renews the grant with its access token (extend,
        re_exchange), so the claimed connection is planned and keeps the token's `issued_at` (see plan_grant).
        `chain_next`: the connect chain's link still to run on these short-lived tokens: the claimed connection is
        stored `connect_finishing` and the worker runs it (ADR 0025)."""
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
            "renews_with_access_token": True if renews_with_access_token else None,
            "chain_next": chain_next,
        }, expect={"state": MISSING})
        record_metric("GrantsPendingConfirmation", MetricUnit.Count, 1)
        logger.info("Grant held for confirmation", extra={"owner_id": grant.owner_id, "provider": grant.provider})
        return code

    # -- a provider's removal (the webhook's, applied by the refresh worker) ------------------------------------
    def note_removal(self, key: str, granted_before: int) -> str | None:
        """A provider's removal event for this grant's account (`authorization.removed`): a pending grant the user
        consented to before `granted_before` (epoch seconds) gets `removed_at` and is due now, so neither a claim
        nor the worker ever makes it a connection (both discard it, reason `user_revoked`). Writes only
        `removed_at` and `next_refresh_at`.

        Returns the id of the connection a claim made of this grant, when it is claimed (also meanwhile): the
        removal must reach it too, and the ByAccount index may not show it yet. None otherwise."""
        wanted = ("state", "created_at", "claimed_connection")
        item = self._items.get(key, wanted)
        if not item or "state" not in item:
            return None
        if item["state"] == PENDING and int(item.get("created_at", 0)) < granted_before:
            # Not guarded on the state: on an item settled meanwhile the two attributes change nothing (a
            # settled item is in no index: it has no due_shard).
            self._items.update(key, set={"removed_at": int(granted_before), "next_refresh_at": int(self._clock.now())},
                               expect={self._items.key_name: key})
            item = self._items.get(key, wanted) or {}  # a claim may have landed first: its connection is ended
            logger.info("Pending grant ended by the provider's removal event")
        claimed = item.get("claimed_connection")
        return claimed if item.get("state") == CLAIMED and isinstance(claimed, str) else None

    # -- the app's backend ------------------------------------------------------------------------------------
    def claim(self, body: dict[str, Any], *, deadline: float | None = None) -> ClaimAnswer:
        """`POST /connections/claims {claim, owner_id}`: make the pending grant a connection for `owner_id`, the
        owner of the app's logged-in session. Repeating a successful claim answers the same. An older consent
        claimed after the connection took a newer grant leaves the newer one (answered `reconnected`, the
        connection as it is).

        Raises InvalidInput (400: bad body), ClaimRefused (404 `claim_not_found`; 410 `claim_expired`,
        `claim_used` or `user_revoked` (the user removed the app at the provider after consenting); 409
        `owner_mismatch`: another owner began this connect, the code is now burned and the grant discarded, or
        it reconnected the claimant's own live connection of the same provider account), OwnerErased (409: the
        owner was erased after the connect began; the grant is discarded), RuntimeError (the items kept changing
        under twelve attempts)."""
        claim, owner_id = _parse(body)
        key = pending_key(claim)
        for _ in range(_ATTEMPTS):
            answer = self._claim(key, owner_id, deadline)
            if answer is not None:
                return answer
        raise RuntimeError("The pending grant kept changing while claiming it.")

    def _claim(self, key: str, owner_id: str, deadline: float | None) -> ClaimAnswer | None:
        """One attempt on the pending item as read now; None when it changed under the attempt (read again)."""
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
            code = "claim_expired" if state == EXPIRED else "user_revoked" if item.get("removed_at") \
                else "claim_used"
            raise ClaimRefused("This claim code can no longer be used.", code=code, status=410)
        if now >= int(item["expires_at"]):
            self.discard(key, Reason.CLAIM_EXPIRED)
            raise ClaimRefused("This claim code has expired.", code="claim_expired", status=410)
        if item["owner_id"] != owner_id:
            audit.note(grant_owner_id=item["owner_id"])  # the rightful owner, for the audit record only
            outcome = self._reconnect_claimant(key, item, owner_id, now)
            if outcome == "changed":
                return None
            if outcome != "reconnected":
                self.discard(key, Reason.OWNER_MISMATCH)
            logger.warning("Claim by another owner refused", extra={"owner_id": owner_id,
                                                                     "claimant_reconnected": outcome == "reconnected"})
            record_metric("ClaimsRefused", MetricUnit.Count, 1)
            raise ClaimRefused("This connect was begun by another owner.", code="owner_mismatch", status=409)
        if item.get("removed_at"):
            self.discard(key, Reason.USER_REVOKED)
            raise ClaimRefused("The user removed this app's access at the provider after consenting.",
                               code="user_revoked", status=410)
        if self._erasures is not None:
            try:
                self._erasures.check(issued_at=int(item["issued_at"]), owner_key=item.get("owner_key"),
                                     owner_id=owner_id)
            except OwnerErased:
                self.discard(key, Reason.OWNER_ERASED)
                raise
        return self._confirm(key, item, now, deadline)

    def _confirm(self, key: str, item: dict[str, Any], now: int, deadline: float | None) -> ClaimAnswer | None:
        tokens = self._tokens(key, item)
        if tokens is None:  # counted in TokenIntegrityFailures (its alarm): never made a connection
            logger.error("Pending grant's tokens failed authentication; grant discarded")
            self.discard(key, Reason.TOKEN_UNREADABLE)
            raise ClaimRefused("This claim code can no longer be used.", code="claim_used", status=410)
        grant = Grant(owner_id=item["owner_id"], provider=item["provider"], account_id=item["account_id"],
                      tokens=tokens, scopes_requested=_split(item.get("scopes_requested")),
                      scopes_granted=_split(item.get("scopes_granted")))
        consented = int(item["created_at"])
        for attempt in range(_ATTEMPTS):
            existing = self._connections.find(grant.owner_id, grant.provider, grant.account_id)
            if existing is not None and self._connections.claimed_from(existing.connection_id) == key:
                # Stored by a version whose claim wrote the connection and the pending item one after the other,
                # and stopped between the two: settle the item, write nothing twice.
                result = "created" if existing.created_at == existing.connected_at else "reconnected"
                if not self._items.update(key, set=_claimed(existing.connection_id, result, now),
                                          expect=_CLAIMABLE):
                    return None
                return self._answer(existing.connection_id, result)
            if existing is not None and granted_at(existing) > consented:
                return self._keep_newer(key, item, existing, now)
            plan = _plan(existing, grant, self._connections, item, now, consented,
                         missing=list(_split(item.get("missing_scopes"))))
            result = "created" if plan.created else "reconnected"
            written = self._connections.write_grant(plan, claimed_from=key, together_with=[TransactWrite(
                key, set=_claimed(plan.connection.connection_id, result, now), expect=_CLAIMABLE)])
            if written:
                break
            if not self._still_claimable(key):
                return None  # discarded (expired, removed) or claimed meanwhile: answer from what it is now
            self._sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - de-synchronise contenders
        else:
            raise RuntimeError("Connection kept changing while claiming a grant.")
        record_metric("ConnectionsCreated" if plan.created else "ConnectionsReconnected", MetricUnit.Count, 1)
        logger.info("Grant claimed", extra={"connection_id": written.connection_id, "new_connection": plan.created})
        connection = self._outbox.publish(written)
        if self._enrich is not None and budget(deadline, self._clock.now()) >= ENRICH_MIN:
            self._enrich(connection, tokens.access_token, deadline)
        return self._answer(connection.connection_id, result)

    def _keep_newer(self, key: str, item: dict[str, Any], existing: Connection, now: int) -> ClaimAnswer | None:
        """The connection holds a grant consented after this one (two tabs, the later claimed first): under one
        grant per app and user this older one is dead at the provider, so it never replaces the newer. The claim
        is settled on the connection as it is; the older grant goes to the orphan revoke, which leaves it when
        the connection (or anyone) holds the account. Due now until that is done, so a crash is finished by the
        worker."""
        if not self._items.update(key, set={**_claimed(existing.connection_id, "reconnected", now),
                                            "tokens": item["tokens"], "next_refresh_at": now,
                                            "due_shard": item.get("due_shard")}, expect=_CLAIMABLE):
            return None
        logger.info("Older consent claimed after a newer grant: the newer kept",
                    extra={"connection_id": existing.connection_id})
        record_metric("ClaimsOfOlderGrants", MetricUnit.Count, 1)
        self._finish(key, {**item, "state": CLAIMED})
        return self._answer(existing.connection_id, "reconnected")

    def _reconnect_claimant(self, key: str, item: dict[str, Any], claimant: str, now: int) -> str:
        """A claim by another owner than the link's: when the claimant holds a live connection of the same provider
        account, the provider user who consented is the claimant's own (it consented in the claimant's session),
        and under one grant per app and user the consent has just superseded that connection's grant. So the
        grant reconnects the claimant's connection, in one transaction with the pending item refused (code
        burned, `Connection Confirmation Failed` for the link's owner stored on it). Never any other owner's
        connection, never a new one. Returns `reconnected`, `no` (nothing of the claimant's to reconnect: discard
        as usual) or `changed` (the pending item changed meanwhile: read it again)."""
        if item.get("removed_at"):
            return "no"
        tokens = self._tokens(key, item)
        if tokens is None:
            return "no"
        consented = int(item["created_at"])
        granted = _split(item.get("scopes_granted"))
        event = events.confirmation_failed_event(
            owner_id=item["owner_id"], provider=item["provider"], connection_id=item.get("target_connection"),
            reason=Reason.OWNER_MISMATCH, occurred_at=now)
        refused = {"state": REFUSED, "failed_event": json.dumps(event), "tokens": None, "next_refresh_at": now}
        for attempt in range(_ATTEMPTS):
            existing = self._connections.find(claimant, item["provider"], item["account_id"])
            if existing is None or existing.status in (DISCONNECTED, DISCONNECTING) or existing.erase_requested \
                    or granted_at(existing) > consented:
                return "no"
            grant = Grant(owner_id=claimant, provider=item["provider"], account_id=item["account_id"], tokens=tokens,
                          scopes_requested=existing.scopes_requested, scopes_granted=granted)
            plan = _plan(existing, grant, self._connections, item, now, consented,
                         missing=[s for s in existing.scopes_requested if s not in granted])
            written = self._connections.write_grant(plan, claimed_from=key, together_with=[
                TransactWrite(key, set=refused, expect=_CLAIMABLE)])
            if written:
                break
            if not self._still_claimable(key):
                return "changed"
            self._sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311 - de-synchronise contenders
        else:
            raise RuntimeError("Connection kept changing while claiming a grant.")
        audit.note(connection_id=written.connection_id)  # the claimant's own connection, in the record only
        record_metric("ConnectionsReconnected", MetricUnit.Count, 1)
        logger.warning("Claim by another owner: the grant reconnected the claimant's own connection of the account",
                       extra={"connection_id": written.connection_id, "owner_id": claimant})
        self._outbox.publish(written)
        self._finish(key, {**item, **refused})
        return "reconnected"

    def _still_claimable(self, key: str) -> bool:
        found = self._items.get(key, ("state", "removed_at")) or {}
        return found.get("state") == PENDING and "removed_at" not in found

    def _tokens(self, key: str, item: dict[str, Any]) -> TokenSet | None:
        """The pending grant's tokens; None when they fail authentication."""
        try:
            return tokens_from_data(self._connections.open_tokens_of(_binding(key, item), item["tokens"])["grant"])
        except TokenDecryptionError:
            return None

    def _answer(self, connection_id: str, result: str) -> ClaimAnswer:
        connection = self._connections.get(connection_id)
        if connection is None:  # deleted since (an erasure): the claim did happen, nothing is left of it
            raise ClaimRefused("The connection this claim made is gone.", code="claim_used", status=410)
        return {"result": "created" if result == "created" else "reconnected",
                "connection": connection_view(connection, self._clock.now())}

    # -- discarding: refused, expired, removed, erased --------------------------------------------------------
    def discard(self, key: str, reason: str, *, delete: bool = False) -> str:
        """End a pending grant unclaimed: the state first (the code is burned), then `Connection Confirmation
        Failed`, then the tokens go to the background revoke (which leaves a grant another live or pending
        connection holds; a grant the provider's removal ended is dropped). Every step is repeatable: an item
        whose event or tokens are still on it stays due, and `expire` (the worker) finishes it. `delete` (an
        erasure): the item goes too, once done. Returns `discarded` or `not_pending`."""
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
        """The worker's step for a due `pending#` item: discard it when its code has expired or the provider's
        removal ended it (`user_revoked`), finish a discard a crash interrupted. Returns `discarded`, `not_due`
        or `not_pending`."""
        item = self._items.get(key)
        if item is None or "state" not in item:
            return "not_pending"
        if item["state"] == PENDING:
            if item.get("removed_at"):
                return self.discard(key, Reason.USER_REVOKED)
            if int(self._clock.now()) < int(item["expires_at"]):
                return "not_due"
            record_metric("ClaimsExpired", MetricUnit.Count, 1)
            return self.discard(key, Reason.CLAIM_EXPIRED)
        if item["state"] in (REFUSED, EXPIRED) or item.get("tokens"):  # claimed with tokens: an older grant kept
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
            # The orphan revoke decides whether to revoke (`orphans.account_held`); a grant the provider's removal
            # ended has nothing left to revoke.
            if self._orphans is not None and not item.get("removed_at"):
                tokens = self._tokens(key, item)
                if tokens is None:
                    logger.warning("Unclaimed grant unreadable; left to expire")
                else:
                    self._orphans.record(item["provider"], tokens,
                                         "superseded" if item["state"] == CLAIMED else "unclaimed")
            self._items.update(key, set={"tokens": None}, expect={"state": item["state"]})
        if item.get("erase_requested"):
            self._items.delete(key, expect={"state": item["state"]})
            return
        self._items.update(key, set={"next_refresh_at": None, "due_shard": None}, expect={"state": item["state"]})

    def pending_until(self, provider: str, account_id: str) -> int | None:
        """When the latest claimable pending grant for this provider account expires (epoch seconds), whichever
        owner's link it came through, or None: while one waits for its claim, that consent may have superseded
        the connection's grant at the provider (TikTok may keep one grant per app and user, and a forwarded link
        is consented by the same provider user), so the refresh token's refusal is not (yet) the user's
        revocation. A grant the provider's removal ended does not count: the refusal is the user's then."""
        now, until = int(self._clock.now()), None
        for other in self._connections.of_account(provider, account_id):
            if is_pending_key(other):
                found = self._items.get(other, ("state", "expires_at", "removed_at"))
                if found and found.get("state") == PENDING and "removed_at" not in found \
                        and int(found.get("expires_at", 0)) > now:
                    until = max(until or 0, int(found["expires_at"]))
        return until


_CLAIMABLE = {"state": PENDING, "removed_at": MISSING}  # what a claim's write expects of the pending item


def _claimed(connection_id: str, result: str, now: int) -> dict[str, Any]:
    """The pending item settled by a claim: the connection it reached, the answer for a repeat, no tokens, not due."""
    return {"state": CLAIMED, "claimed_connection": connection_id, "claim_result": result, "claimed_at": now,
            "tokens": None, "next_refresh_at": None, "due_shard": None}


def _plan(existing: Connection | None, grant: Grant, connections: ConnectionRepository, item: dict[str, Any],
          now: int, consented: int, *, missing: list[str]) -> GrantPlan:
    """The claimed grant as a connection: `existing` reconnected, or a new one. A held grant never borrows the
    existing connection's refresh token (the callback refused one without its own, where the provider issues
    them); its `connected_at` is the consent's time. A grant held before its connect chain was done is claimed
    `connect_finishing`, the rest of the chain due at once (ADR 0025)."""
    connection_id = existing.connection_id if existing is not None \
        else connections.new_id(grant.owner_id, grant.provider, grant.account_id)
    return plan_grant(existing, grant, connection_id=connection_id, stored_refresh_token=None,
                      next_refresh_at=item.get("planned_refresh_at"), missing_scopes=missing, now=now,
                      requires_refresh_token=bool(grant.tokens.refresh_token), connected_at=consented,
                      renews_with_access_token=bool(item.get("renews_with_access_token")),
                      chain_next=int(item["chain_next"]) if item.get("chain_next") is not None else None)


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
