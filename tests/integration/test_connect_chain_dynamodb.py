"""A connect chain finished in the background (ADR 0025) on the DynamoDB adapter (moto): `chain_next` and the
`connect_finishing` reason are written with the grant, read back, found by the sweep's Due index, and removed by
the link's commit."""

import pytest
from oauth_keeper.adapters import aws as aws_clients
from oauth_keeper.adapters.dynamodb import DynamoItemStore

from local.provider_world import ProviderWorld
from local.sim_provider import DAY, Quirks

pytestmark = pytest.mark.integration


def test_a_connection_finishing_its_chain_round_trips_through_dynamodb(stack):
    items = DynamoItemStore(aws_clients.client("dynamodb"), stack.env["CONNECTIONS_TABLE"])
    world = ProviderWorld.create(name="instagram", quirks=Quirks(access_ttl=60 * DAY), items=items)
    world.provider.quirks.on_code_exchange = lambda: world.clock.advance(5)  # of the callback's 9 s: no time left
    result = world.connect("ana", deadline=world.clock.now() + 9)
    world.provider.quirks.on_code_exchange = None
    assert result["status_reason"] == "connect_finishing"
    cid = result["connection_id"]
    stored = items.get(cid)
    assert stored["status"] == "active" and stored["status_reason"] == "connect_finishing"
    assert int(stored["chain_next"]) == 0 and world.get(cid).chain_next == 0

    world.tick()  # the sweep reads the Due index, the worker runs the link
    stored = items.get(cid)
    assert "chain_next" not in stored and "status_reason" not in stored
    assert world.get(cid).access_expires_at == world.clock.now() + 60 * DAY
    assert len(world.provider.sent("chain")) == 1
