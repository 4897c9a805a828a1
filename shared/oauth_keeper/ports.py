"""The ports: what the use cases need from the outside world, as `typing.Protocol`s. Adapters implement them.

A use case receives these in its constructor (the composition root, `root.py`, passes the AWS and HTTP
adapters; tests and `local/` pass the in-memory ones from `local/memory.py`). Nothing here touches AWS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .domain.channels import ChannelIndex, Listing
from .domain.connection import Connection, TokenBinding
from .domain.events import PendingEvent
from .domain.flows import ConnectSession, OAuthFlow
from .domain.lifecycle import GrantPlan
from .domain.provider_events import AccountRemovalRequest
from .domain.providers import ProviderProfile
from .domain.schedule import CadenceRecord, ShardSpan
from .domain.tokens import ClientCredentials, TokenSet, UserProfile


class Clock(Protocol):
    """Now, in epoch seconds. Injected everywhere so tests move time instead of sleeping."""

    def now(self) -> float: ...


class Sleep(Protocol):
    """Wait `seconds` for another worker (a sibling's lease, a revoke retry); never used to wait for an expiry."""

    def __call__(self, seconds: float) -> None: ...


# -- the item seam under the Connections table -------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # an `expect` value meaning "this attribute must not exist"


@dataclass(frozen=True)
class NotAfter:
    """An `expect` value meaning "this attribute is absent, or a number at most `value`" (a mark that is old
    enough to be written again: DynamoDB's `attribute_not_exists(a) OR a <= :v`)."""

    value: int


class _Present:
    def __repr__(self) -> str:
        return "PRESENT"


PRESENT: Any = _Present()  # an `expect` value meaning "this attribute must exist, whatever its value"


@dataclass(frozen=True)
class AtMost:
    """An `expect` value: the attribute exists and is a number <= `value` (DynamoDB's `<=`)."""

    value: int


@dataclass(frozen=True)
class OneOf:
    """An `expect` value: the attribute exists and equals one of `values` (DynamoDB's `IN`)."""

    values: tuple[Any, ...]


# index name -> (hash attribute, range attribute or None); template.yaml defines the same indexes.
INDEXES: dict[str, tuple[str, str | None]] = {
    "Due": ("due_shard", "next_refresh_at"),
    "Cadence": ("cadence_shard", "cadence_phase"),  # "<period>#<shard>", seconds into the period (ADR 0023)
    "Outbox": ("outbox_shard", None),
    "ByAccount": ("account_key", None),
    "ByOwner": ("owner_id", "created_at"),
}


@dataclass(frozen=True)
class WriteResult:
    """A guarded write's outcome. Falsy when the guard failed; `current` is then the competing item as the
    failed write found it (DynamoDB's ReturnValuesOnConditionCheckFailure), or None when there was none. When
    the write landed and its caller asked for the item (`ItemStore.update(..., returning=True)`, DynamoDB's
    ReturnValues=ALL_NEW), `current` is the item as written; otherwise None."""

    ok: bool
    current: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class TransactWrite:
    """One write of an all-or-nothing transaction (DynamoDB TransactWriteItems): `update` (the SETs, None
    removing, and the REMOVEs of `ItemStore.update`), `delete`, or `check` (writes nothing), each only if every
    `expect` attribute has that value (MISSING: absent). One write per key."""

    key: str
    action: Literal["update", "delete", "check"] = "update"
    set: dict[str, Any] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)


class ItemStore(Protocol):
    """Get, guarded update, guarded delete, one-partition index queries: all the refresh logic needs of a table.

    The same logic runs on DynamoDB (`adapters/dynamodb.py`) and on an in-memory table (`local/memory.py`)."""

    key_name: str

    def get(self, key: str, attributes: Sequence[str] = ()) -> dict[str, Any] | None:
        """The item read strongly consistent (only `attributes`, when given: a projection); None when absent."""
        ...

    def update(self, key: str, *, set: dict[str, Any], remove: Iterable[str] = (),
               expect: dict[str, Any], add: dict[str, int] | None = None, returning: bool = False) -> WriteResult:
        """Apply SETs (None removes), REMOVEs and ADDs (a number added to the attribute, 0 when absent) only if
        every `expect` attribute has that value (MISSING: absent; PRESENT: any value; NotAfter(v): absent or
        <= v; `AtMost`, `OneOf`).
        Nothing is written when the expectation fails. `returning`: a landed write gives the item as written in
        `WriteResult.current` (in the same request: no read)."""
        ...

    def delete(self, key: str, *, expect: dict[str, Any]) -> bool: ...

    def transact(self, writes: Sequence[TransactWrite]) -> bool:
        """Apply every write or none: False (nothing written) when any expectation fails."""
        ...

    def query(self, index: str, hash_value: Any, *, range_max: Any = None, range_min: Any = None,
              limit: int | None = None, start: dict[str, Any] | None = None,
              ) -> tuple[list[str], dict[str, Any] | None]:
        """Keys in one index partition (range_min <= range <= range_max, each bound when given), one page; the
        cursor of the next page or None."""
        ...


# -- repositories ------------------------------------------------------------------------------------------------
class ConnectionRepository(Protocol):
    """Connections, one item each, tokens sealed; every decision write guarded on the revision it read."""

    def new_id(self, owner_id: str, provider: str, account_id: str) -> str: ...

    @property
    def shards(self) -> int: ...

    def get(self, connection_id: str) -> Connection | None: ...

    def find(self, owner_id: str, provider: str, account_id: str) -> Connection | None:
        """The one connection of (owner, provider, account), through its guard item; None when there is none.
        A connection written before guards existed (its derived id) gets its guard here."""
        ...

    def open_tokens(self, connection: Connection) -> dict[str, Any]:
        """The stored tokens in clear ({} when none). Raises TokenDecryptionError when they fail authentication."""
        ...

    def open_tokens_of(self, binding: TokenBinding, sealed: bytes) -> dict[str, Any]:
        """Open tokens another item holds (a pending grant's), checked against `binding` as read from it.
        Raises TokenDecryptionError."""
        ...

    def seal_tokens_of(self, binding: TokenBinding, tokens: dict[str, Any]) -> bytes:
        """`tokens` sealed for an item that is not a connection (a pending grant), bound to `binding`."""
        ...

    def claimed_from(self, connection_id: str) -> str | None:
        """The pending grant key the connection's latest grant was claimed from, if any."""
        ...

    def prepare_seal(self, for_seconds: float) -> None:
        """Sealing tokens within the next `for_seconds` will need no call to the key service."""
        ...

    def seal_tokens(self, connection: Connection, tokens: dict[str, Any], *, token_version: int) -> bytes:
        """`tokens` sealed for `connection` (id, provider, owner, account) at `token_version`: the version the
        write that stores the blob gives the item, so the blob opens only beside that version."""
        ...

    def schedule_attributes(self, connection_id: str, next_refresh_at: int | None, *, period: int | None = None,
                            current: Connection | None = None) -> dict[str, Any]:
        """The attributes planning the next refresh (epoch seconds; None: never): the Due index, or with `period`
        (seconds) the Cadence family of that period, writing no index key when `current` is already there."""
        ...

    def write_grant(self, plan: GrantPlan, *, claimed_from: str | None = None,
                    together_with: Sequence[TransactWrite] = ()) -> Connection | None:
        """Store a prepared grant (new connection or reconnect) with its event in the outbox, guarded on the
        revision the plan was made from; a new connection together with its guard item, in one transaction.
        None when someone wrote in between (or another connection holds the guard): plan again. `claimed_from`:
        the pending grant's key, stored with it. `together_with`: other items' writes in the same transaction
        (all land or none: None when one of their expectations fails)."""
        ...

    def apply(self, connection: Connection, changes: dict[str, Any], *, remove: Iterable[str] = (),
              events: Iterable[PendingEvent] = ()) -> Connection | None:
        """One decision write guarded on `connection.revision`; the connection as written, or None."""
        ...

    def claim(self, connection: Connection, changes: dict[str, Any], *, remove: Iterable[str] = (),
              events: Iterable[PendingEvent] = ()) -> tuple[Connection | None, Connection | None]:
        """Like `apply`, for a lease: (written, None) or (None, the competing connection as the write found it)."""
        ...

    def record_read(self, connection: Connection, now: int, *, window: int,
                    next_refresh_at: int | None = None) -> bool:
        """Record a token read at `now` as `last_read_at` when the stored one is absent or at least `window`
        seconds old (one conditional write, at most one per window); with `next_refresh_at`, plan the next refresh
        in the same write, guarded on `connection.revision` and `connection.next_refresh_at`. The revision is not
        bumped. False when not written."""
    def take_lease(self, connection_id: str, *, owner: str, expires_at: int, statuses: Sequence[str],
                   due_by: int | None) -> tuple[Connection | None, Connection | None]:
        """The lease in one conditional write that returns the item (no read before it): (leased, None) when
        the connection is in one of `statuses`, holds no lease (live or expired), has no event waiting and, unless
        `due_by` is None, is due by then; else (None, the connection as the failed write found it, or None)."""
        ...

    def erase(self, connection_id: str) -> bool:
        """Delete a disconnected connection whose events are all out, with its guard item (one transaction).
        False when it is not (yet) to be deleted."""
        ...

    def set_profile(self, connection_id: str, display_name: str | None, avatar_url: str | None) -> None: ...

    def mark_profile_pending(self, connection_id: str) -> None: ...

    def clear_outbox(self, connection: Connection, sent: list[str]) -> None: ...

    def due(self, shard: int, horizon: int, page_size: int = 500) -> Iterator[str]: ...

    def provider_of(self, connection_id: str) -> str | None:
        """The provider a connection belongs to, reading nothing else of it; None when unknown."""
        ...

    def scheduled_between(self, shard: int, low: int, high: int, *, limit: int | None = None) -> Iterator[str]:
        """Ids in one shard of the due index planned within [low, high] (epoch seconds), earliest first;
        at most `limit` of them when given."""
        ...

    def scheduled_after(self, shard: int, moment: int) -> Iterator[str]:
        """Ids in one shard of the due index planned at or after `moment` (implausibly far: stored by an older
        version from an absurd provider answer)."""
        ...

    def with_pending_events(self, shard: int) -> Iterator[str]: ...

    def shard_in_use(self, shard: int, periods: Sequence[int] = ()) -> bool:
        """Whether any item, due or not, is in `shard` of the Due or Outbox index, or of the Cadence families of
        `periods` (seconds)."""
        ...

    def shard_span(self) -> ShardSpan | None:
        """The sweep's record of which shards may hold items; None when no sweep has written it yet."""
        ...

    def sweep_record(self) -> tuple[ShardSpan | None, CadenceRecord]:
        """In one read: `shard_span`, and the Cadence families' periods and how far the sweep covered them."""
        ...

    def on_cadence(self, period: int, shard: int, low: int, high: int) -> Iterator[str]:
        """Ids in one Cadence family (`period` seconds, `shard`) whose phase lies within [low, high] (seconds
        into the period), every page."""
        ...

    def save_swept(self, horizon: int) -> bool:
        """Record that every Cadence moment up to `horizon` (epoch seconds) was swept; never moves it back. False
        when a later horizon is already recorded."""
        ...

    def save_shard_span(self, span: ShardSpan, *, replacing: ShardSpan | None) -> bool:
        """Store `span` only if the record is still `replacing` (None: absent); False otherwise."""
        ...

    def owned_by(self, owner_id: str, *, limit: int, start: dict[str, Any] | None = None,
                 ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of an owner's connection ids (the ByOwner index) and the cursor of the next, or None."""
        ...

    def of_account(self, provider: str, account_id: str) -> Iterator[str]:
        """Every connection id of one provider account, any owner (the ByAccount index)."""
        ...

    def of_account_page(self, provider: str, account_id: str, *, limit: int, start: dict[str, Any] | None = None,
                        ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of `of_account` and the cursor of the next, or None."""
        ...


class ChannelStore(Protocol):
    """A connection's channels (ADR 0024): one index item (`channels#<connection id>`: ids, names, statuses) and
    one item per channel token (`channel#<connection id>#<digest>`), sealed like connection tokens and bound to
    connection, channel and listing generation. None of them is in the Due, Outbox, ByOwner or ByAccount index."""

    def index(self, connection_id: str) -> ChannelIndex | None:
        """The channels as last listed, read strongly consistent; None when never listed (or deleted)."""
        ...

    def save(self, connection: Connection, listing: Listing, *, now: int) -> ChannelIndex:
        """Store a new listing: the channel tokens first, then the index (the next generation, only if the index
        is still the one read), then the token items of channels it no longer holds are deleted. Raises
        RuntimeError when another listing stored its index meanwhile (that one stands; the token items only this
        one wrote are deleted)."""
        ...

    def open_token(self, connection: Connection, index: ChannelIndex, channel_id: str) -> str | None:
        """The channel's own token in clear; None when it has none. Raises TokenDecryptionError when the stored
        blob fails authentication (moved, swapped, from another listing)."""
        ...

    def mark(self, connection_id: str, status: str) -> tuple[str, ...]:
        """Every channel of the connection marked `status` (one write); the ids marked, () when none."""
        ...

    def forget_tokens(self, connection_id: str) -> None:
        """Delete every channel token item of the connection (its index stays, ids and names only)."""
        ...

    def delete(self, connection_id: str) -> None:
        """Delete every channel item of the connection, index included. Repeats change nothing."""
        ...

    def note_refused(self, connection_id: str, now: int) -> None:
        """Remember (epoch seconds) that the provider refused a listing of a connection never listed, so reads do
        not ask it again at once; the index stays absent (`index` is None)."""
        ...

    def refused_at(self, connection_id: str) -> int | None:
        """When a listing was last refused, if no listing has been stored since; else None."""
        ...


class FlowStore(Protocol):
    """Connect sessions and OAuth flows, stored under a hash of their secret, each consumed once; and the
    tombstones of erased owners, by owner key (a keyed hash of the owner id, `OwnerKeys`)."""

    def put_session(self, token: str, session: ConnectSession) -> None: ...

    def take_session(self, token: str, provider: str, now: float) -> ConnectSession | None: ...

    def put_flow(self, state: str, flow: OAuthFlow) -> None: ...

    def take_flow(self, state: str, provider: str, nonce: str, now: float) -> OAuthFlow:
        """Consume the flow if the nonce, provider and expiry match. Raises FlowRejection with the reason."""
        ...

    def erased_at(self, owner_key: str) -> int | None:
        """When the owner was last erased (epoch seconds), read strongly consistent; None when no tombstone."""
        ...

    def record_erasure(self, owner_key: str, erased_at: int, until: int) -> None:
        """Write the owner's tombstone (kept until `until`, epoch seconds); an earlier time never replaces a
        later one."""
        ...

    def delete_owned(self, owner_key: str, *, issued_until: int, limit: int,
                     start: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
        """Delete one page (up to `limit`) of the owner's connect sessions and OAuth flows issued at or before
        `issued_until` (epoch seconds; later ones are a connect begun after the erasure, left alone). Returns
        how many were deleted and the cursor of the next page, or None."""
        ...


class OwnerKeys(Protocol):
    def owner_key(self, owner_id: str) -> str:
        """The keyed hash naming `owner_id` where the id itself must not be kept (64 hex digits, deterministic)."""
        ...


class DeliveryLog(Protocol):
    """Provider webhook deliveries already handled, by the key of their raw body (`provider_events.delivery_key`),
    each remembered until a time (then forgotten, as if never seen)."""

    def seen(self, key: str, now: float) -> bool:
        """Whether a delivery with this key was handled and is still remembered at `now` (epoch seconds)."""
        ...

    def remember(self, key: str, provider: str, now: float, until: int) -> None:
        """Record a handled delivery (received at `now`) until `until` (epoch seconds). Recording it again
        changes nothing that matters."""
        ...


# -- the provider ------------------------------------------------------------------------------------------------
class ProviderProfiles(Protocol):
    def profile(self, provider: str) -> ProviderProfile:
        """The enabled provider's profile. Raises NotFound for any other name, ConfigurationError when its
        discovery document is unusable."""
        ...


class Credentials(Protocol):
    def credentials(self, profile: ProviderProfile, *, with_id: bool = True, with_secret: bool = True,
                    fresh: bool = False) -> ClientCredentials:
        """The provider's client credentials; `fresh` skips any cache. Raises ConfigurationError."""
        ...


class ProviderClient(Protocol):
    """The provider's token, revoke and user-info endpoints. Every failure is a classified ProviderError.

    `deadline` (epoch seconds, per the Clock) is when the call must be over, body included; None: the
    adapter's own limit. A call that could not end in time is not started (`no_time`)."""

    def exchange_code(self, profile: ProviderProfile, creds: ClientCredentials, *, code: str, redirect_uri: str,
                      code_verifier: str | None, deadline: float | None = None) -> TokenSet: ...

    def exchange_link(self, profile: ProviderProfile, creds: ClientCredentials, index: int, access_token: str, *,
                      deadline: float | None = None) -> TokenSet: ...

    def refresh(self, profile: ProviderProfile, creds: ClientCredentials, refresh_token: str, *,
                deadline: float | None = None) -> TokenSet: ...

    def revoke(self, profile: ProviderProfile, creds: ClientCredentials, access_token: str, *,
               deadline: float | None = None) -> str | None: ...

    def fetch_user(self, profile: ProviderProfile, access_token: str, *,
                   deadline: float | None = None) -> UserProfile: ...

    def list_channels(self, profile: ProviderProfile, access_token: str, *,
                      deadline: float | None = None) -> Listing: ...


# -- outbound messages ---------------------------------------------------------------------------------------------
class EventPublisher(Protocol):
    def publish(self, pending: list[PendingEvent]) -> list[str]:
        """Send events; return the ids accepted. The rest stay in the outbox for a later pass."""
        ...


class RefreshQueue(Protocol):
    def send(self, connection_ids: list[str], *, force: bool = False, due_by: int | None = None) -> int:
        """Queue ids for the refresh workers (`force`: refresh whatever the schedule says; `due_by`, epoch
        seconds: the sending sweep's horizon, what is due by then is due); return how many were accepted."""
        ...


class RemovalQueue(Protocol):
    def send_removal(self, removal: AccountRemovalRequest) -> None:
        """Queue a verified provider removal for the refresh worker to apply (`usecases/worker.py`), on the queue
        only the webhook may send to. Raises when the queue did not take it (the webhook then answers 5xx and the
        provider retries)."""
        ...


class KeyService(Protocol):
    """The KMS calls envelope encryption and owner keys need, under boto3's names (a KMS client, or
    `local.memory.FakeKms`)."""

    def generate_data_key(self, *, KeyId: str, KeySpec: str,  # noqa: N803
                          EncryptionContext: dict[str, str]) -> dict[str, Any]: ...  # noqa: N803

    def decrypt(self, *, CiphertextBlob: bytes, KeyId: str,  # noqa: N803
                EncryptionContext: dict[str, str] = ...) -> dict[str, Any]: ...  # noqa: N803

    def generate_mac(self, *, KeyId: str, Message: bytes, MacAlgorithm: str) -> dict[str, Any]: ...  # noqa: N803


class HttpClient(Protocol):
    """What the provider client needs of an HTTP client: an `httpx.Client`, or a simulation's stand-in. `stream`
    is a context manager giving a response with `status_code`, `headers` and `iter_bytes()`."""

    def stream(self, method: str, url: str, **request: Any) -> Any: ...


class TokenCipher(Protocol):
    """Seals a connection's tokens into one authenticated blob bound to its item (`TokenBinding`: connection,
    provider, owner, account, token version)."""

    def prepare(self, for_seconds: float) -> None: ...

    def seal(self, tokens: dict[str, Any], binding: TokenBinding) -> bytes: ...

    def open(self, blob: bytes, binding: TokenBinding) -> dict[str, Any]:
        """Raises TokenDecryptionError when the blob is malformed, tampered with, moved, or no longer matches
        its item (an older token version, another owner or account)."""
        ...


class SecretCipher(Protocol):
    """Seals one short secret (a flow's PKCE verifier) into an authenticated blob bound to where it is stored."""

    def seal_secret(self, value: str, *, bound_to: str) -> bytes: ...

    def open_secret(self, blob: bytes, *, bound_to: str) -> str:
        """Raises TokenDecryptionError when the blob is malformed, tampered with or bound to something else."""
        ...
