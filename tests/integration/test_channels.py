"""Channels (ADR 0024): what one grant can post to, listed from the profile's `channels` section, kept current and
marked when the grant goes, against the simulated providers (in memory) and through the backend API (moto)."""

from __future__ import annotations

import json

import pytest
from oauth_keeper.adapters.channels import channel_binding
from oauth_keeper.domain import events
from oauth_keeper.domain.channels import CHANNEL_PREFIX, CHANNELS_PREFIX, channel_key
from oauth_keeper.domain.errors import ConnectionUnavailable, InvalidInput, NotFound, TokenDecryptionError

from local.provider_world import ProviderWorld
from local.sim_provider import DAY, SIMULATED
from tests.integration.test_backend_api import call, connect, run_jobs

INDEXED = ("owner_id", "account_key", "due_shard", "next_refresh_at", "outbox_shard", "created_at")


def world_of(name: str) -> ProviderWorld:
    return ProviderWorld.create(name=name, quirks=SIMULATED[name]())


def connected(world: ProviderWorld, user: str = "alice", owner_id: str = "owner") -> str:
    result = world.connect(user, owner_id)
    assert result["status"] == "connected", result
    return result["connection_id"]


def items_of(world: ProviderWorld, prefix: str) -> list[dict]:
    return [i for i in world.services.items.items() if i["connection_id"].startswith(prefix)]  # type: ignore[attr-defined]


def page_tokens(world: ProviderWorld, user: str = "alice") -> dict[str, str]:
    """Channel id -> the newest Page token the simulated provider derived for it."""
    newest: dict[str, str] = {}
    for token, (owner, channel_id) in world.provider.channel_tokens.items():
        if owner == user:
            newest[channel_id] = token
    return newest


# -- listing at connect ----------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_facebook_connect_lists_its_pages_each_token_sealed_in_an_item_of_its_own():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    view = world.services.channels.view(connection_id, "owner")
    pages = world.provider.channels_for("alice")
    assert [(c["channel_id"], c["name"]) for c in view["channels"]] == [(p[0], p[1]) for p in pages]
    assert all(c["has_own_token"] and c["status"] == "active" for c in view["channels"])
    assert view["listed_at"] is not None
    tokens = items_of(world, CHANNEL_PREFIX)
    assert len(tokens) == 3 and {i["connection_id"] for i in tokens} == {
        channel_key(connection_id, p[0]) for p in pages}
    everything = json.dumps([repr(i) for i in world.services.items.items()])  # type: ignore[attr-defined]
    assert not any(token in everything for token in world.provider.channel_tokens)  # sealed, never in clear
    for item in (*tokens, *items_of(world, CHANNELS_PREFIX)):
        assert not set(INDEXED) & set(item), item  # in no index: no sweep, listing or lookup meets them
    connection_item = world.services.items.get(connection_id)
    assert len(json.dumps({k: (len(v) if isinstance(v, bytes) else v) for k, v in connection_item.items()})) < 1024
    assert "channel" not in json.dumps({k: v for k, v in connection_item.items() if not isinstance(v, bytes)})


@pytest.mark.unit
def test_the_token_route_serves_a_pages_own_token_and_says_so():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    page = world.provider.channels_for("alice")[1][0]
    answer = world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=page)
    assert answer["access_token"] == page_tokens(world)[page]
    assert answer["token_source"] == "channel" and answer["channel_id"] == page and answer["expires_at"] is None
    parent = world.services.tokens.token_for(connection_id, None, owner_id="owner")
    assert parent["access_token"] == world.tokens(connection_id)["access_token"] != answer["access_token"]
    assert "channel_id" not in parent


@pytest.mark.unit
def test_a_youtube_channel_is_served_with_the_parents_token():
    world = world_of("youtube")
    connection_id = connected(world)
    (channel,) = world.services.channels.view(connection_id, "owner")["channels"]
    assert channel == {"channel_id": "UCalice", "name": "Channel of alice", "has_own_token": False,
                       "status": "active"}
    answer = world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id="UCalice")
    assert answer["token_source"] == "connection"
    assert answer["access_token"] == world.tokens(connection_id)["access_token"]
    assert items_of(world, CHANNEL_PREFIX) == []  # no token of its own, no token item


@pytest.mark.unit
def test_linkedin_lists_only_organizations_the_member_can_post_for_by_the_tail_of_their_urn():
    world = world_of("linkedin")
    connection_id = connected(world)
    orgs = world.provider.channels_for("alice")
    assert [o[2] for o in orgs] == ["ADMINISTRATOR", "CONTENT_ADMINISTRATOR", "ANALYST"]
    view = world.services.channels.view(connection_id, "owner")
    assert [c["channel_id"] for c in view["channels"]] == [orgs[0][0], orgs[1][0]]
    assert all(c["channel_id"].isdigit() for c in view["channels"])  # not the urn:li:organization: prefix
    (sent,) = world.provider.sent("channels")
    assert sent.status == 200  # the profile's X-Restli-Protocol-Version and LinkedIn-Version headers were sent


@pytest.mark.unit
def test_unknown_malformed_and_foreign_channels_are_refused_before_any_token_is_served():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    with pytest.raises(NotFound) as unknown:
        world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id="999")
    assert unknown.value.code == "channel_not_found"
    for bad in ("", "a b", "../x", "x" * 129, "é"):
        with pytest.raises(InvalidInput):
            world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=bad)
    page = world.provider.channels_for("alice")[0][0]
    with pytest.raises(NotFound):  # another owner's connection: answered as an unknown one
        world.services.tokens.token_for(connection_id, None, owner_id="mallory", channel_id=page)
    with pytest.raises(InvalidInput):
        world.services.channels.view(connection_id, None)


@pytest.mark.unit
def test_an_unknown_channel_costs_no_refresh_of_its_parent():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    # The parent's token is half an hour from its end: a read asking for an hour renews it first.
    world.clock.advance(world.get(connection_id).access_expires_at - 1800 - world.clock.now())
    before = len(world.provider.sent("refresh"))
    with pytest.raises(NotFound):
        world.services.tokens.token_for(connection_id, "3600", owner_id="owner", channel_id="999")
    assert len(world.provider.sent("refresh")) == before
    page = world.provider.channels_for("alice")[0][0]
    assert world.services.tokens.token_for(connection_id, "3600", owner_id="owner", channel_id=page)["access_token"]
    assert len(world.provider.sent("refresh")) == before + 1  # a known channel's read does renew its parent


@pytest.mark.unit
def test_a_channel_token_moved_onto_another_channels_item_never_opens():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    first, second = (p[0] for p in world.provider.channels_for("alice")[:2])
    store = world.services.items
    stolen = store.get(channel_key(connection_id, first))["tokens"]
    store.update(channel_key(connection_id, second), set={"tokens": stolen}, expect={})
    with pytest.raises(TokenDecryptionError):
        world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=second)
    connection = world.get(connection_id)
    index = world.services.channel_items.index(connection_id)
    opened = world.services.cipher.open(stolen, channel_binding(connection, first, index.generation))
    assert opened["access_token"] == page_tokens(world)[first]  # where it belongs, it opens


# -- kept current ----------------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_re_exchange_of_the_user_token_re_derives_the_page_tokens():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    page = world.provider.channels_for("alice")[0][0]
    before = world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=page)["access_token"]
    world.clock.advance(2 * DAY)
    outcome = world.services.refresher.refresh(connection_id, force=True)
    assert outcome.result == "refreshed"
    assert len(world.provider.sent("channels")) == 2
    after = world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=page)["access_token"]
    assert after != before and after == page_tokens(world)[page]
    assert len(items_of(world, CHANNEL_PREFIX)) == 3  # replaced, not added to


@pytest.mark.unit
def test_refreshes_list_the_channels_again_at_most_once_a_day():
    world = world_of("youtube")  # hourly access tokens: refreshed many times a day
    connection_id = connected(world)
    for _ in range(5):
        world.clock.advance(3 * 3600)
        assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert len(world.provider.sent("channels")) == 1  # the connect's listing, 15 hours ago
    world.clock.advance(10 * 3600)
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert len(world.provider.sent("channels")) == 2


@pytest.mark.unit
def test_a_page_no_longer_listed_loses_its_item_and_its_token():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    gone = world.provider.channels["alice"].pop(2)
    world.clock.advance(2 * DAY)
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert len(items_of(world, CHANNEL_PREFIX)) == 2
    with pytest.raises(NotFound):
        world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=gone[0])


@pytest.mark.unit
def test_a_listing_that_crashes_before_its_index_leaves_no_token_a_disconnect_cannot_find(monkeypatch):
    world = world_of("facebook_pages")
    connection_id = connected(world)
    world.provider.channels_for("alice").append(("9990001", "A new Page", ""))
    world.clock.advance(2 * DAY)
    items = world.services.items
    update = items.update

    def crash_on_the_index(key, *, set, remove=(), expect, **more):  # noqa: A002 - the port's own name
        if key.startswith(CHANNELS_PREFIX) and "generation" in set:
            raise RuntimeError("the function was cut off")
        return update(key, set=set, remove=remove, expect=expect, **more)  # `add`, `returning` (the lease)

    monkeypatch.setattr(items, "update", crash_on_the_index)
    world.services.refresher.refresh(connection_id, force=True)
    monkeypatch.setattr(items, "update", update)
    assert len(items_of(world, CHANNEL_PREFIX)) == 4  # the new Page's token item, which no index names yet
    world.services.disconnection.request_disconnect(connection_id, owner_id="owner")
    world.tick()
    assert world.get(connection_id).status == "disconnected"
    assert items_of(world, CHANNEL_PREFIX) == []  # nothing of a channel token outlives its connection


# -- the parent's fate -----------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_revoked_grant_marks_every_channel_in_one_event_that_names_them():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    pages = [p[0] for p in world.provider.channels_for("alice")]
    world.provider.revoke_user("alice")
    world.clock.advance(2 * DAY)
    assert world.services.refresher.refresh(connection_id, force=True).result == "needs_reauth"
    (event,) = world.events(events.NEEDS_REAUTH)
    assert event["detail"]["channels_affected"] == pages
    view = world.services.channels.view(connection_id, "owner")
    assert {c["status"] for c in view["channels"]} == {"needs_reauth"}
    index_item = items_of(world, CHANNELS_PREFIX)[0]
    assert index_item["status"] == "needs_reauth"  # marked in storage, not only shown
    with pytest.raises(ConnectionUnavailable):
        world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=pages[0])
    assert connected(world) == connection_id  # the user connects again: listed anew, active
    view = world.services.channels.view(connection_id, "owner")
    assert {c["status"] for c in view["channels"]} == {"active"}


@pytest.mark.unit
def test_a_provider_without_channels_adds_nothing_to_its_events():
    world = world_of("tiktok")
    connection_id = connected(world)
    world.provider.revoke_user("alice")
    world.clock.advance(2 * DAY)
    world.services.refresher.refresh(connection_id, force=True)
    (event,) = world.events(events.NEEDS_REAUTH)
    assert "channels_affected" not in event["detail"]
    assert world.services.channels.view(connection_id, "owner") == {
        "connection_id": connection_id, "listed_at": None, "channels": []}


@pytest.mark.unit
def test_a_disconnect_deletes_every_channel_token_and_names_the_channels():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    pages = [p[0] for p in world.provider.channels_for("alice")]
    world.services.disconnection.request_disconnect(connection_id, owner_id="owner")
    world.tick()
    assert world.get(connection_id).status == "disconnected"
    (event,) = world.events(events.DISCONNECTED)
    assert event["detail"]["channels_affected"] == pages
    assert items_of(world, CHANNEL_PREFIX) == []
    view = world.services.channels.view(connection_id, "owner")
    assert {(c["has_own_token"], c["status"]) for c in view["channels"]} == {(False, "disconnected")}


@pytest.mark.unit
def test_an_owners_erasure_deletes_every_channel_item_with_the_connection():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    world.services.disconnection.request_erasure("owner")
    for _ in range(3):
        world.clock.advance(60)
        world.tick()
    assert world.services.connections.get(connection_id) is None
    assert items_of(world, CHANNEL_PREFIX) == [] and items_of(world, CHANNELS_PREFIX) == []


# -- absurd answers --------------------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("body", [
    {"data": "not a list"}, {"data": {"id": "1"}}, [], "text", {"nothing": []},
    {"data": [{"id": "a b", "name": "x", "access_token": "t"}, {"id": "../1", "access_token": "t"},
              {"id": None}, "scalar", {"id": "1", "name": "no token"}]},
])
def test_an_unusable_channel_list_lists_nothing_and_leaves_the_connection_alone(body):
    world = world_of("facebook_pages")
    world.provider.fail_next("channels", 200, body)
    connection_id = connected(world)
    assert world.get(connection_id).status == "active"
    assert items_of(world, CHANNEL_PREFIX) == []
    assert world.services.tokens.token_for(connection_id, None, owner_id="owner")["access_token"]


@pytest.mark.unit
def test_an_unusable_answer_never_replaces_a_usable_listing():
    world = world_of("facebook_pages")
    connection_id = connected(world)
    world.clock.advance(2 * DAY)
    world.provider.fail_next("channels", 200, {"data": None})
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert len(world.services.channels.view(connection_id, "owner")["channels"]) == 3


@pytest.mark.unit
def test_a_refused_channel_list_fails_nothing_and_the_first_read_lists_them():
    world = world_of("facebook_pages")
    world.provider.fail_next("channels", 500, {"error": {"code": 2, "message": "Service temporarily unavailable"}})
    connection_id = connected(world)
    assert world.get(connection_id).status == "active" and items_of(world, CHANNELS_PREFIX) == []
    view = world.services.channels.view(connection_id, "owner")  # never listed: listed now
    assert len(view["channels"]) == 3


@pytest.mark.unit
def test_a_huge_list_with_odd_ids_and_tokens_is_bounded():
    world = world_of("facebook_pages")
    good = [{"id": str(10_000 + n), "name": "P\x00age\n" + "n" * 250, "access_token": f"pt-{n}"} for n in range(300)]
    odd = [{"id": "1" * 129, "access_token": "t"}, {"id": "x/y", "access_token": "t"},
           {"id": "2", "access_token": "x" * 5000}, {"id": "3", "access_token": ["t"]}, {"id": "10000"}]
    world.provider.fail_next("channels", 200, {"data": odd + good[:5] + good})
    connection_id = connected(world)
    channels = world.services.channels.view(connection_id, "owner")["channels"]
    assert len(channels) == world.profile.channels.max_items == 200
    assert [c["channel_id"] for c in channels] == [str(10_000 + n) for n in range(200)]
    assert all(len(c["name"]) <= 200 and "\x00" not in c["name"] and "\n" not in c["name"] for c in channels)


@pytest.mark.unit
def test_pages_of_the_list_are_followed_on_the_same_host_only():
    world = world_of("facebook_pages")
    world.provider.quirks.channels_page_size = 2
    connection_id = connected(world)
    assert len(world.services.channels.view(connection_id, "owner")["channels"]) == 3
    assert len(world.provider.sent("channels")) == 2
    other = world_of("facebook_pages")
    other.provider.fail_next("channels", 200, {"data": [{"id": "1", "access_token": "t"}],
                                               "paging": {"next": "https://evil.example/steal"}})
    connection_id = connected(other)
    assert [c["channel_id"] for c in other.services.channels.view(connection_id, "owner")["channels"]] == ["1"]
    assert len(other.provider.sent("channels")) == 1


# -- the backend API (moto) ------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_the_channels_route_answers_json_and_refuses_bad_input(stack, tiktok, browser):
    connection_id = connect(browser, tiktok)["connection_id"][0]
    status, body = call("GET", f"/connections/{connection_id}/channels", raw_query="owner_id=owner-1")
    assert (status, body) == (200, {"connection_id": connection_id, "listed_at": None, "channels": []})
    status, body = call("GET", f"/connections/{connection_id}/channels")
    assert status == 400 and body["error"]["field"] == "owner_id"
    status, body = call("GET", f"/connections/{connection_id}/channels", raw_query="owner_id=someone-else")
    assert status == 404
    status, body = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1&channel_id=1")
    assert status == 404 and body["error"]["code"] == "channel_not_found"
    status, body = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1&channel_id=a%20b")
    assert status == 400 and body["error"]["field"] == "channel_id"
    assert "access_token" not in json.dumps(body)


@pytest.mark.integration
def test_channel_items_round_trip_through_dynamodb_and_go_with_their_connection(stack, tiktok, browser):
    import boto3
    from oauth_keeper import root
    from oauth_keeper.domain.channels import ListedChannel, Listing

    connection_id = connect(browser, tiktok)["connection_id"][0]
    services = root.container()
    connection = services.connections.get(connection_id)
    listing = Listing((ListedChannel("101", "Page one", "pt-one"), ListedChannel("urn:x.2", None, None)))
    index = services.channel_items.save(connection, listing, now=1_800_000_000)
    again = services.channel_items.index(connection_id)
    assert again == index and [c.own_token for c in again.channels] == [True, False]
    assert services.channel_items.open_token(connection, again, "101") == "pt-one"
    assert services.channel_items.open_token(connection, again, "urn:x.2") is None
    table = boto3.client("dynamodb")
    raw = table.get_item(TableName=stack.env["CONNECTIONS_TABLE"],
                         Key={"connection_id": {"S": channel_key(connection_id, "101")}})["Item"]
    assert "B" in raw["tokens"] and b"pt-one" not in raw["tokens"]["B"]
    assert services.channel_items.mark(connection_id, "needs_reauth") == ("101", "urn:x.2")
    assert {c.status for c in services.channel_items.index(connection_id).channels} == {"needs_reauth"}
    status, _ = call("DELETE", "/owners/owner-1/connections")
    assert status == 202
    run_jobs()
    assert services.connections.get(connection_id) is None
    keys = [i["connection_id"]["S"] for i in table.scan(TableName=stack.env["CONNECTIONS_TABLE"])["Items"]]
    assert not [k for k in keys if k.startswith((CHANNEL_PREFIX, CHANNELS_PREFIX))], keys
