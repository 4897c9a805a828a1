"""A caller hammering the token route (break-test of issue 16, section 3): a read asking more validity than the
provider's tokens ever live (`min_valid_seconds` up to 3600; Google's access tokens live 3599 s, the simulated
YouTube's 3600) could never be satisfied, so each such read refreshed at the provider again, each a lease, a
commit, a KMS-sealed write and a call against the provider's quota. The ask is now capped at a fresh token's
lifetime less FRESH_MARGIN (5 minutes). In simulated time, never sleeping."""

from __future__ import annotations

import pytest

from local.provider_world import ProviderWorld

pytestmark = pytest.mark.unit


def test_reads_asking_more_than_a_token_ever_lives_do_not_refresh_at_the_provider_each_time():
    world = ProviderWorld.create(name="youtube")
    result = world.connect("alice")
    assert result["status"] == "connected", result
    cid = result["connection_id"]
    before = len(world.provider.sent("refresh"))

    answers = []
    for _ in range(10):  # an app asking for an hour's validity every 5 seconds
        answers.append(world.services.tokens.token_for(cid, "3600"))
        world.clock.advance(5)

    assert all(a["access_token"] for a in answers)  # served every time either way
    assert len(world.provider.sent("refresh")) - before <= 1


def test_a_read_asking_more_than_a_token_lives_still_gets_one_refreshed_within_the_margin():
    world = ProviderWorld.create(name="youtube")
    cid = world.connect("alice")["connection_id"]
    before = len(world.provider.sent("refresh"))
    world.clock.advance(301)  # older than the margin: the ask (capped) is no longer met, so it is refreshed once
    for _ in range(3):
        answer = world.services.tokens.token_for(cid, "3600")
        world.clock.advance(5)
    assert len(world.provider.sent("refresh")) - before == 1
    assert answer["access_token"]
