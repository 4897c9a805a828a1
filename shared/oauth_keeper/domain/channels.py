"""Channels: the Pages, organizations or YouTube channels one connection's grant can post to (ADR 0024).

A provider's channel listing is read through the profile's `channels` section into `ListedChannel`s, bounded and
checked like every provider value (ADR 0014): an answer that is not a list, items without a usable id, ids with
odd characters, names too long, more items than the profile keeps are dropped or cut, never stored as given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .protocol import dig
from .providers import ChannelsFields

CHANNELS_PREFIX = "channels#"  # the one index item of a connection's channels: `channels#<connection id>`
CHANNEL_PREFIX = "channel#"  # one channel's own token: `channel#<connection id>#<digest of the channel id>`
# A channel id as the API and the items carry it: what Graph, LinkedIn and YouTube ids are made of (digits,
# letters, `_`, `-`, `.`, `:`), bounded. Anything else is refused, never escaped.
CHANNEL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CHANNEL_ID_RULE = "channel_id must be 1 to 128 of A-Z, a-z, 0-9, '_', '.', ':' and '-'."
MAX_NAME_LENGTH = 200
MAX_CHANNEL_TOKEN_LENGTH = 4096
# Control characters (C0, DEL, C1) and lone surrogates (valid in JSON's \u escapes, not encodable as UTF-8): a
# name is stored as UTF-8 and shown in dashboards, so neither survives.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class ListedChannel:
    """One channel as the provider listed it. `token`: its own derived access token (a Page token) or None."""

    channel_id: str
    name: str | None
    token: str | None


@dataclass(frozen=True)
class Listing:
    """A listing read from the provider's answers: the channels kept, how many items were refused (odd ids,
    missing or oversized tokens) and whether there were more than the profile keeps (`truncated`)."""

    channels: tuple[ListedChannel, ...]
    refused: int = 0
    truncated: bool = False


def channels_key(connection_id: str) -> str:
    """The key of a connection's channel index item."""
    return CHANNELS_PREFIX + connection_id


def channel_key(connection_id: str, channel_id: str) -> str:
    """The key of one channel's token item: the channel id hashed, so no provider value shapes a table key."""
    return f"{CHANNEL_PREFIX}{connection_id}#{hashlib.sha256(channel_id.encode()).hexdigest()[:32]}"


def valid_channel_id(value: Any) -> bool:
    return isinstance(value, str) and CHANNEL_ID.fullmatch(value) is not None


def read_page(fields: ChannelsFields, body: Any, kept: int = 0) -> Listing:
    """The channels of one answer page per `fields`, at most `fields.max_items - kept` of them.

    Never raises for the answer's shape: a body whose `items` is not a list lists nothing (callers tell that
    from an empty list by `refused`, which is then 1)."""
    items = dig(body, fields.items)
    if not isinstance(items, list):
        return Listing((), refused=1)
    channels: list[ListedChannel] = []
    seen: set[str] = set()
    refused = 0
    room = max(0, fields.max_items - kept)
    for item in items:
        if not isinstance(item, dict):
            refused += 1
            continue
        if fields.role_path is not None and str(dig(item, fields.role_path)) not in fields.roles:
            continue  # a role that cannot post (LinkedIn's ANALYST): not a channel of this grant, not an error
        raw = dig(item, fields.id)
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if fields.id_prefix is not None:
            raw = raw[len(fields.id_prefix):] if isinstance(raw, str) and raw.startswith(fields.id_prefix) else None
        if not valid_channel_id(raw) or raw in seen:
            refused += 1
            continue
        token = None
        if fields.token is not None:
            token = dig(item, fields.token)
            if not (isinstance(token, str) and 0 < len(token) <= MAX_CHANNEL_TOKEN_LENGTH and token.isprintable()):
                refused += 1  # a channel that should have its own token and came without a usable one
                continue
        if len(channels) >= room:
            return Listing(tuple(channels), refused, truncated=True)
        seen.add(raw)
        channels.append(ListedChannel(raw, _name(dig(item, fields.name) if fields.name else None), token))
    return Listing(tuple(channels), refused)


def _name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = _CONTROL.sub("", value).strip()
    return text[:MAX_NAME_LENGTH] or None


@dataclass(frozen=True)
class StoredChannel:
    """One channel as the index item keeps it: no token, only whether it has one of its own (`own_token`)."""

    channel_id: str
    name: str | None
    own_token: bool
    status: str  # the parent's status as last marked: active, needs_reauth or disconnected


@dataclass(frozen=True)
class ChannelIndex:
    """A connection's channels as last listed (`listed_at`, epoch seconds). `generation` counts the listings:
    each channel token is sealed bound to the generation that wrote it, so a blob from an older listing (or
    another channel, or another connection) never opens in its place."""

    connection_id: str
    generation: int
    listed_at: int
    status: str
    channels: tuple[StoredChannel, ...]

    def find(self, channel_id: str) -> StoredChannel | None:
        return next((c for c in self.channels if c.channel_id == channel_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.channel_id for c in self.channels)
