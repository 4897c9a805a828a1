"""The composition root: builds every use case from `Settings` once per warm container, wiring ports to adapters.

Handlers ask `container()` for a use case, call one method and shape the answer. Every part is created on
first use (boto3 and httpx cost cold-start time only on the paths that talk to AWS or a provider). Tests and
`local/` build a `Container` with in-memory stand-ins and `install` it; unit tests skip the container and build
use cases directly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from .adapters import aws
from .adapters.channels import ChannelItems
from .adapters.clock import SystemClock
from .adapters.connections import ConnectionStore
from .adapters.kms import DataKeys, EnvelopeCipher
from .adapters.owner_keys import KmsOwnerKeys
from .adapters.profiles import Profiles
from .domain.connection import Connection
from .domain.deadlines import HANDLER_MARGIN
from .domain.provider_events import AccountRemovalRequest
from .ports import (
    Clock,
    Credentials,
    DeliveryLog,
    EventPublisher,
    FlowStore,
    HttpClient,
    ItemStore,
    KeyService,
    ProviderClient,
    RefreshQueue,
    RemovalQueue,
    Sleep,
)
from .settings import Settings
from .usecases.breaker import CircuitBreakers
from .usecases.channels import Channels
from .usecases.claims import PendingGrants
from .usecases.connect import Authorization, Callback, ConnectSessions
from .usecases.connections import ConnectionQueries
from .usecases.deauthorization import DeauthorizationCallbacks
from .usecases.disconnect import Disconnection
from .usecases.erasure import Erasures
from .usecases.orphans import OrphanGrants
from .usecases.outbox import OutboxRelay
from .usecases.refresh import Refresher
from .usecases.sweep import Sweep
from .usecases.tokens import TokenAccess
from .usecases.webhooks import WebhookReceiver
from .usecases.worker import RefreshWorker


class Container:
    """One warm container's parts. Any keyword left None is the real AWS or HTTP adapter, built lazily."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, http: HttpClient | None = None,
                 items: ItemStore | None = None, flows: FlowStore | None = None, kms: KeyService | None = None,
                 publisher: EventPublisher | None = None, credentials: Credentials | None = None,
                 queue: RefreshQueue | None = None, sleep: Sleep | None = None,
                 rng: random.Random | None = None, deliveries: DeliveryLog | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.sleep: Sleep = sleep or time.sleep
        self._http = http
        self._items = items
        self._flows = flows
        self._kms = kms
        self._publisher = publisher
        self._credentials = credentials
        self._queue = queue
        self._rng = rng
        self._deliveries = deliveries
        self._lock = threading.Lock()

    # -- adapters --------------------------------------------------------------------------------------------
    @property
    def http(self) -> HttpClient:
        """The pooled httpx client every provider call shares (created on first use)."""
        with self._lock:
            if self._http is None:
                from .adapters.provider_http import new_http_client

                self._http = new_http_client()
            return self._http

    @cached_property
    def items(self) -> ItemStore:
        if self._items is not None:
            return self._items
        from .adapters.dynamodb import DynamoItemStore

        return DynamoItemStore(aws.lazy_client("dynamodb"), self.settings.connections_table)

    @cached_property
    def flows(self) -> FlowStore:
        if self._flows is not None:
            return self._flows
        from .adapters.flows import DynamoFlowStore

        return DynamoFlowStore(aws.lazy_client("dynamodb"), self.settings.flows_table, self.cipher)

    @cached_property
    def deliveries(self) -> DeliveryLog:
        if self._deliveries is not None:
            return self._deliveries
        from .adapters.deliveries import DynamoDeliveryLog

        return DynamoDeliveryLog(aws.lazy_client("dynamodb"), self.settings.flows_table)

    @cached_property
    def data_keys(self) -> DataKeys:
        kms = self._kms
        return DataKeys((lambda: kms) if kms is not None else (lambda: aws.client("kms")),
                        self.settings.token_key_arn, self.clock.now, stack=self.settings.stack_name)

    @cached_property
    def owner_keys(self) -> KmsOwnerKeys:
        kms = self._kms
        return KmsOwnerKeys((lambda: kms) if kms is not None else (lambda: aws.client("kms")),
                            self.settings.owner_key_arn)

    @cached_property
    def erasures(self) -> Erasures:
        return Erasures(flows=self.flows, owner_keys=self.owner_keys, clock=self.clock)

    @cached_property
    def cipher(self) -> EnvelopeCipher:
        return EnvelopeCipher(self.data_keys)

    @cached_property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self.items, self.cipher, self.settings.due_shards,
                               id_scheme=self.settings.connection_ids, channels=self.channel_items)

    @cached_property
    def channel_items(self) -> ChannelItems:
        return ChannelItems(self.items, self.cipher)

    @cached_property
    def channels(self) -> Channels:
        return Channels(store=self.channel_items, connections=self.connections, profiles=self.profiles,
                        provider=self.provider, clock=self.clock)

    @cached_property
    def profiles(self) -> Profiles:
        return Profiles(self.settings.providers, self.settings.provider_overrides, lambda: self.http,
                        allow_http=self.settings.allow_http_endpoints)

    @cached_property
    def credentials(self) -> Credentials:
        if self._credentials is not None:
            return self._credentials
        from .adapters.ssm import SsmCredentials

        return SsmCredentials(self.settings.ssm_prefix, lambda: aws.client("ssm"))

    @cached_property
    def provider(self) -> ProviderClient:
        """The provider client, built on its first call: httpx's import and its pooled client are paid by the
        invocations that call a provider, not by every use case wired with one (a worker invocation whose
        messages find nothing due, a callback refused before the exchange)."""
        def build() -> ProviderClient:
            from .adapters.provider_http import HttpProviderClient

            return HttpProviderClient(self.http, self.clock.now)

        return _Deferred(build)  # type: ignore[return-value]

    @cached_property
    def publisher(self) -> EventPublisher:
        if self._publisher is not None:
            return self._publisher
        from .adapters.eventbridge import EventBridgePublisher

        return EventBridgePublisher(aws.lazy_client("events"), self.settings.event_bus_name)

    @cached_property
    def queue(self) -> RefreshQueue:
        if self._queue is not None:
            return self._queue
        from .adapters.sqs import SqsRefreshQueue

        return SqsRefreshQueue(aws.lazy_client("sqs"), self.settings.refresh_queue_url)

    @cached_property
    def removals(self) -> RemovalQueue:
        if self._queue is not None:  # an in-memory world's queue takes both (local.memory.ListQueue)
            return self._queue  # type: ignore[return-value]
        from .adapters.sqs import SqsRemovalQueue

        return SqsRemovalQueue(aws.lazy_client("sqs"), self.settings.removal_queue_url)

    # -- use cases -------------------------------------------------------------------------------------------
    @cached_property
    def outbox(self) -> OutboxRelay:
        return OutboxRelay(self.connections, self.publisher, channels=self.channels)

    @cached_property
    def breakers(self) -> CircuitBreakers:
        return CircuitBreakers(self.items, self.clock.now)

    @cached_property
    def refresher(self) -> Refresher:
        return Refresher(connections=self.connections, breakers=self.breakers, profiles=self.profiles,
                         credentials=self.credentials, provider=self.provider, outbox=self.outbox,
                         clock=self.clock, sweep_interval=self.settings.sweep_interval,
                         expiry_warning=self.settings.expiry_warning, rng=self._rng,
                         read_window=self.settings.adaptive_read_window,
                         cadence=self.settings.schedule_index == "cadence",
                         pending_until=self.pending.pending_until
                         if self.settings.connect_confirmation == "required" else None,
                         after_renewal=self.channels.after_renewal)

    @cached_property
    def orphans(self) -> OrphanGrants:
        return OrphanGrants(items=self.items, cipher=self.cipher, profiles=self.profiles, credentials=self.credentials,
                            provider=self.provider, clock=self.clock, due_shards=self.settings.due_shards,
                            connections=self.connections)

    @cached_property
    def refresh_worker(self) -> RefreshWorker:
        return RefreshWorker(self.refresher, self.settings.refresh_concurrency, orphans=self.orphans,
                             disconnection=self.disconnection, pending=self.pending,
                             removal_source=self.settings.removal_queue_arn)

    @cached_property
    def sweep(self) -> Sweep:
        return Sweep(self.connections, self.queue, self.clock, self.settings.sweep_interval,
                     breakers=self.breakers, providers=self.settings.providers)

    @cached_property
    def connect_sessions(self) -> ConnectSessions:
        return ConnectSessions(flows=self.flows, profiles=self.profiles, connections=self.connections,
                               clock=self.clock, allowed_return_origins=self.settings.allowed_return_origins,
                               erasures=self.erasures)

    @cached_property
    def authorization(self) -> Authorization:
        return Authorization(flows=self.flows, profiles=self.profiles, credentials=self.credentials,
                             clock=self.clock, erasures=self.erasures)

    @cached_property
    def callback(self) -> Callback:
        return Callback(flows=self.flows, profiles=self.profiles, credentials=self.credentials,
                        provider=self.provider, connections=self.connections, outbox=self.outbox,
                        clock=self.clock, sleep=self.sleep, orphans=self.orphans, erasures=self.erasures,
                        pending=self.pending if self.settings.connect_confirmation == "required" else None,
                        expiry_warning=self.settings.expiry_warning, after_connect=self.channels.after_connect)

    @cached_property
    def pending(self) -> PendingGrants:
        return PendingGrants(items=self.items, connections=self.connections, outbox=self.outbox,
                             publisher=self.publisher, clock=self.clock, orphans=self.orphans,
                             erasures=self.erasures, sleep=self.sleep,
                             enrich=lambda connection, token, deadline: self._claimed(connection, token, deadline))

    def _claimed(self, connection: Connection, access_token: str, deadline: float | None) -> None:
        """Optional work after a claim stored a connection: display name and avatar, then its channels."""
        self.callback.enrich(connection, access_token, deadline)
        self.channels.after_connect(connection, access_token, deadline)

    @cached_property
    def queries(self) -> ConnectionQueries:
        return ConnectionQueries(self.connections, self.clock)

    @cached_property
    def tokens(self) -> TokenAccess:
        return TokenAccess(connections=self.connections, refresher=self.refresher, profiles=self.profiles,
                           clock=self.clock, sleep=self.sleep, read_window=self.settings.adaptive_read_window,
                           expiry_warning=self.settings.expiry_warning, channels=self.channels)

    @cached_property
    def disconnection(self) -> Disconnection:
        return Disconnection(connections=self.connections, items=self.items, profiles=self.profiles,
                             credentials=self.credentials, provider=self.provider, outbox=self.outbox,
                             clock=self.clock, queue=_LazyQueue(lambda: self.queue), rng=self._rng,
                             erasures=self.erasures, pending=self.pending)

    @cached_property
    def webhooks(self) -> WebhookReceiver:
        return WebhookReceiver(profiles=self.profiles, credentials=self.credentials,
                               queue=_LazyRemovals(lambda: self.removals), deliveries=self.deliveries,
                               clock=self.clock)

    @cached_property
    def deauthorizations(self) -> DeauthorizationCallbacks:
        return DeauthorizationCallbacks(profiles=self.profiles, credentials=self.credentials,
                                        queue=_LazyRemovals(lambda: self.removals), deliveries=self.deliveries,
                                        operations=self.items, clock=self.clock)


class _Deferred:
    """Stands for the object `make` builds, built (once, thread-safely) when an attribute is first looked up."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._built: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        built = self._built
        if built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._make()
                built = self._built
        return getattr(built, name)


class _LazyQueue:
    """The refresh queue, its SQS client built on first send (the API and the webhook rarely send)."""

    def __init__(self, make: Callable[[], RefreshQueue]) -> None:
        self._make = make

    def send(self, connection_ids: list[str], *, force: bool = False, due_by: int | None = None) -> int:
        return self._make().send(connection_ids, force=force, due_by=due_by)


class _LazyRemovals:
    """The removal queue, its SQS client built on first send (the webhook's cold start makes none)."""

    def __init__(self, make: Callable[[], RemovalQueue]) -> None:
        self._make = make

    def send_removal(self, removal: AccountRemovalRequest) -> None:
        self._make().send_removal(removal)


_current: Container | None = None
_current_lock = threading.Lock()


def container() -> Container:
    """This warm container's composition root, built from the environment on first call.

    Raises ConfigurationError when the environment misses required configuration: handlers call this at
    import, so a broken deployment fails its cold start instead of its first user."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Container(Settings.from_env())
        return _current


def deadline_of(context: Any) -> float | None:
    """When this invocation's work must be over (epoch seconds, per the container's clock): Lambda's remaining
    time less a margin for shaping the answer. None without a usable context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return container().clock.now() + remaining() / 1000 - HANDLER_MARGIN


def install(new: Container) -> Container:
    """Use `new` from now on (tests, `local/`): the handlers pick it up on their next invocation."""
    global _current
    with _current_lock:
        _current = new
    return new


def reset() -> None:
    """Forget the container and every AWS client (tests switch between moto contexts)."""
    global _current
    with _current_lock:
        _current = None
    aws.reset()
