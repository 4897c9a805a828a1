"""The `ChannelStore` port over any `ItemStore`: a connection's channels beside it in the Connections table.

One index item per connection (`channels#<connection id>`: generation, listed_at, status and the channels as a JSON
list of ids, names, statuses and whether each has a token) and one item per channel token
(`channel#<connection id>#<digest of the channel id>`, the token sealed by the same envelope encryption as a
connection's). None carries the attributes of the Due, Outbox, ByOwner or ByAccount index, so no sweep, listing or
account lookup ever meets them, and the connection item keeps its size whatever the number of channels (ADR 0024).
"""

from __future__ import annotations

import json

from ..domain.channels import ChannelIndex, Listing, StoredChannel, channel_key, channels_key
from ..domain.connection import Connection, TokenBinding
from ..ports import MISSING, ItemStore, TokenCipher

ACTIVE = "active"


class ListingSuperseded(RuntimeError):
    """Another listing of the connection stored its index while this one was being written: this one is dropped."""


def _rows(rows: list[dict]) -> str:
    """The index item's `channels` attribute: compact JSON kept in UTF-8 (`ensure_ascii=False`), so a name costs
    at most 4 bytes a character rather than 12 as an escaped astral character: 200 channels of 200-character
    names stay far below DynamoDB's 400 KB item (names hold no surrogates: domain/channels.py `_name`)."""
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def channel_binding(connection: Connection, channel_id: str, generation: int) -> TokenBinding:
    """What a channel token is sealed to: the connection's provider, owner and account, the connection and channel
    ids (`<connection id>/channel/<channel id>`: neither id can hold a `/`, and no connection id has this form,
    so a channel blob never opens as a connection's or another channel's) and the listing generation."""
    return TokenBinding(f"{connection.connection_id}/channel/{channel_id}", connection.provider,
                        connection.owner_id, connection.account_id, generation)


class ChannelItems:
    def __init__(self, items: ItemStore, cipher: TokenCipher) -> None:
        self.items = items
        self._cipher = cipher

    def index(self, connection_id: str) -> ChannelIndex | None:
        item = self.items.get(channels_key(connection_id))
        if not item or "generation" not in item:
            return None
        try:
            rows = json.loads(item.get("channels") or "[]")
        except ValueError:
            rows = []
        channels = tuple(StoredChannel(str(r["id"]), r.get("name"), bool(r.get("token")),
                                       str(r.get("status") or item.get("status") or ACTIVE))
                         for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str))
        return ChannelIndex(connection_id, int(item["generation"]), int(item.get("listed_at") or 0),
                            str(item.get("status") or ACTIVE), channels)

    def save(self, connection: Connection, listing: Listing, *, now: int) -> ChannelIndex:
        connection_id = connection.connection_id
        before = self.index(connection_id)
        generation = (before.generation if before else 0) + 1
        # The ids about to get a token item are named first (`writing`), so a crash between the token writes and
        # the index's leaves no token item that disconnect or erasure cannot find (they delete `writing`'s too).
        crashed = set(self._writing(connection_id))  # a previous listing's, unfinished
        writing = [c.channel_id for c in listing.channels if c.token is not None]
        if writing:
            self.items.update(channels_key(connection_id), set={
                "kind": "channels", "connection_ref": connection_id,
                "writing": json.dumps(sorted(set(writing) | crashed),
                                      separators=(",", ":"))}, expect={})
        # Tokens next: once the index names this generation, every token it points to is of it.
        for channel in listing.channels:
            if channel.token is not None:
                sealed = self._cipher.seal({"access_token": channel.token},
                                           channel_binding(connection, channel.channel_id, generation))
                self.items.update(channel_key(connection_id, channel.channel_id),
                                  set={"kind": "channel", "connection_ref": connection_id, "tokens": sealed,
                                       "generation": generation}, expect={})
        kept = {c.channel_id for c in listing.channels if c.token is not None}
        was = {c.channel_id for c in (before.channels if before else ()) if c.own_token} | crashed
        gone = sorted(was - kept)  # token items this listing drops: still named (`writing`) until deleted
        rows = [{"id": c.channel_id, "name": c.name, "token": c.token is not None, "status": ACTIVE}
                for c in listing.channels]
        landed = self.items.update(channels_key(connection_id), set={
            "kind": "channels", "connection_ref": connection_id, "generation": generation, "listed_at": now,
            "status": ACTIVE, "channels": _rows(rows),
            "refused": listing.refused or None, "truncated": True if listing.truncated else None,
            "writing": json.dumps(gone, separators=(",", ":")) if gone else None, "refused_at": None,
        }, expect={"generation": before.generation if before else MISSING})
        if not landed:
            # Another listing stored its index since this one read it (a refresh's and a first read's at once):
            # its index stands, and would not name a token item only this one wrote, so those go now.
            self._drop_unnamed(connection_id, writing)
            raise ListingSuperseded(connection_id)
        for channel_id in gone:
            self.items.delete(channel_key(connection_id, channel_id), expect={})
        if gone:
            self.items.update(channels_key(connection_id), set={}, remove=["writing"],
                              expect={"generation": generation})
        return ChannelIndex(connection_id, generation, now, ACTIVE, tuple(
            StoredChannel(c.channel_id, c.name, c.token is not None, ACTIVE) for c in listing.channels))

    def open_token(self, connection: Connection, index: ChannelIndex, channel_id: str) -> str | None:
        channel = index.find(channel_id)
        if channel is None or not channel.own_token:
            return None
        item = self.items.get(channel_key(connection.connection_id, channel_id))
        sealed = (item or {}).get("tokens")
        if not sealed:
            return None
        opened = self._cipher.open(bytes(sealed), channel_binding(connection, channel_id, index.generation))
        token = opened.get("access_token")
        return token if isinstance(token, str) else None

    def mark(self, connection_id: str, status: str) -> tuple[str, ...]:
        index = self.index(connection_id)
        if index is None:
            return ()
        if index.status != status or any(c.status != status for c in index.channels):
            rows = [{"id": c.channel_id, "name": c.name, "token": c.own_token, "status": status}
                    for c in index.channels]
            # Guarded on the generation read: a listing landing meanwhile is newer than this mark, and stands.
            self.items.update(channels_key(connection_id), set={
                "status": status, "channels": _rows(rows)},
                expect={"generation": index.generation})
        return index.ids

    def _drop_unnamed(self, connection_id: str, written: list[str]) -> None:
        """Delete the token items of `written` that neither the stored index nor its `writing` list names."""
        named = self._token_ids(self.index(connection_id), connection_id)
        for channel_id in set(written) - named:
            self.items.delete(channel_key(connection_id, channel_id), expect={})

    def note_refused(self, connection_id: str, now: int) -> None:
        self.items.update(channels_key(connection_id), set={
            "kind": "channels", "connection_ref": connection_id, "refused_at": now}, expect={})

    def refused_at(self, connection_id: str) -> int | None:
        item = self.items.get(channels_key(connection_id)) or {}
        value = item.get("refused_at")
        return int(value) if value is not None and "generation" not in item else None

    def _writing(self, connection_id: str) -> list[str]:
        """The channel ids a listing began writing token items for and did not finish (crashed): [] if none."""
        item = self.items.get(channels_key(connection_id)) or {}
        try:
            ids = json.loads(item.get("writing") or "[]")
        except ValueError:
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def _token_ids(self, index: ChannelIndex | None, connection_id: str) -> set[str]:
        """Every channel id that may have a token item: the index's and those of a listing that crashed."""
        return {c.channel_id for c in (index.channels if index else ())} | set(self._writing(connection_id))

    def forget_tokens(self, connection_id: str) -> None:
        index = self.index(connection_id)
        for channel_id in self._token_ids(index, connection_id):  # any of them: a crashed listing may have left one
            self.items.delete(channel_key(connection_id, channel_id), expect={})
        if index and any(c.own_token for c in index.channels):
            rows = [{"id": c.channel_id, "name": c.name, "token": False, "status": c.status} for c in index.channels]
            self.items.update(channels_key(connection_id), set={"channels": _rows(rows)},
                              expect={"generation": index.generation})

    def delete(self, connection_id: str) -> None:
        index = self.index(connection_id)
        for channel_id in self._token_ids(index, connection_id):
            self.items.delete(channel_key(connection_id, channel_id), expect={})
        self.items.delete(channels_key(connection_id), expect={})
