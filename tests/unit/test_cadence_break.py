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
