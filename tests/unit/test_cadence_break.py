"""Break tests of the Cadence index (ADR 0023): the hostile world against the sweep's window and the refresher's
schedule, on the in-memory store and the injectable clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from oauth_keeper.domain.deadlines import LEASE_SECONDS
from oauth_keeper.usecases.worker import process_records

from local.simulation import World

pytestmark = pytest.mark.unit


def _item(world: World, cid: str) -> dict[str, Any]:
    return world.store.items.get(cid)


def _on_cadence(world: World) -> str:
    cid = world.connect("ann").connection_id
    for _ in range(40):
        world.tick()
    assert _item(world, cid).get("cadence_shard")
    return cid


def _tick_to(world: World, cid: str, moment: int) -> None:
    """Ticks until the next sweep would send `cid` (its plan within the look-ahead)."""
    interval = world.services.settings.sweep_interval
    while world.clock.now() + interval < moment:
        world.tick()


def _tick_redelivering(world: World) -> None:
    """`World.tick`, with SQS's redelivery: a message the worker reported failed comes back at the next tick
    (the visibility timeout, 380 s, is longer than a lease)."""
    world.services.sweep.run()
    records = world.queue.drain()
    result = process_records(records, world.services.refresher, 8, orphans=world.services.orphans,
                             disconnection=world.services.disconnection) if records else {"batchItemFailures": []}
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    world.queue.send([json.loads(r["body"])["connection_id"] for r in records if r["messageId"] in failed])
    world.clock.advance(world.services.settings.sweep_interval)


def test_a_cadence_connection_whose_lease_a_dead_refresher_holds_is_sent_again_before_its_token_lapses():
    # The token route took the lease at the moment the sweep sent the id, then its Lambda died (timeout) before the
    # commit: the worker answers BUSY and the message is gone. From the Due index the next sweep sends it again;
    # from a Cadence family nothing does until its phase comes round, a period later.
    world = World.create()
    cid = _on_cadence(world)
    item = _item(world, cid)
    expires = item["access_expires_at"]
    _tick_to(world, cid, item["next_refresh_at"])
    world.store.items.update(cid, set={"lease_owner": "token-route-that-died",
                                       "lease_expires_at": int(world.clock.now()) + LEASE_SECONDS}, expect={})
    while world.clock.now() < expires:
        _tick_redelivering(world)
        if _item(world, cid)["access_expires_at"] != expires:
            break
    assert _item(world, cid)["access_expires_at"] != expires, "refreshed before the access token lapsed"


def test_a_lost_message_of_a_cadence_connection_is_sent_again_when_its_phase_comes_round_and_no_sooner():
    # The ADR's known limit, measured: a message lost for good (the RefreshDLQ after 5 crashed receives) is the only
    # send of a connection on a cadence until its phase comes round a period later; the access token lapses
    # meanwhile for up to the period less the margin left at the moment (README, "Operations": redrive promptly).
    world = World.create()
    cid = _on_cadence(world)
    item = _item(world, cid)
    moment, expires = item["next_refresh_at"], item["access_expires_at"]
    period = int(item["cadence_shard"].split("#")[0])
    interval = world.services.settings.sweep_interval
    _tick_to(world, cid, moment)
    world.services.sweep.run()
    assert cid in world.queue.messages
    world.queue.drain()  # the message is lost
    world.clock.advance(interval)
    while _item(world, cid)["access_expires_at"] == expires:
        world.tick()
    refreshed_at = _item(world, cid)["last_refresh_at"]
    assert moment + period - interval <= refreshed_at <= moment + period  # a period later, not at the next sweep
    lapsed = refreshed_at - expires
    assert 0 < lapsed <= period - (expires - moment)  # 2 h tokens, 5-minute sweeps: 96 - 19 = 77 minutes at most


def _lapsed(world: World) -> list[str]:
    """Active connections whose access token has ended: what the eager policy exists to prevent."""
    now = world.clock.now()
    return [i["connection_id"] for i in world.store.items.items()
            if i.get("status") == "active" and i.get("access_expires_at") is not None and i["access_expires_at"] <= now]


@pytest.mark.parametrize("change", [
    {"due_shards": 2}, {"due_shards": 64}, {"sweep_interval": 60}, {"sweep_interval": 900},
    {"schedule_index": "due"},
])
def test_a_redeploy_between_sweeps_never_lets_an_access_token_lapse(change):
    world = World.create(direct_http=True)
    for n in range(12):
        world.connect(f"u{n}", owner_id=f"o{n}")
    for _ in range(50):  # everyone on a cadence, phases spread by the connects' jitter
        world.tick()
        assert _lapsed(world) == []
    world.redeploy(**change)
    end = world.clock.now() + 3 * 86_400 // 8
    while world.clock.now() < end:
        world.tick()
        assert _lapsed(world) == []
    assert world.statuses() == {"active": 12}


@pytest.mark.parametrize("lifetimes", [(7200, 3600, 7200), (7200, 7199, 7140, 7200), (3600, 86_400 + 3600, 3600)])
def test_a_provider_answering_another_lifetime_each_time_never_lets_an_access_token_lapse(lifetimes):
    world = World.create(direct_http=True)
    ids = [world.connect(f"u{n}", owner_id=f"o{n}").connection_id for n in range(6)]
    for n in range(400):
        world.tiktok.access_ttl = lifetimes[n // 20 % len(lifetimes)]  # another answer every 100 minutes
        world.tick()
        assert _lapsed(world) == []
    assert world.statuses() == {"active": 6}
    assert all(_item(world, cid)["last_refresh_outcome"] == "succeeded" for cid in ids)


def test_sweeps_late_twice_and_out_of_order_never_let_an_access_token_lapse():
    world = World.create(direct_http=True)
    for n in range(12):
        world.connect(f"u{n}", owner_id=f"o{n}")
    interval = world.services.settings.sweep_interval
    pattern = [interval, interval, 2 * interval - 7, 1, interval + 13, interval - 40, 0]
    for n in range(500):
        step = pattern[n % len(pattern)]
        if n % 11 == 5:  # a delivery the clock of another sweeper put a little behind: it sweeps the past again
            world.clock.advance(-30)
            world.tick(seconds=30)
        world.tick(seconds=step)
        assert _lapsed(world) == []
    assert world.statuses() == {"active": 12}


# The sweep's message carries its horizon (`due_by`): a worker with a shorter interval takes as due what the
# sweep recorded as swept.
def test_ids_the_old_sweeper_sent_before_a_shorter_sweep_interval_reach_the_new_workers_and_are_not_lost():
    # A deploy lowers SweepIntervalMinutes from 10 to 1. The old sweeper's last tick queued the moments of the next
    # 10 minutes and recorded them as swept; the workers that take those messages already run with 1 minute and
    # answer not_due for every moment more than a minute ahead. From Due the next sweep sends them again; from a
    # Cadence family nothing does before the phase comes round a period later.
    world = World.create(direct_http=True)
    world.redeploy(sweep_interval=600)
    for n in range(12):
        world.connect(f"u{n}", owner_id=f"o{n}")
        world.clock.advance(500)  # phases spread over the period
    for _ in range(40):
        world.tick()
    assert all(i.get("cadence_shard") for i in world.store.items.items() if i.get("status") == "active")
    world.services.sweep.run()  # the old sweeper's last tick
    records = world.queue.drain()
    world.redeploy(sweep_interval=60)  # the workers have the new configuration first
    process_records(records, world.services.refresher, 8, orphans=world.services.orphans,
                    disconnection=world.services.disconnection)
    for _ in range(3 * 96):
        world.tick()
        assert _lapsed(world) == []
