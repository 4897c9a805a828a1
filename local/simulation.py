"""A whole refresh world in memory: simulated TikTok, in-memory table and KMS, a queue, a movable clock.

The same refresher, sweep and worker code as in Lambda, behind the same store interface, so days of
simulated time over thousands of connections run in seconds (fault tests, benchmarks).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oauth_keeper import events as connection_events
from oauth_keeper.clock import ManualClock
from oauth_keeper.connections import Connection, Grant
from oauth_keeper.items import MemoryItemStore
from oauth_keeper.oauth import ClientCredentials, authorize_url, new_code_verifier, new_secret
from oauth_keeper.runtime import Services
from oauth_keeper.schedule import plan_next_refresh
from oauth_keeper.settings import Settings
from oauth_keeper.sweep import sweep
from oauth_keeper.worker import process_records

from local.fake_tiktok import FakeTikTok
from local.sim_transport import DirectClient, in_process_client

REDIRECT_URI = "https://keeper.example.com/callback/tiktok"


class MemoryPublisher:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.down = False

    def publish(self, pending: list[dict[str, Any]]) -> list[str]:
        if self.down:
            return []
        self.events.extend(pending)
        return [e["event_id"] for e in pending]

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["detail_type"] == detail_type]


class ListQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, connection_ids: list[str]) -> int:
        self.messages.extend(connection_ids)
        return len(connection_ids)

    def drain(self) -> list[dict[str, Any]]:
        records = [{"messageId": f"m{i}", "body": json.dumps({"connection_id": cid})}
                   for i, cid in enumerate(self.messages)]
        self.messages = []
        return records


class FakeKms:
    """KMS's data-key calls, in memory (the key material never leaves the process)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._master = AESGCM(AESGCM.generate_key(bit_length=256))
        self.calls = 0

    def generate_data_key(self, KeyId: str, KeySpec: str) -> dict[str, bytes]:  # noqa: N803 - boto3's names
        self.calls += 1
        key, nonce = os.urandom(32), os.urandom(12)
        return {"Plaintext": key, "CiphertextBlob": nonce + self._master.encrypt(nonce, key, None)}

    def decrypt(self, CiphertextBlob: bytes, KeyId: str) -> dict[str, bytes]:  # noqa: N803
        self.calls += 1
        return {"Plaintext": self._master.decrypt(CiphertextBlob[:12], CiphertextBlob[12:], None)}


@dataclass
class World:
    clock: ManualClock
    tiktok: FakeTikTok
    services: Services
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
                            event_bus_name="memory", provider_overrides={"tiktok": {
                                "refresh_policy": policy, "token_url": "http://tiktok.sim/v2/oauth/token/",
                                "authorize_url": "http://tiktok.sim/v2/auth/authorize/",
                                "userinfo_url": "http://tiktok.sim/v2/user/info/"}})
        world = cls(clock=clock, tiktok=tiktok, services=None, publisher=publisher)  # type: ignore[arg-type]
        world.ssm = {"client_key": tiktok.client_key, "client_secret": tiktok.client_secret}
        world.services = Services(
            settings=settings, clock=clock, items=MemoryItemStore(),
            http=DirectClient(tiktok) if direct_http else in_process_client(tiktok),
            kms=FakeKms(), publisher_override=publisher,
            credentials_override=lambda profile: ClientCredentials(world.ssm["client_key"],
                                                                   world.ssm["client_secret"]),
        )
        return world

    @property
    def store(self):
        return self.services.connections

    def connect(self, handle: str, owner_id: str = "owner") -> Connection:
        """A real consent and code exchange at the simulated TikTok, saved as the callback saves it."""
        if handle not in self.tiktok.users:
            self.tiktok.add_user(handle)
        svc = self.services
        profile = svc.profile("tiktok")
        verifier = new_code_verifier()
        url = authorize_url(profile, client_id=self.tiktok.client_key, redirect_uri=REDIRECT_URI,
                            state=new_secret(), scopes=("user.info.basic",), code_verifier=verifier)
        code = parse_qs(urlsplit(self.tiktok.approve(url, user=handle)).query)["code"][0]
        tokens = svc.token_endpoint.exchange_code(profile, svc.credentials(profile), code=code,
                                                  redirect_uri=REDIRECT_URI, code_verifier=verifier)
        grant = Grant(owner_id=owner_id, provider="tiktok", account_id=tokens.account_id, tokens=tokens,
                      scopes_requested=("user.info.basic",), scopes_granted=tokens.scopes)
        now = svc.now()
        saved = self.store.save_grant(
            grant, now,
            lambda c, created, prev: connection_events.connection_event(
                connection_events.CREATED, c, reason="connected", occurred_at=now),
            lambda provider, t, _now: plan_next_refresh(profile.refresh_policy, issued_at=t.issued_at,
                                                        access_expires_at=t.access_expires_at,
                                                        refresh_expires_at=t.refresh_expires_at),
        )
        svc.refresher.flush_events(saved.connection)
        return saved.connection

    def tick(self, seconds: int | None = None, concurrency: int = 8) -> dict[str, Any]:
        """One schedule tick: sweep, then one worker pass over everything queued; then move the clock."""
        report = sweep(self.services, self.queue)
        records = self.queue.drain()
        result = process_records(records, self.services.refresher, concurrency) if records else {
            "batchItemFailures": []}
        self.clock.advance(seconds if seconds is not None else self.services.settings.sweep_interval)
        return {"sweep": report, "failures": result["batchItemFailures"], "processed": len(records)}

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.store.items.items():  # type: ignore[attr-defined]
            if "owner_id" in item:
                counts[item["status"]] = counts.get(item["status"], 0) + 1
        return counts

    def connections(self) -> list[Connection]:
        return [Connection.from_item(i) for i in self.store.items.items() if "owner_id" in i]  # type: ignore

