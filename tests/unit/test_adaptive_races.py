"""The `adaptive` policy's read marks under concurrent token reads (ADR 0026): reads of one connection that race
land at most one mark write per window, whatever path (the mark alone, or the mark with the idle connection's
replan) they take. In simulated time, never sleeping; the race is staged by running a second read while the
first one's write is on its way."""

from __future__ import annotations

from typing import Any

import pytest

from local.provider_world import ProviderWorld
from tests.unit.test_adaptive_policy import BRISK, connected

pytestmark = pytest.mark.unit


def racing_reads(world: ProviderWorld, connection_id: str, racers: int) -> list[dict[str, Any]]:
    """Wrap the item store so the first read's mark write lets `racers` more reads of the connection run first
    (each did its GetItem before any mark landed, as concurrent token-route invocations do); every write that
    sets `last_read_at` is recorded with whether it landed."""
    items = world.services.connections.items
    update = items.update
    seen: list[dict[str, Any]] = []
    pending = [racers]

    def racing(key, *, set, remove=(), expect, **more):  # noqa: A002 - the port's parameter name
        if "last_read_at" in set and pending[0] > 0:
            pending[0] -= 1
            world.services.tokens.token_for(connection_id, None)  # another invocation, read before ours lands
        result = update(key, set=set, remove=remove, expect=expect, **more)  # `add`, `returning` passed through
        if "last_read_at" in set:
            seen.append({"set": dict(set), "ok": bool(result)})
        return result

    items.update = racing  # type: ignore[method-assign]
    return seen


def test_concurrent_first_reads_of_an_idle_connection_land_one_replan_write():
    world = ProviderWorld.create(BRISK)
    cid = connected(world)  # never read: planned as idle (daily keep-alive), its token still valid
    writes = racing_reads(world, cid, racers=3)

    world.services.tokens.token_for(cid, None)

    landed = [w for w in writes if w["ok"]]
    assert len(landed) == 1, writes  # each landed replan also moves the Due index entry (2 more WRU)
    assert world.get(cid).next_refresh_at == landed[0]["set"]["next_refresh_at"]


def test_concurrent_reads_of_a_hot_connection_land_one_mark_write():
    world = ProviderWorld.create(BRISK)
    cid = connected(world)
    world.services.tokens.token_for(cid, None)  # read: eager now, marked
    world.clock.advance(86_400 + 60)  # a window later the next read is due a mark
    writes = racing_reads(world, cid, racers=3)

    world.services.tokens.token_for(cid, None)

    assert len([w for w in writes if w["ok"]]) == 1, writes
