"""Removal webhooks that arrive late, twice, re-signed or out of order (issue 12, case 3), on in-memory adapters.

TikTok signs each delivery attempt anew (`t`) over the same body, whose `create_time` says when the user removed
the app; it delivers at least once and retries for up to 72 h. A removal must end only the grants it is about.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from oauth_keeper.adapters.connections import ConnectionStore
from oauth_keeper.adapters.kms import DataKeys, EnvelopeCipher
from oauth_keeper.domain.connection import ACTIVE, DISCONNECTED, Grant
from oauth_keeper.domain.provider_events import (
    CLOCK_SKEW_TOLERANCE,
    DELIVERY_MEMORY,
    MAX_EVENT_AGE,
    RETRY_WINDOW,
    event_time,
)
from oauth_keeper.domain.signatures import TOLERANCE
from oauth_keeper.domain.tokens import TokenSet
from oauth_keeper.observability import metrics
from oauth_keeper.usecases.connect import save_grant
from oauth_keeper.usecases.disconnect import Disconnection
from oauth_keeper.usecases.outbox import OutboxRelay
from oauth_keeper.usecases.webhooks import WebhookReceiver
from oauth_keeper.usecases.worker import process_records

from local.memory import (
    REMOVALS_ARN,
    FakeKms,
    ListQueue,
    ManualClock,
    MemoryDeliveryLog,
    MemoryItemStore,
    MemoryPublisher,
    StaticCredentials,
    no_sleep,
)
from tests.unit.test_callback import Profiles

pytestmark = pytest.mark.unit

T0 = 1_800_000_000
HOUR, DAY = 3600, 86_400
ACCOUNT = "acct-alice"
SECRET = "cs"


class World:
    """One TikTok account, connected by any number of owners; TikTok's webhook deliveries, signed as TikTok signs."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)
        self.items = MemoryItemStore()
        self.kms = FakeKms()
        self.store = ConnectionStore(self.items, EnvelopeCipher(DataKeys(lambda: self.kms, "arn:memory",
                                                                          self.clock.now)), due_shards=4)
        self.publisher = MemoryPublisher()
        self.outbox = OutboxRelay(self.store, self.publisher)
        self.deliveries = MemoryDeliveryLog()
        credentials = StaticCredentials({"client_key": "ck", "client_secret": SECRET})
        self.disconnection = Disconnection(connections=self.store, items=self.items, profiles=Profiles(),
                                           credentials=credentials, provider=None,  # type: ignore[arg-type]
                                           outbox=self.outbox, clock=self.clock)
        self.queue = ListQueue()
        self.webhooks = WebhookReceiver(profiles=Profiles(), credentials=credentials, queue=self.queue,
                                        deliveries=self.deliveries, clock=self.clock)
        self.grants = 0

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def connect(self, owner: str = "owner-1") -> str:
        """The owner connects (or reconnects) the account now: a new grant, with new tokens."""
        self.grants += 1
        n = self.grants
        tokens = TokenSet(access_token=f"at-{n}", refresh_token=f"rt-{n}", token_type="Bearer",
                          access_expires_at=self.now + 2 * HOUR, refresh_expires_at=self.now + 180 * DAY,
                          scopes=("user.info.basic",), account_id=ACCOUNT, issued_at=self.now)
        grant = Grant(owner_id=owner, provider="tiktok", account_id=ACCOUNT, tokens=tokens,
                      scopes_requested=("user.info.basic",), scopes_granted=("user.info.basic",))
        saved = save_grant(self.store, grant, next_refresh_at=self.now + HOUR, missing_scopes=[], now=self.now,
                           sleep=no_sleep)
        self.outbox.publish(saved.connection)
        return saved.connection.connection_id

    def removal(self, created: Any = "now", *, drop: tuple[str, ...] = (), reason: Any = 1) -> bytes:
        """The body TikTok makes when the user removes the app (created now unless told)."""
        fields = {"client_key": "ck", "event": "authorization.removed",
                  "create_time": self.now if created == "now" else created,
                  "user_openid": ACCOUNT, "content": json.dumps({"reason": reason})}
        return json.dumps({k: v for k, v in fields.items() if k not in drop}).encode()

    def signed(self, body: bytes, signed_at: int | None = None) -> dict[str, str]:
        """The headers TikTok sends with `body`, signed at `signed_at` (default now)."""
        t = self.now if signed_at is None else signed_at
        signature = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {"TikTok-Signature": f"t={t},s={signature}"}

    def deliver(self, body: bytes, signed_at: int | None = None) -> dict[str, Any]:
        """One delivery attempt of `body`, signed by TikTok at `signed_at` (default now), then the refresh
        worker's pass over what it queued (SQS hands it over within seconds). Returns the webhook's answer with
        what the worker's metrics counted: `disconnected` (WebhookDisconnects) and `kept` (WebhookStaleIgnored),
        both 0 when nothing was queued."""
        answer = dict(self.webhooks.receive("tiktok", self.signed(body, signed_at), body))
        before = _metric_totals()
        result = process_records(self.queue.drain(), None, 4,  # type: ignore[arg-type] - removals only
                                 disconnection=self.disconnection, removal_source=REMOVALS_ARN)
        assert result["batchItemFailures"] == []
        after = _metric_totals()
        return {**answer, "disconnected": int(after.get("WebhookDisconnects", 0) - before.get("WebhookDisconnects", 0)),
                "kept": int(after.get("WebhookStaleIgnored", 0) - before.get("WebhookStaleIgnored", 0))}

    def status(self, connection_id: str) -> str:
        return self.store.get(connection_id).status

    def access_token(self, connection_id: str) -> str | None:
        return self.store.open_tokens(self.store.get(connection_id)).get("access_token")

    def disconnected_events(self) -> list[dict[str, Any]]:
        return self.publisher.of_type("Connection Disconnected")


def _metric_totals() -> dict[str, float]:
    return {name: sum(m["Value"]) for name, m in metrics.provider.metric_set.items()}


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def recorded_metrics():
    metrics.provider.metric_set.clear()
    yield lambda: {name: sum(m["Value"]) for name, m in metrics.provider.metric_set.items()}
    metrics.provider.metric_set.clear()


# -- the case: removal at T0, reconnect at T0+120 s, the removal's delivery at T0+180 s -------------------
def test_a_removal_created_before_a_reconnect_leaves_the_reconnect_and_its_tokens_alone(world, recorded_metrics):
    connection_id = world.connect()
    world.clock.advance(DAY)
    removed = world.removal()  # T0: the user removes the app in TikTok (the first attempt is lost)
    world.clock.advance(120)
    assert world.connect() == connection_id  # T0+120: the user reconnects: a new grant, live at TikTok
    world.clock.advance(60)

    answer = world.deliver(removed)  # T0+180: the removal arrives, validly signed

    assert answer == {"received": True, "handled": True, "queued": True, "disconnected": 0, "kept": 1}
    assert world.status(connection_id) == ACTIVE
    assert world.access_token(connection_id) == "at-2"  # the reconnect's tokens, not erased
    assert world.disconnected_events() == []
    assert recorded_metrics()["WebhookStaleIgnored"] == 1


def test_a_removal_created_after_the_latest_grant_disconnects_it_and_erases_its_tokens(world):
    connection_id = world.connect()
    world.clock.advance(HOUR)
    removed = world.removal()
    world.clock.advance(180)  # delivered late, but nobody reconnected meanwhile

    assert world.deliver(removed) == {"received": True, "handled": True, "queued": True, "disconnected": 1, "kept": 0}
    connection = world.store.get(connection_id)
    # Applied by the worker (the webhook only queued it): tokens erased at once, out of the Due index.
    assert connection.status == DISCONNECTED and connection.sealed_tokens is None
    assert connection.next_refresh_at is None
    (event,) = world.disconnected_events()
    assert event["detail"]["reason"] == "user_revoked" and event["detail"]["provider_reason"] == 1


def test_each_owners_connection_is_judged_by_its_own_latest_grant(world):
    """Two owners linked the same TikTok account: only the one granted before the removal is ended by it."""
    before = world.connect("owner-1")
    world.clock.advance(HOUR)
    removed = world.removal()
    world.clock.advance(300)
    after = world.connect("owner-2")
    world.clock.advance(HOUR)

    assert world.deliver(removed) == {"received": True, "handled": True, "queued": True, "disconnected": 1, "kept": 1}
    assert (world.status(before), world.status(after)) == (DISCONNECTED, ACTIVE)


def test_a_reconnect_landing_while_the_removal_is_written_is_left_alone(world):
    """The reconnect commits between the webhook's read and its guarded write: the write fails on the revision,
    and the connection, read again, is judged by its new grant."""
    connection_id = world.connect()
    world.clock.advance(HOUR)
    removed = world.removal()
    world.clock.advance(120)
    write = world.store.apply

    def reconnect_first(connection, changes, **kwargs):
        world.store.apply = write
        world.connect()  # the user's callback wins the race
        return write(connection, changes, **kwargs)

    world.store.apply = reconnect_first
    assert world.deliver(removed) == {"received": True, "handled": True, "queued": True, "disconnected": 0, "kept": 1}
    assert world.status(connection_id) == ACTIVE and world.access_token(connection_id) == "at-2"


@pytest.mark.parametrize(("granted", "ended"), [
    (-3600, True),
    (-61, True),  # granted more than the 60 s tolerance before the event: the event is about this grant
    (-60, False),  # within the tolerance: possibly a reconnect our clock saw before TikTok's
    (0, False),
    (120, False),
], ids=["an_hour_before", "before_by_more_than_the_tolerance", "at_the_tolerance", "same_second", "after"])
def test_the_60_s_clock_skew_tolerance_errs_towards_keeping_a_grant(world, granted, ended):
    created = T0 + DAY
    world.clock.advance(created + granted - T0)
    connection_id = world.connect()
    world.clock.advance(created + 600 - world.now)
    world.deliver(world.removal(created))
    assert world.status(connection_id) == (DISCONNECTED if ended else ACTIVE)


def test_a_removal_left_alone_within_the_tolerance_still_ends_at_the_next_refresh():
    """Why erring towards keeping heals: the grant TikTok ended is refused at the next refresh (invalid_grant),
    and the connection becomes needs_reauth; erring the other way would orphan a live grant for good."""
    from local.simulation import World as Simulation

    sim = Simulation.create(direct_http=True)
    connection = sim.connect("alice")
    open_id = sim.tiktok.users["alice"].open_id
    sim.clock.advance(30)  # the user removes the app 30 s after connecting: inside the tolerance
    sim.tiktok.revoke_user(open_id)
    body, headers = sim.tiktok.signed_webhook(open_id)
    assert sim.services.webhooks.receive("tiktok", headers, body)["queued"] is True
    assert sim.services.refresh_worker.process(sim.queue.drain()) == {"batchItemFailures": []}
    assert sim.store.get(connection.connection_id).status == "active"  # kept: granted within the tolerance
    sim.services.refresher.refresh(connection.connection_id, force=True)
    ended = sim.store.get(connection.connection_id)
    assert (ended.status, ended.status_reason) == ("needs_reauth", "invalid_grant")


# -- deliveries come twice, and retries are re-signed ---------------------------------------------------------------
def test_a_repeated_delivery_answers_200_as_a_duplicate_and_changes_nothing(world, recorded_metrics):
    world.connect()
    world.clock.advance(HOUR)
    body = world.removal()
    world.deliver(body)
    world.clock.advance(30)
    reconnected = world.connect()
    before = world.store.get(reconnected)

    answer = world.deliver(body, signed_at=world.now - 30)  # the same attempt, delivered a second time

    assert answer == {"received": True, "handled": True, "duplicate": True, "disconnected": 0, "kept": 0}
    assert world.store.get(reconnected).revision == before.revision  # not even touched
    assert recorded_metrics()["WebhookDuplicates"] == 1


def test_a_retry_re_signed_later_is_recognised_by_its_body_even_without_a_creation_time(world):
    """Without `create_time` the signature's time stands in for it, so a re-signed retry would look newer than a
    reconnect made meanwhile: the body, remembered from the first delivery, is what keeps the reconnect."""
    connection_id = world.connect()
    world.clock.advance(HOUR)
    body = world.removal(drop=("create_time",))
    assert world.deliver(body)["disconnected"] == 1
    world.clock.advance(600)
    world.connect()  # reconnected after the removal was handled
    world.clock.advance(RETRY_WINDOW - 600)  # TikTok retries the same body at the end of its window, signed anew

    assert world.deliver(body)["duplicate"] is True
    assert world.status(connection_id) == ACTIVE and world.access_token(connection_id) == "at-2"


def test_a_retry_whose_first_attempt_never_arrived_is_ordered_by_its_creation_time(world):
    connection_id = world.connect()
    world.clock.advance(HOUR)
    body = world.removal()  # the first attempt is lost on the way
    world.clock.advance(120)
    world.connect()
    world.clock.advance(5 * HOUR)

    assert world.deliver(body)["kept"] == 1  # TikTok's retry five hours later, signed now
    assert world.status(connection_id) == ACTIVE


def test_a_delivery_is_remembered_past_the_retry_window_then_forgotten(world):
    connection_id = world.connect()
    world.clock.advance(HOUR)
    body = world.removal(drop=("create_time",))
    world.deliver(body)
    world.clock.advance(HOUR)
    world.connect()
    world.clock.advance(RETRY_WINDOW + DAY)  # past any retry TikTok sends
    assert world.deliver(body)["duplicate"] is True
    assert world.status(connection_id) == ACTIVE
    world.clock.advance(DELIVERY_MEMORY - RETRY_WINDOW - DAY - HOUR)
    assert "duplicate" not in world.deliver(body)  # forgotten: a week is the whole memory


def test_a_delivery_that_cannot_be_remembered_is_still_acknowledged(world, caplog):
    """The removal is done: answering 5xx would only make TikTok retry it, and a retry is ordered like any
    delivery. The operator sees the failure in the logs."""
    def unavailable(*args, **kwargs):
        raise ConnectionError("DynamoDB unreachable")

    connection_id = world.connect()
    world.clock.advance(HOUR)
    world.deliveries.remember = unavailable
    assert world.deliver(world.removal())["disconnected"] == 1
    assert world.status(connection_id) == DISCONNECTED
    assert "Webhook delivery not remembered" in caplog.text


def test_the_signature_timestamp_is_still_checked_before_anything_else(world):
    """Replay protection as before: a captured delivery replayed after the 300 s tolerance is refused."""
    from oauth_keeper.domain.errors import Unauthorized

    connection_id = world.connect()
    world.clock.advance(HOUR)
    body = world.removal()
    with pytest.raises(Unauthorized) as refused:
        world.deliver(body, signed_at=world.now - TOLERANCE - 1)
    assert refused.value.code == "stale_signature" and world.status(connection_id) == ACTIVE
    assert world.deliveries.records == {}


# -- a creation time that cannot be trusted ------------------------------------------------------------------------
# Not a number, or a number after the delivery was signed: the signature's time stands in for the event's.
UNUSABLE = {
    "missing": ("drop", None),
    "null": ("value", None),
    "a_date_string": ("value", "2027-01-15T10:00:00Z"),
    "a_signed_string": ("value", "-5"),
    "a_boolean": ("value", True),
    "milliseconds": ("value", (T0 + DAY) * 1000),
    "in_the_future": ("value", T0 + 2 * DAY),
    "huge": ("value", 10**400),
    "not_a_number": ("value", math.nan),
    "infinite": ("value", math.inf),
    "an_object": ("value", {"seconds": T0}),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_a_removal_without_a_usable_creation_time_ends_only_grants_older_than_its_signature(
        world, recorded_metrics, case):
    how, value = UNUSABLE[case]
    old = world.connect("owner-1")  # granted a day before the delivery
    world.clock.advance(DAY - 30)
    fresh = world.connect("owner-2")  # granted 30 s before the delivery is signed: maybe after the removal
    world.clock.advance(30)
    body = world.removal(drop=("create_time",)) if how == "drop" else world.removal(value)

    answer = world.deliver(body)  # never a 5xx: a 200 TikTok stops retrying on

    assert answer == {"received": True, "handled": True, "queued": True, "disconnected": 1, "kept": 1}
    assert (world.status(old), world.status(fresh)) == (DISCONNECTED, ACTIVE)
    assert recorded_metrics()["WebhookImplausibleEventTime"] == 1


@pytest.mark.parametrize("created", [T0 - 30 * DAY, 0, -1], ids=["a_month_old", "the_epoch", "negative"])
def test_a_creation_time_older_than_any_retry_keeps_every_later_grant(world, recorded_metrics, created):
    """Believed, and counted: an old creation time can only keep grants (wrongly kept ones meet `invalid_grant` at
    their next refresh), while the signature's time instead would end every reconnect made since."""
    connection_id = world.connect()
    world.clock.advance(DAY)
    assert world.deliver(world.removal(created)) == {"received": True, "handled": True, "queued": True,
                                                     "disconnected": 0, "kept": 1}
    assert world.status(connection_id) == ACTIVE
    assert recorded_metrics()["WebhookImplausibleEventTime"] == 1


def test_a_creation_time_as_a_string_of_digits_is_read_like_a_number(world, recorded_metrics):
    connection_id = world.connect()
    world.clock.advance(HOUR)
    removed = str(world.now)
    world.clock.advance(120)
    world.connect()
    world.clock.advance(60)
    assert world.deliver(world.removal(removed))["kept"] == 1
    assert world.status(connection_id) == ACTIVE and "WebhookImplausibleEventTime" not in recorded_metrics()


def test_an_absurd_reason_does_not_fail_the_delivery(world):
    world.connect()
    world.clock.advance(HOUR)
    answer = world.deliver(world.removal(reason=math.inf))
    assert answer["disconnected"] == 1
    assert world.disconnected_events()[0]["detail"]["provider_reason"] is None


@pytest.mark.parametrize(("created", "expected"), [
    (T0, (T0, True, True)),
    (T0 - MAX_EVENT_AGE, (T0 - MAX_EVENT_AGE, True, True)),
    (T0 - MAX_EVENT_AGE - 1, (T0 - MAX_EVENT_AGE - 1, True, False)),  # believed, but counted
    (T0 + CLOCK_SKEW_TOLERANCE, (T0, False, True)),  # the provider's clock a little ahead: no later than signed
    (T0 + CLOCK_SKEW_TOLERANCE + 1, (T0, False, False)),
    (T0 - 0.5, (T0 - 1, True, True)),
    (str(T0 - 5), (T0 - 5, True, True)),
    ("1e9", (T0, False, False)),
    ("٣", (T0, False, False)),  # a digit, but not ASCII
])
def test_the_event_time_is_bounded_by_the_signature(created, expected):
    got = event_time(created, T0)
    assert (got.at, got.from_event, got.plausible) == expected


# -- the property: any order of removals, reconnects and (repeated, re-signed) deliveries -------------------------
OWNERS = ("owner-1", "owner-2")
steps = st.lists(st.tuples(
    st.one_of(st.integers(min_value=0, max_value=2 * CLOCK_SKEW_TOLERANCE),  # time passing before the step
              st.integers(min_value=0, max_value=6 * HOUR)),
    st.one_of(
        st.just(("remove",)),
        st.tuples(st.just("connect"), st.sampled_from(OWNERS)),
        st.tuples(st.just("deliver"), st.integers(min_value=0, max_value=20)),  # which removal (mod count)
    ),
), min_size=1, max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_a_removal_never_ends_a_later_grant_and_always_ends_an_earlier_one(steps):
    world = World()
    world.clock.advance(DAY)
    removals: list[tuple[int, bytes]] = []  # (created at, body)
    for gap, action in steps:
        world.clock.advance(gap)
        if action[0] == "remove":
            removals.append((world.now, world.removal()))
        elif action[0] == "connect":
            world.connect(action[1])
        else:
            live = [(created, body) for created, body in removals if world.now - created <= RETRY_WINDOW]
            if not live:
                continue  # TikTok retries for 72 h, then stops
            created, body = live[action[1] % len(live)]
            before = {owner: world.store.find(owner, "tiktok", ACCOUNT) for owner in OWNERS}
            answer = world.deliver(body)
            assert answer["handled"]
            event("a repeated delivery" if answer.get("duplicate") else "a first delivery")
            for connection in before.values():
                if connection is None or connection.status == DISCONNECTED:
                    continue
                now = world.store.get(connection.connection_id)
                if connection.connected_at >= created:  # granted after the event: never ended by it
                    event("a later grant at delivery")
                    assert now.status == ACTIVE and now.revision == connection.revision
                elif connection.connected_at < created - CLOCK_SKEW_TOLERANCE:  # clearly before: always ended
                    event("an earlier grant at delivery")
                    assert now.status == DISCONNECTED and now.sealed_tokens is None
