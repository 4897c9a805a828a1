"""Channels: listing what one grant can post to, keeping it current, serving it, and marking it when the grant goes.

A Facebook grant gives tokens for several Pages; LinkedIn organizations and YouTube channels hang off one member's
grant too. The profile's `channels` section says how to list them (domain/providers.py `ChannelsFields`); nothing
here names a provider. Listing is optional work: it never fails a connect or a refresh, and an unusable answer
never replaces a usable listing (ADR 0024).
"""

from __future__ import annotations

from typing import TypedDict

from ..domain.channels import CHANNEL_ID_RULE, ChannelIndex, valid_channel_id
from ..domain.connection import DISCONNECTED, ENDED, NEEDS_REAUTH, Connection
from ..domain.deadlines import ENRICH_MIN, budget
from ..domain.errors import FailureKind, InvalidInput, NotFound, ProviderError, TokenDecryptionError
from ..domain.timestamps import iso8601
from ..domain.validation import OWNER_ID_RULE
from ..observability import MetricUnit, logger, record_metric
from ..ports import ChannelStore, Clock, ConnectionRepository, ProviderClient, ProviderProfiles
from .connections import existing

RELIST_AFTER = 86_400  # seconds: a renewal lists the channels again at most once a day
# Seconds a refused listing of a connection never listed is not asked again by a read or a renewal: a LinkedIn
# member without the organization scopes is refused every time, and each channel read would call LinkedIn.
REFUSED_RETRY_AFTER = 3_600
# Seconds a connect may spend listing: the user's browser waits for the callback's answer (a claim's caller for
# the claim's). A listing cut short is not stored; the first channel read or the next refresh lists them.
CONNECT_LIST_BUDGET = 5.0
LOST = {NEEDS_REAUTH: NEEDS_REAUTH, DISCONNECTED: DISCONNECTED}  # parent statuses that mark every channel


class ChannelView(TypedDict):
    """One channel in `GET /connections/{id}/channels`: no token, only whether it has one of its own."""

    channel_id: str
    name: str | None
    has_own_token: bool
    status: str


class ChannelList(TypedDict):
    connection_id: str
    listed_at: str | None  # ISO 8601 UTC; None: never listed (the provider lists none, or not yet)
    channels: list[ChannelView]


class Channels:
    def __init__(self, *, store: ChannelStore, connections: ConnectionRepository, profiles: ProviderProfiles,
                 provider: ProviderClient, clock: Clock) -> None:
        self._store = store
        self._connections = connections
        self._profiles = profiles
        self._provider = provider
        self._clock = clock

    def lists_channels(self, provider: str) -> bool:
        """Whether the provider's profile has a `channels` section (False for an unknown provider)."""
        try:
            return self._profiles.profile(provider).channels is not None
        except Exception:  # noqa: BLE001 - a provider disabled since: it lists nothing
            return False

    # -- listing ---------------------------------------------------------------------------------------------
    def sync(self, connection: Connection, access_token: str, deadline: float | None) -> ChannelIndex | None:
        """List the channels now with `access_token` (the connection's, just obtained) and store them; only with
        ENRICH_MIN seconds of `deadline` left. Never raises: a refused or unusable answer keeps the last listing
        (None is returned)."""
        if not self.lists_channels(connection.provider) or budget(deadline, self._clock.now()) < ENRICH_MIN:
            return None
        if connection.chain_next is not None:
            # Still on the chain's short-lived token: tokens derived from it are short-lived too (Meta: a Page token
            # from a short-lived user token lives an hour, from a long-lived one it does not expire). The chain's
            # completion lists them (after_renewal, chain_finished).
            return None
        profile = self._profiles.profile(connection.provider)
        try:
            listing = self._provider.list_channels(profile, access_token, deadline=deadline)
            if listing.refused and not listing.channels:  # an answer we cannot use is not "no channels"
                record_metric("ChannelListsRefused", MetricUnit.Count, 1)
                self._note_refused(connection.connection_id)
                logger.warning("Channel list unusable; the last listing stays",
                               extra={"connection_id": connection.connection_id})
                return None
            index = self._store.save(connection, listing, now=int(self._clock.now()))
            if not self._still_held(connection.connection_id):
                return None
        except ProviderError as exc:
            logger.warning("Channel list failed", extra={"connection_id": connection.connection_id,
                                                         "provider_error": exc.code, "kind": exc.kind,
                                                         "provider_log_id": exc.log_id})
            record_metric("ChannelListsFailed", MetricUnit.Count, 1)
            if exc.kind != FailureKind.TRANSIENT:  # refused, not down: asking again at once changes nothing
                self._note_refused(connection.connection_id)
            return None
        except Exception as exc:  # noqa: BLE001 - optional work: the connection is stored and stays as it is
            logger.warning("Channel list not stored", extra={"connection_id": connection.connection_id,
                                                             "error_type": type(exc).__name__})
            return None
        record_metric("ChannelsListed", MetricUnit.Count, len(index.channels))
        return index

    def _note_refused(self, connection_id: str) -> None:
        try:
            if self._store.index(connection_id) is None:  # a stored listing stays the answer; nothing to note
                self._store.note_refused(connection_id, int(self._clock.now()))
        except Exception as exc:  # noqa: BLE001 - optional: without the note, the next read asks again
            logger.warning("Channel refusal not noted", extra={"connection_id": connection_id,
                                                                "error_type": type(exc).__name__})

    def _refused_lately(self, connection_id: str) -> bool:
        refused_at = self._store.refused_at(connection_id)
        return refused_at is not None and self._clock.now() - refused_at < REFUSED_RETRY_AFTER

    def _still_held(self, connection_id: str) -> bool:
        """After a listing is stored: whether its connection still holds its grant. A disconnect or an erasure
        that ran while the provider answered has already forgotten the channels (ADR 0024) and would not come
        back for the items this listing wrote, so they go now: deleted with an erased connection, their tokens
        with a disconnected one; a parent that needs reauthorization meanwhile gets its channels marked so.
        A disconnect or erasure committed after this read forgets them itself (strongly consistent read)."""
        current = self._connections.get(connection_id)
        if current is None:
            self._store.delete(connection_id)
            return False
        if current.status == DISCONNECTED:
            self._store.forget_tokens(connection_id)
        if current.status in LOST:
            self._store.mark(connection_id, current.status)
            return False
        return True

    def after_renewal(self, connection: Connection, access_token: str, deadline: float | None,
                      chain_finished: bool = False) -> None:
        """After a connect or a refresh gave the parent a new access token: list again when never listed or
        listed more than RELIST_AFTER ago (a re-exchanged Facebook user token re-derives the Page tokens), so
        refreshes do not multiply the provider's list calls. `chain_finished`: this renewal was the connect
        chain's last link run in the background (ADR 0025): the grant's first long-lived token, listed anew
        whenever the last listing was. Never raises."""
        if not self.lists_channels(connection.provider):
            return
        if chain_finished:
            self.sync(connection, access_token, deadline)
            return
        try:
            index = self._store.index(connection.connection_id)
        except Exception:  # noqa: BLE001
            return
        if index is None and self._refused_lately(connection.connection_id):
            return
        if index is None or self._clock.now() - index.listed_at >= RELIST_AFTER:
            self.sync(connection, access_token, deadline)

    def after_connect(self, connection: Connection, access_token: str, deadline: float | None) -> None:
        """A connect (or reconnect) stored a new grant: its channels are listed anew, whenever they last were,
        within CONNECT_LIST_BUDGET seconds of `deadline`. Never raises."""
        if self.lists_channels(connection.provider):
            limit = self._clock.now() + CONNECT_LIST_BUDGET
            self.sync(connection, access_token, limit if deadline is None else min(deadline, limit))

    # -- the API ---------------------------------------------------------------------------------------------
    def view(self, connection_id: str, owner_id: str | None, *, deadline: float | None = None) -> ChannelList:
        """`GET /connections/{id}/channels`: the connection's channels as last listed (ids, names, whether each
        has its own token, status). A connection never listed yet is listed now with its stored access token,
        if it can give one, unless the provider refused a listing within REFUSED_RETRY_AFTER seconds. Raises
        InvalidInput (owner_id missing or malformed), NotFound (unknown, or another owner's)."""
        if not owner_id:
            raise InvalidInput("owner_id is required. " + OWNER_ID_RULE, field="owner_id")
        connection = existing(self._connections, connection_id, owner_id)
        index = self._store.index(connection.connection_id)
        if index is None and connection.status not in ENDED and self.lists_channels(connection.provider) \
                and not self._refused_lately(connection.connection_id):
            try:
                token = self._connections.open_tokens(connection).get("access_token")
            except TokenDecryptionError:
                token = None
            if token and (connection.access_expires_at or 0) > self._clock.now():
                # None: refused, or superseded by a listing landing meanwhile (which then answers)
                index = self.sync(connection, token, deadline) or self._store.index(connection.connection_id)
        return {
            "connection_id": connection.connection_id,
            "listed_at": iso8601(index.listed_at) if index else None,
            "channels": [{"channel_id": c.channel_id, "name": c.name, "has_own_token": c.own_token,
                          "status": _status(connection, c.status)} for c in (index.channels if index else ())],
        }

    def require(self, connection: Connection, channel_id: str) -> ChannelIndex:
        """The connection's channel index, checked to list `channel_id`: called before anything is refreshed for
        it (an unknown id never costs a provider call). Raises InvalidInput (malformed), NotFound
        (`channel_not_found`)."""
        if not valid_channel_id(channel_id):
            raise InvalidInput(CHANNEL_ID_RULE, field="channel_id")
        index = self._store.index(connection.connection_id)
        if index is None or index.find(channel_id) is None:
            raise NotFound("No such channel for this connection.", code="channel_not_found", field="channel_id")
        return index

    def token(self, connection: Connection, channel_id: str) -> str | None:
        """The channel's own token (None: the provider issues none, the parent's serves it). The caller has
        checked the parent can give tokens. Raises InvalidInput (a malformed channel id), NotFound
        (`channel_not_found`: not among the connection's channels), TokenDecryptionError (never served). The
        index is read again: a renewal of the parent since `require` may have listed the channels anew."""
        index = self.require(connection, channel_id)
        try:
            return self._store.open_token(connection, index, channel_id)
        except TokenDecryptionError:
            logger.error("Stored channel token failed authentication; not served",
                         extra={"connection_id": connection.connection_id})
            record_metric("TokenUnreadable", MetricUnit.Count, 1)
            raise

    # -- the parent's fate -------------------------------------------------------------------------------------
    def parent_changed(self, connection: Connection, status: str) -> tuple[str, ...]:
        """A connection event says the parent is now `status`. Lost (needs_reauth, disconnected): every channel
        is marked so, and a disconnected parent's channel tokens are deleted (while it still is disconnected: a
        reconnect since keeps its new listing). Back (active): marked active. Returns the channel ids, () for a
        provider without channels; never raises (the event matters more)."""
        if not self.lists_channels(connection.provider):
            return ()
        try:
            if status == DISCONNECTED and connection.status == DISCONNECTED:
                self._store.forget_tokens(connection.connection_id)
            if status in LOST and connection.status != status:
                index = self._store.index(connection.connection_id)  # moved on since: report, leave the marks
                return index.ids if index else ()
            return self._store.mark(connection.connection_id, status)
        except Exception as exc:  # noqa: BLE001 - the sweep republishes a left event, and this runs again
            logger.warning("Channels not marked", extra={"connection_id": connection.connection_id,
                                                         "error_type": type(exc).__name__})
            return ()

    def forget(self, connection_id: str) -> None:
        """Delete every channel item of a connection being deleted. Repeats change nothing."""
        self._store.delete(connection_id)


def _status(connection: Connection, marked: str) -> str:
    """A channel is never better off than its parent: an ended parent's status shows even before it is marked."""
    return str(connection.status) if connection.status in ENDED else marked
