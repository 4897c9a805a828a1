"""The connection lifecycle over simulated weeks: refresh-token end, refresh policies, events never lost."""

from __future__ import annotations

import pytest
from oauth_keeper.domain import events
from oauth_keeper.observability import logger

from local.simulation import World

pytestmark = pytest.mark.integration
DAY = 86400


@pytest.fixture(autouse=True)
def quiet_logs():
    logger.setLevel("CRITICAL")
    yield
    logger.setLevel("INFO")


def run(world: World, seconds: int) -> None:
    for _ in range(int(seconds // world.services.settings.sweep_interval)):
        world.tick()


def test_a_refresh_token_that_refreshing_cannot_extend_warns_once_then_needs_reauth():
    world = World.create(refresh_ttl=20 * DAY, extend_refresh_on_rotation=False)
    connection = world.connect("alice")
    ends = connection.refresh_expires_at
    run(world, 5 * DAY)
    assert not world.publisher.of_type(events.EXPIRING)  # 15 days left: outside the 14-day window
    run(world, 2 * DAY)
    (expiring,) = world.publisher.of_type(events.EXPIRING)
    detail = expiring["detail"]
    assert detail["reason"] == "refresh_token_expiring" and detail["status"] == "active"
    assert detail["connection_id"] == connection.connection_id
    run(world, 12 * DAY)
    assert len(world.publisher.of_type(events.EXPIRING)) == 1  # once, not at every refresh
    assert world.store.get(connection.connection_id).status == "active"
    world.clock.advance(ends - world.clock.now())
    run(world, DAY)
    ended = world.store.get(connection.connection_id)
    assert ended.status == "needs_reauth" and ended.status_reason == "refresh_token_expired"
    (reauth,) = world.publisher.of_type(events.NEEDS_REAUTH)
    assert reauth["detail"]["reason"] == "refresh_token_expired"


def test_a_refresh_token_that_rotation_extends_never_warns():
    world = World.create(refresh_ttl=20 * DAY, extend_refresh_on_rotation=True)
    connection = world.connect("alice")
    run(world, 30 * DAY)
    assert not world.publisher.of_type(events.EXPIRING)
    assert world.store.get(connection.connection_id).status == "active"


def test_on_demand_refreshes_about_daily_and_expired_access_tokens_are_not_a_risk():
    eager, on_demand = World.create(policy="eager"), World.create(policy="on_demand")
    for world in (eager, on_demand):
        world.connect("alice")
        run(world, 3 * DAY + 4 * 3600)
    elapsed = 3 * DAY + 4 * 3600
    # eager: every 2 h token is refreshed 24 min (20% of its life) before it ends, less up to 2 min of
    # jitter and up to one sweep (5 min) of look-ahead
    interval_max, interval_min = 7200 - 1440, 7200 - 1440 - 120 - 300
    assert elapsed // interval_max - 1 <= eager.tiktok.stats["refresh_successes"] <= elapsed // interval_min + 1
    assert 2 <= on_demand.tiktok.stats["refresh_successes"] <= 4  # a daily keep-alive
    (connection,) = on_demand.connections()
    assert connection.access_expires_at < on_demand.clock.now()  # expired: normal under on_demand
    assert connection.status == "active"
    # a token read refreshes on demand through the same single-flight
    outcome = on_demand.services.refresher.refresh(connection.connection_id, force=True)
    assert outcome.result == "refreshed"
    assert outcome.connection.access_expires_at > on_demand.clock.now()


def test_on_demand_turns_at_risk_only_after_repeated_failures():
    world = World.create(policy="on_demand")
    connection = world.connect("alice")
    world.clock.advance(connection.next_refresh_at - world.clock.now())
    world.tiktok.set_outage("5xx")
    statuses = []
    for _ in range(3):
        world.tick()
        current = world.store.get(connection.connection_id)
        statuses.append(current.status)
        world.clock.advance(max(0, current.next_refresh_at - world.clock.now()))
    assert statuses == ["active", "active", "at_risk"]


def test_an_event_left_unpublished_by_a_crash_is_published_by_the_next_sweep():
    world = World.create()
    world.publisher.down = True  # EventBridge unreachable right after the commit
    connection = world.connect("alice")
    stored = world.store.get(connection.connection_id)
    assert [e["detail_type"] for e in stored.outbox.values()] == [events.CREATED]
    assert not world.publisher.events
    world.publisher.down = False
    result = world.tick()
    assert result["sweep"].pending_events == 1
    assert [e["detail_type"] for e in world.publisher.events] == [events.CREATED]
    cleared = world.store.items.get(connection.connection_id)
    assert "outbox_shard" not in cleared and not any(k.startswith("ob_") for k in cleared)
    world.tick()
    assert len(world.publisher.events) == 1  # published once


def test_tokens_that_fail_authentication_are_never_used_and_the_reason_says_so():
    world = World.create()
    connection = world.connect("alice")
    item = world.store.items.get(connection.connection_id)
    tampered = bytearray(item["tokens"])
    tampered[-1] ^= 1
    world.store.items.update(connection.connection_id, set={"tokens": bytes(tampered)}, expect={})
    world.clock.advance(connection.next_refresh_at - world.clock.now())
    world.tick()
    ended = world.store.get(connection.connection_id)
    assert ended.status == "needs_reauth" and ended.status_reason == "token_unreadable"
    assert world.tiktok.stats["refreshes"] == 0  # nothing was sent with a token we could not trust
