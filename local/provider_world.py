"""One provider, simulated from its profile (local/sim_provider.py), behind the real use cases in memory.

Connects go through the real connect-session, authorization and callback use cases (so the connect chain and the
account id's source are exercised); refreshes through the real sweep, worker and refresher; the clock is moved by
hand, straight to each next due time, so a year of keep-alive runs in well under a second per connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from oauth_keeper.adapters.connections import connection_from_item
from oauth_keeper.domain.connection import Connection
from oauth_keeper.domain.providers import ProviderProfile, profile_from_data
from oauth_keeper.ports import ItemStore
from oauth_keeper.root import Container
from oauth_keeper.settings import Settings
from oauth_keeper.usecases.worker import process_records

from local.memory import (
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
from local.sim_provider import Quirks, SimulatedProvider

BASE_URL = "https://keeper.example.com"
RETURN_TO = "https://app.example.com/done"


def simulated_urls(name: str, profile: ProviderProfile, host: str | None = None) -> dict[str, str]:
    """`<NAME>_<KEY>` overrides pointing every endpoint of the profile under `host` (default http://<name>.sim;
    `make dev` gives its loopback server's http://127.0.0.1:<port>/<name>), by key (`authorize_url`, `token_url`,
    `revoke_url`, `userinfo_url`, `refresh_url`, `chain_url`, `channels_url`)."""
    host = host or f"http://{name}.sim"
    urls = {"authorize_url": f"{host}/authorize", "token_url": f"{host}/token"}
    if profile.revoke_url:
        urls["revoke_url"] = f"{host}/revoke"
    if profile.userinfo_url:
        urls["userinfo_url"] = f"{host}/userinfo"
    if (profile.requests.get("refresh") or None) and profile.requests["refresh"].url:
        urls["refresh_url"] = f"{host}/refresh"
    if profile.chain:
        urls["chain_url"] = f"{host}/exchange"
    if profile.channels:
        urls["channels_url"] = f"{host}/channels"
    return urls


@dataclass
class ProviderWorld:
    name: str
    clock: ManualClock
    provider: SimulatedProvider
    services: Container
    publisher: MemoryPublisher
    queue: ListQueue = field(default_factory=ListQueue)

    @classmethod
    def create(cls, profile_data: dict[str, Any] | None = None, *, name: str | None = None,
               quirks: Quirks | None = None, overrides: dict[str, str] | None = None,
               start: float = 1_800_000_000, expiry_warning: int = 14 * 86_400,
               connect_confirmation: str = "off", items: ItemStore | None = None) -> ProviderWorld:
        """A shipped profile by `name`, or `profile_data` (a profile's JSON form, for made-up providers).
        `items`: the Connections table (default in memory; e.g. DynamoDB on moto for the adapter's round trip)."""
        import oauth_keeper.domain.providers as providers

        data = profile_data or providers._profile_file(name or "")  # noqa: SLF001 - the shipped file
        assert data is not None, f"no profile {name!r}"
        name = name or data["name"]
        base = profile_from_data({**data, "name": name})
        settings_overrides = {**simulated_urls(name, base), **(overrides or {})}
        settings = Settings(connections_table="memory", flows_table="memory", token_key_arn="memory",
                            event_bus_name="memory", refresh_queue_url="memory", providers=(name,),
                            provider_overrides={name: settings_overrides}, allow_http_endpoints=True,
                            public_base_url=BASE_URL, allowed_return_origins=frozenset({"https://app.example.com"}),
                            expiry_warning=expiry_warning, connect_confirmation=connect_confirmation)
        clock = ManualClock(start=start)
        publisher = MemoryPublisher()
        services = Container(settings, clock=clock, items=items or MemoryItemStore(), flows=MemoryFlowStore(),
                             deliveries=MemoryDeliveryLog(), kms=FakeKms(), publisher=publisher,
                             queue=ListQueue(), sleep=no_sleep, credentials=StaticCredentials({}))
        if profile_data is not None:  # a made-up provider: its profile is the data given, with the overrides
            services.profiles.profile = _fixed(  # type: ignore[method-assign]
                providers.with_overrides(base, settings_overrides))
        profile = services.profiles.profile(name)
        sim = SimulatedProvider(profile=profile, clock=clock.now, quirks=quirks or Quirks())
        services._credentials = StaticCredentials({  # noqa: SLF001
            profile.client_id_param: sim.client_id, "client_secret": sim.client_secret})
        services._http = httpx.Client(transport=sim)  # noqa: SLF001
        world = cls(name=name, clock=clock, provider=sim, services=services, publisher=publisher)
        services._queue = world.queue  # noqa: SLF001
        return world

    @property
    def profile(self) -> ProviderProfile:
        return self.services.profiles.profile(self.name)

    def connect(self, user: str, owner_id: str = "owner", *, deadline: float | None = None) -> dict[str, str]:
        """A whole connect through the real use cases: connect session, authorization, consent, callback (ending
        by `deadline`, epoch seconds on the world's clock, when given). Returns the callback's redirect parameters
        (`status`, `connection_id` or `error`)."""
        svc = self.services
        link = svc.connect_sessions.create({"owner_id": owner_id, "provider": self.name, "return_to": RETURN_TO},
                                           BASE_URL)
        session = parse_qs(urlsplit(link["connect_url"]).query)["session"][0]
        redirect = svc.authorization.start(self.name, {"session": [session]}, BASE_URL)
        state = parse_qs(urlsplit(redirect.location).query)["state"][0]
        code = self.provider.approve(user)
        result = svc.callback.complete(self.name, {"state": [state], "code": [code]},
                                       {redirect.cookie_name: redirect.cookie_value}, deadline=deadline)
        return result.params

    def get(self, connection_id: str) -> Connection:
        connection = self.services.connections.get(connection_id)
        assert connection is not None
        return connection

    def tokens(self, connection_id: str) -> dict[str, Any]:
        return self.services.connections.open_tokens(self.get(connection_id))

    def connections(self) -> list[Connection]:
        items = self.services.connections.items.items()  # type: ignore[attr-defined] - MemoryItemStore
        return [connection_from_item(i) for i in items if "owner_id" in i and "status" in i]  # not pending grants

    def tick(self) -> int:
        """One sweep and one worker pass over what it queued; returns how many were processed."""
        self.services.sweep.run()
        records = self.queue.drain()
        if records:
            process_records(records, self.services.refresher, 4, orphans=self.services.orphans,
                            disconnection=self.services.disconnection)
        return len(records)

    def next_due(self) -> int | None:
        items = self.services.connections.items.items()  # type: ignore[attr-defined] - MemoryItemStore
        planned = [int(i["next_refresh_at"]) for i in items if i.get("next_refresh_at") is not None]
        return min(planned) if planned else None

    def run_until(self, until: float) -> int:
        """Skip the clock from due time to due time (the sweep looks one interval ahead) until `until`."""
        ticks = 0
        while True:
            due = self.next_due()
            if due is None or due > until:
                self.clock.advance(max(0.0, until - self.clock.now()))
                return ticks
            interval = self.services.settings.sweep_interval
            self.clock.advance(max(0.0, due - interval - self.clock.now()))
            self.tick()
            ticks += 1
            if self.next_due() == due:  # nothing moved it (a retry at the same moment): let time pass
                self.clock.advance(interval)

    def events(self, detail_type: str) -> list[dict[str, Any]]:
        return self.publisher.of_type(detail_type)


def _fixed(profile: ProviderProfile):  # noqa: ANN202 - a bound-method stand-in
    def profile_of(name: str) -> ProviderProfile:
        return profile if name == profile.name else replace(profile, name=name)
    return profile_of
