"""The naive refresher the benchmarks compare against: Scan for due items, refresh one by one over httpx, update.

What a first version of this service would do, run in the same process, over the same item store and against the
same simulated TikTok as the product's worker, so the two are measured side by side. It is deliberately naive and
unsafe: no lease (two copies running at once would both spend a rotating refresh token), no breaker, no outbox,
no index (a Scan reads the whole table). It reuses the product's token sealing only so that the items it writes
stay readable by the product (the AES-GCM work is the same for both, so it is not what separates them).
"""

from __future__ import annotations

from typing import Any

import httpx
from oauth_keeper.adapters.connections import ConnectionStore, connection_from_item
from oauth_keeper.adapters.dynamodb import DynamoItemStore, from_item

from local.memory import MemoryItemStore


def scan_due(connections: ConnectionStore, now: int) -> tuple[list[dict[str, Any]], int]:
    """Every connection item with next_refresh_at <= now, and how many items the Scan read (all of them)."""
    store = connections.items
    inner = getattr(store, "inner", store)  # the bench's CountingItemStore wraps the real one
    if isinstance(inner, MemoryItemStore):
        items = inner.items()
    elif isinstance(inner, DynamoItemStore):
        client, table = inner._db, inner._table  # noqa: SLF001 - the naive design talks to the table directly
        items, start = [], None
        while True:
            page = client.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
            items.extend(from_item(i) for i in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    else:
        raise TypeError(f"no Scan for {type(inner).__name__}")
    due = [i for i in items if "owner_id" in i and (i.get("next_refresh_at") or now + 1) <= now]
    return due, len(items)


class NaiveRefresher:
    """Scan, then for each due item: open its tokens, POST grant_type=refresh_token, seal, UpdateItem."""

    def __init__(self, connections: ConnectionStore, http: httpx.Client, token_url: str,
                 credentials: dict[str, str], *, refresh_margin: int = 24 * 60) -> None:
        self._connections = connections
        self._http = http
        self._token_url = token_url
        self._credentials = credentials
        self._margin = refresh_margin  # next refresh: this long before the access token ends (the eager plan's)
        self.scanned = 0
        self.writes = 0

    def run(self, now: int, only: set[str] | None = None) -> int:
        """One pass: refresh every due connection (those in `only`, when given), one after another. Returns how
        many it refreshed."""
        due, self.scanned = scan_due(self._connections, now)
        done = 0
        for item in due:
            if only is not None and item["connection_id"] not in only:
                continue
            self._refresh(item, now)
            done += 1
        return done

    def _refresh(self, item: dict[str, Any], now: int) -> None:
        connection = connection_from_item(item)
        stored = self._connections.open_tokens(connection)
        answer = self._http.post(self._token_url, data={
            "client_key": self._credentials["client_key"], "client_secret": self._credentials["client_secret"],
            "grant_type": "refresh_token", "refresh_token": stored["refresh_token"]})
        body = answer.json()
        if "access_token" not in body:
            raise RuntimeError(f"naive refresh refused: {body.get('error')}")
        tokens = {"access_token": body["access_token"], "refresh_token": body.get("refresh_token") or
                  stored["refresh_token"], "token_type": body.get("token_type", "Bearer")}
        version = connection.token_version + 1
        access_expires_at = now + int(body["expires_in"])
        changes = {
            "tokens": self._connections.seal_tokens(connection, tokens, token_version=version),
            "token_version": version, "revision": connection.revision + 1,
            "access_expires_at": access_expires_at, "last_refresh_at": now, "updated_at": now,
            **self._connections.schedule_attributes(connection.connection_id, access_expires_at - self._margin),
        }
        if body.get("refresh_expires_in"):
            changes["refresh_expires_at"] = now + int(body["refresh_expires_in"])
        self._connections.items.update(connection.connection_id, set=changes, expect={})  # no condition: naive
        self.writes += 1
