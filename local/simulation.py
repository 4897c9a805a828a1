"""A whole refresh world in memory: simulated TikTok, in-memory table and KMS, a queue, a movable clock.

The same refresher, sweep and worker code as in Lambda, behind the same store interface, so days of
simulated time over thousands of connections run in seconds (fault tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oauth_keeper.adapters.connections import ConnectionStore, connection_from_item
from oauth_keeper.domain.connection import Connection, Grant
from oauth_keeper.domain.protocol import authorize_url, new_code_verifier, new_secret
from oauth_keeper.domain.schedule import DEFAULT_READ_WINDOW, effective_policy, plan_next_refresh
from oauth_keeper.root import Container
from oauth_keeper.settings import Settings
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.worker import process_records

from local.fake_tiktok import FakeTikTok
from local.memory import (
    REMOVALS_ARN,
    FakeKms,
    ListQueue,
    ManualClock,
    MemoryDeliveryLog,
    MemoryFlowStore,
    MemoryItemStore,
    MemoryPublisher,
    StaticCredentials,
    no_sleep,
)
from local.sim_transport import DirectClient, in_process_client

REDIRECT_URI = "https://keeper.example.com/callback/tiktok"


@dataclass
class World:
    clock: ManualClock
    tiktok: FakeTikTok
    services: Container
    publisher: MemoryPublisher
    queue: ListQueue = field(default_factory=ListQueue)
    ssm: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, *, policy: str = "eager", start: float = 1_800_000_000, direct_http: bool = False,
               **tiktok_options: Any) -> World:
        """`direct_http` skips httpx (see DirectClient) for month-long simulations."""
        clock = ManualClock(start=start)
        tiktok = FakeTikTok(clock=clock.now, redirect_uris=(REDIRECT_URI,), **tiktok_options)
        publisher = MemoryPublisher()
        settings = Settings(connections_table="memory", flows_table="memory", token_key_arn="memory",
                            event_bus_name="memory", refresh_queue_url="memory", removal_queue_arn=REMOVALS_ARN,
                            provider_overrides={"tiktok": {
                                "refresh_policy": policy, "token_url": "http://tiktok.sim/v2/oauth/token/",
                                "authorize_url": "http://tiktok.sim/v2/auth/authorize/",
                                "userinfo_url": "http://tiktok.sim/v2/user/info/"}}, allow_http_endpoints=True)
        world = cls(clock=clock, tiktok=tiktok, services=None, publisher=publisher)  # type: ignore[arg-type]
        world.ssm = {"client_key": tiktok.client_key, "client_secret": tiktok.client_secret}
        world.services = Container(
            settings, clock=clock, items=MemoryItemStore(), flows=MemoryFlowStore(),
            deliveries=MemoryDeliveryLog(), http=DirectClient(tiktok) if direct_http else in_process_client(tiktok),
            kms=FakeKms(), publisher=publisher, queue=world.queue, sleep=no_sleep,
            credentials=StaticCredentials(lambda: world.ssm),
        )
        return world

    def redeploy(self, **changes: Any) -> None:
        """A deploy that changes the configuration (e.g. `due_shards=8`): every function cold-starts with it,
        over the same table, flows, key, event bus, queue, clock and TikTok."""
        old = self.services
        self.services = Container(
            replace(old.settings, **changes), clock=self.clock, items=old.items, flows=old.flows, http=old.http,
            kms=old._kms, publisher=self.publisher, queue=self.queue, sleep=no_sleep,  # noqa: SLF001
            credentials=StaticCredentials(lambda: self.ssm),
        )

    @property
    def store(self) -> ConnectionStore:
        return self.services.connections

    def connect(self, handle: str, owner_id: str = "owner") -> Connection:
        """A real consent and code exchange at the simulated TikTok, saved as the callback saves it."""
        if handle not in self.tiktok.users:
            self.tiktok.add_user(handle)
        svc = self.services
        profile = svc.profiles.profile("tiktok")
        verifier = new_code_verifier()
        url = authorize_url(profile, client_id=self.tiktok.client_key, redirect_uri=REDIRECT_URI,
                            state=new_secret(), scopes=("user.info.basic",), code_verifier=verifier)
        code = parse_qs(urlsplit(self.tiktok.approve(url, user=handle)).query)["code"][0]
        tokens = svc.provider.exchange_code(profile, svc.credentials.credentials(profile), code=code,
                                            redirect_uri=REDIRECT_URI, code_verifier=verifier)
        grant = Grant(owner_id=owner_id, provider="tiktok", account_id=tokens.account_id, tokens=tokens,
                      scopes_requested=("user.info.basic",), scopes_granted=tokens.scopes)
        saved = save_grant(svc.connections, grant, missing_scopes=[], now=int(svc.clock.now()),
                           # never read yet: `adaptive` plans it as idle, as the callback does
                           next_refresh_at=plan_next_refresh(effective_policy(
                               profile.refresh_policy, last_read_at=None, now=tokens.issued_at,
                               window=DEFAULT_READ_WINDOW), issued_at=tokens.issued_at,
                               access_expires_at=tokens.access_expires_at,
                               refresh_expires_at=tokens.refresh_expires_at))
        return svc.outbox.publish(saved.connection)

    def tick(self, seconds: int | None = None, concurrency: int = 8, capacity: int | None = None) -> dict[str, Any]:
        """One schedule tick: sweep, then one worker pass over everything queued (at most `capacity` messages:
        workers that lag leave the rest queued for the next tick); then move the clock."""
        report = self.services.sweep.run()
        records = self.queue.drain(capacity)
        # As the worker function: connections, orphaned grants and disconnects alike.
        result = process_records(records, self.services.refresher, concurrency, orphans=self.services.orphans,
                                 disconnection=self.services.disconnection) if records else {
            "batchItemFailures": []}
        self.clock.advance(seconds if seconds is not None else self.services.settings.sweep_interval)
        return {"sweep": report, "failures": result["batchItemFailures"], "processed": len(records)}

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.store.items.items():  # type: ignore[attr-defined] - MemoryItemStore
            if "owner_id" in item:
                counts[item["status"]] = counts.get(item["status"], 0) + 1
        return counts

    def connections(self) -> list[Connection]:
        return [connection_from_item(i) for i in self.store.items.items() if "owner_id" in i]  # type: ignore

