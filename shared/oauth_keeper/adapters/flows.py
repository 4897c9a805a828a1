"""The `FlowStore` port on DynamoDB: connect sessions and OAuth flows, each consumed by one conditional delete, and
the tombstones of erased owners. Sessions and flows carry `owner_key` (a keyed hash of the owner id), which the
sparse KEYS_ONLY index `ByOwnerKey` is keyed by: an erasure finds them without the index holding the id. A flow's
PKCE verifier is stored sealed like tokens (`sealed_code_verifier`); flows written before were stored with it in
clear (`code_verifier`), and still read."""

from __future__ import annotations

from typing import Any

from ..domain.erasure import tombstone_key
from ..domain.errors import FlowRejection
from ..domain.flows import ConnectSession, OAuthFlow, secret_hash
from ..ports import SecretCipher
from .dynamodb import condition_failure_item, from_item, is_conditional_failure, to_item, to_values

PURGE_GRACE = 86_400  # DynamoDB TTL deletes lazily; code checks expires_at itself
BY_OWNER_KEY = "ByOwnerKey"  # template.yaml's index on the Flows table: owner_key -> flow_key (KEYS_ONLY)


class DynamoFlowStore:
    """The `FlowStore` port on the Flows table. Records expire by DynamoDB TTL (`purge_at`) a day after they end."""

    def __init__(self, dynamodb: Any, table: str, cipher: SecretCipher | None = None) -> None:
        """`cipher` seals PKCE verifiers; without it the store holds sessions, tombstones and flows without a
        verifier only (a verifier is never written in clear)."""
        self._db = dynamodb
        self._table = table
        self._cipher = cipher

    # -- connect sessions ------------------------------------------------------------------------------
    def put_session(self, token: str, session: ConnectSession) -> None:
        self._put(secret_hash("session", token), {
            "kind": "session",
            "owner_id": session.owner_id,
            "provider": session.provider,
            "return_to": session.return_to,
            "scopes": list(session.scopes),
            "mode": session.mode,
            "connection_id": session.connection_id,
            "expires_at": session.expires_at,
            "issued_at": session.issued_at,
            "owner_key": session.owner_key,
        }, session.expires_at)

    def take_session(self, token: str, provider: str, now: float) -> ConnectSession | None:
        """Consume a session atomically. None when unknown, used, expired or for another provider."""
        item, _ = self._take(secret_hash("session", token), provider, now, nonce_hash=None)
        if item is None:
            return None
        return ConnectSession(
            owner_id=item["owner_id"], provider=item["provider"], return_to=item["return_to"],
            scopes=tuple(item.get("scopes") or ()), expires_at=item["expires_at"],
            mode=item.get("mode", "redirect"), connection_id=item.get("connection_id"),
            issued_at=item.get("issued_at"), owner_key=item.get("owner_key"),
        )

    # -- OAuth flows -------------------------------------------------------------------------------------
    def put_flow(self, state: str, flow: OAuthFlow) -> None:
        """Store a flow under the state's hash, its PKCE verifier sealed and bound to that key and the provider.

        Raises ValueError for a flow with a verifier when the store has no cipher."""
        key = secret_hash("state", state)
        sealed = None
        if flow.code_verifier is not None:
            if self._cipher is None:
                raise ValueError("no cipher to seal the PKCE verifier with")
            sealed = self._cipher.seal_secret(flow.code_verifier, bound_to=_verifier_binding(key, flow.provider))
        self._put(key, {
            "kind": "flow",
            "provider": flow.provider,
            "owner_id": flow.owner_id,
            "return_to": flow.return_to,
            "scopes": list(flow.scopes),
            "redirect_uri": flow.redirect_uri,
            "sealed_code_verifier": sealed,
            "nonce_hash": flow.nonce_hash,
            "mode": flow.mode,
            "connection_id": flow.connection_id,
            "expires_at": flow.expires_at,
            "issued_at": flow.issued_at,
            "owner_key": flow.owner_key,
        }, flow.expires_at)

    def take_flow(self, state: str, provider: str, nonce: str, now: float) -> OAuthFlow:
        """Consume a flow with one conditional delete that requires the browser's nonce, the callback's
        provider and an unexpired flow, so nobody without the cookie can use up someone else's flow.

        Raises FlowRejection: `unknown` (or already used), `expired`, `wrong_provider`, `foreign_browser`,
        told apart from the record the failed delete read back, without consuming it. Raises
        TokenDecryptionError (the flow consumed) when its sealed verifier fails authentication."""
        key = secret_hash("state", state)
        item, competing = self._take(key, provider, now, nonce_hash=secret_hash("nonce", nonce))
        if item is None:
            raise FlowRejection(_why_rejected(competing, provider, now))
        return OAuthFlow(
            provider=item["provider"], owner_id=item["owner_id"], return_to=item["return_to"],
            scopes=tuple(item.get("scopes") or ()), redirect_uri=item["redirect_uri"],
            code_verifier=self._verifier(item, key), nonce_hash=item["nonce_hash"],
            expires_at=item["expires_at"], mode=item.get("mode", "redirect"),
            connection_id=item.get("connection_id"), issued_at=item.get("issued_at"),
            owner_key=item.get("owner_key"),
        )

    # -- erasure tombstones ------------------------------------------------------------------------------
    def erased_at(self, owner_key: str) -> int | None:
        answer = self._db.get_item(TableName=self._table, Key={"flow_key": {"S": tombstone_key(owner_key)}},
                                   ConsistentRead=True, ProjectionExpression="erased_at")
        item = from_item(answer.get("Item")) or {}
        return int(item["erased_at"]) if "erased_at" in item else None

    def record_erasure(self, owner_key: str, erased_at: int, until: int) -> None:
        # No owner_key attribute on the tombstone itself: it stays out of ByOwnerKey, so purges never delete it.
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item({"flow_key": tombstone_key(owner_key), "kind": "tombstone", "erased_at": int(erased_at),
                              "purge_at": int(until)}),
                ConditionExpression="attribute_not_exists(erased_at) OR erased_at <= :at",
                ExpressionAttributeValues=to_values({":at": int(erased_at)}),
            )
        except Exception as exc:
            if not is_conditional_failure(exc):  # a later erasure's tombstone is there already: it refuses more
                raise

    def delete_owned(self, owner_key: str, *, issued_until: int, limit: int,
                     start: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
        query: dict[str, Any] = {
            "TableName": self._table, "IndexName": BY_OWNER_KEY, "Limit": limit,
            "KeyConditionExpression": "owner_key = :k", "ExpressionAttributeValues": {":k": {"S": owner_key}},
        }
        if start:
            query["ExclusiveStartKey"] = start
        answer = self._db.query(**query)
        deleted = 0
        for key in answer.get("Items", []):
            try:
                self._db.delete_item(
                    TableName=self._table, Key={"flow_key": key["flow_key"]},
                    # Only what was issued by the erasure's second: a connect begun since is the owner's new one.
                    ConditionExpression="owner_key = :k AND (attribute_not_exists(issued_at) OR issued_at <= :t)",
                    ExpressionAttributeValues=to_values({":k": owner_key, ":t": int(issued_until)}),
                )
                deleted += 1
            except Exception as exc:
                if not is_conditional_failure(exc):  # consumed meanwhile, or issued after the erasure
                    raise
        return deleted, answer.get("LastEvaluatedKey")

    # -- internals -----------------------------------------------------------------------------------------
    def _verifier(self, item: dict[str, Any], key: str) -> str | None:
        """The flow's PKCE verifier: opened from `sealed_code_verifier`, or as stored in clear by a version from
        before sealing (`code_verifier`: flows in flight across the deploy); None for a flow without PKCE."""
        sealed = item.get("sealed_code_verifier")
        if sealed is None:
            return item.get("code_verifier")
        if self._cipher is None:
            raise ValueError("no cipher to open the PKCE verifier with")
        return self._cipher.open_secret(sealed, bound_to=_verifier_binding(key, item["provider"]))

    def _put(self, key: str, data: dict[str, Any], expires_at: int) -> None:
        self._db.put_item(
            TableName=self._table,
            Item=to_item({"flow_key": key, **data, "purge_at": expires_at + PURGE_GRACE}),
            ConditionExpression="attribute_not_exists(flow_key)",
        )

    def _take(self, key: str, provider: str, now: float, nonce_hash: str | None,
              ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the consumed record, None), or (None, the record the refused delete found, if any)."""
        condition = "attribute_exists(flow_key) AND provider = :provider AND expires_at > :now"
        values: dict[str, Any] = {":provider": provider, ":now": int(now)}
        if nonce_hash is not None:
            condition += " AND nonce_hash = :nonce"
            values[":nonce"] = nonce_hash
        try:
            answer = self._db.delete_item(
                TableName=self._table,
                Key={"flow_key": {"S": key}},
                ConditionExpression=condition,
                ExpressionAttributeValues=to_values(values),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if is_conditional_failure(exc):
                return None, condition_failure_item(exc)
            raise
        return from_item(answer.get("Attributes")), None


def _verifier_binding(flow_key: str, provider: str) -> str:
    """What a sealed verifier is bound to: copied onto another flow (or provider), it no longer opens."""
    return f"code_verifier|{provider}|{flow_key}"


def _why_rejected(item: dict[str, Any] | None, provider: str, now: float) -> str:
    """What went wrong, from the record as the refused delete found it (never consumed)."""
    if item is None:
        return "unknown"
    if item.get("expires_at", 0) <= int(now):
        return "expired"
    if item.get("provider") != provider:
        return "wrong_provider"
    return "foreign_browser"
