"""The `FlowStore` port on DynamoDB: connect sessions and OAuth flows, each consumed by one conditional delete."""

from __future__ import annotations

from typing import Any

from ..domain.errors import FlowRejection
from ..domain.flows import ConnectSession, OAuthFlow, secret_hash
from .dynamodb import condition_failure_item, from_item, is_conditional_failure, to_item, to_values

PURGE_GRACE = 86_400  # DynamoDB TTL deletes lazily; code checks expires_at itself


class DynamoFlowStore:
    """The `FlowStore` port on the Flows table. Records expire by DynamoDB TTL (`purge_at`) a day after they end."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

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
        )

    # -- OAuth flows -------------------------------------------------------------------------------------
    def put_flow(self, state: str, flow: OAuthFlow) -> None:
        self._put(secret_hash("state", state), {
            "kind": "flow",
            "provider": flow.provider,
            "owner_id": flow.owner_id,
            "return_to": flow.return_to,
            "scopes": list(flow.scopes),
            "redirect_uri": flow.redirect_uri,
            "code_verifier": flow.code_verifier,
            "nonce_hash": flow.nonce_hash,
            "mode": flow.mode,
            "connection_id": flow.connection_id,
            "expires_at": flow.expires_at,
        }, flow.expires_at)

    def take_flow(self, state: str, provider: str, nonce: str, now: float) -> OAuthFlow:
        """Consume a flow with one conditional delete that requires the browser's nonce, the callback's
        provider and an unexpired flow, so nobody without the cookie can use up someone else's flow.

        Raises FlowRejection: `unknown` (or already used), `expired`, `wrong_provider`, `foreign_browser`,
        told apart from the record the failed delete read back, without consuming it."""
        key = secret_hash("state", state)
        item, competing = self._take(key, provider, now, nonce_hash=secret_hash("nonce", nonce))
        if item is None:
            raise FlowRejection(_why_rejected(competing, provider, now))
        return OAuthFlow(
            provider=item["provider"], owner_id=item["owner_id"], return_to=item["return_to"],
            scopes=tuple(item.get("scopes") or ()), redirect_uri=item["redirect_uri"],
            code_verifier=item.get("code_verifier"), nonce_hash=item["nonce_hash"],
            expires_at=item["expires_at"], mode=item.get("mode", "redirect"),
            connection_id=item.get("connection_id"),
        )

    # -- internals -----------------------------------------------------------------------------------------
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


def _why_rejected(item: dict[str, Any] | None, provider: str, now: float) -> str:
    """What went wrong, from the record as the refused delete found it (never consumed)."""
    if item is None:
        return "unknown"
    if item.get("expires_at", 0) <= int(now):
        return "expired"
    if item.get("provider") != provider:
        return "wrong_provider"
    return "foreign_browser"
