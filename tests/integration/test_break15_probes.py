"""Attacks on the provider profiles, channels and the connect chain (review of issue 15): each test is a finding."""

from __future__ import annotations

import pytest

from tests.integration.test_backend_api import call, connect


@pytest.mark.integration
def test_a_listing_of_200_channels_with_long_emoji_names_is_stored_in_dynamodb(stack, tiktok, browser):
    """A hostile (or merely emoji-loving) provider: 200 Pages whose names are 200 astral characters each. The
    index item must stay under DynamoDB's 400 KB item limit, or no listing of that grant is ever stored."""
    from oauth_keeper import root
    from oauth_keeper.domain.channels import ListedChannel, Listing

    connection_id = connect(browser, tiktok)["connection_id"][0]
    services = root.container()
    connection = services.connections.get(connection_id)
    name = "\U0001F600" * 200
    listing = Listing(tuple(ListedChannel("9" * 120 + f"{n:03d}", name, None) for n in range(200)))
    services.channel_items.save(connection, listing, now=1_800_000_000)
    index = services.channel_items.index(connection_id)
    assert index is not None and len(index.channels) == 200 and index.channels[0].name == name
    status, body = call("GET", f"/connections/{connection_id}/channels", raw_query="owner_id=owner-1")
    assert status == 200 and len(body["channels"]) == 200


@pytest.mark.integration
def test_names_with_lone_surrogates_and_c1_controls_are_cleaned_and_stored(stack, tiktok, browser):
    """JSON lets a provider send `\\ud800` (a lone surrogate, not encodable as UTF-8) and C1 controls; neither may
    stop the listing from being stored nor reach the API's answer."""
    import json

    from oauth_keeper import root
    from oauth_keeper.domain.channels import Listing, read_page
    from oauth_keeper.domain.providers import profile_for

    connection_id = connect(browser, tiktok)["connection_id"][0]
    services = root.container()
    connection = services.connections.get(connection_id)
    fields = profile_for("facebook_pages", ("facebook_pages",), {}).channels
    body = json.loads('{"data": [{"id": "1", "name": "Caf\\u00e9\\ud800 \\u0085Page\\u009b", "access_token": "pt"}]}')
    page = read_page(fields, body)
    services.channel_items.save(connection, Listing(page.channels), now=1_800_000_000)
    status, answer = call("GET", f"/connections/{connection_id}/channels", raw_query="owner_id=owner-1")
    assert status == 200 and answer["channels"][0]["name"] == "Café Page"


def _listing_during(world, monkeypatch, meanwhile):
    """Run `meanwhile` while the provider answers the next channel list (a slow Graph answer: up to 5 s)."""
    provider = world.services.provider
    original = provider.list_channels

    def slow_list(*args, **kwargs):
        listing = original(*args, **kwargs)
        monkeypatch.setattr(provider, "list_channels", original)
        meanwhile()
        return listing

    monkeypatch.setattr(provider, "list_channels", slow_list)


@pytest.mark.unit
def test_a_disconnect_during_a_refreshs_listing_leaves_no_channel_token(monkeypatch):
    from tests.integration.test_channels import CHANNEL_PREFIX, connected, items_of, world_of

    world = world_of("facebook_pages")
    connection_id = connected(world)
    world.clock.advance(2 * 86_400)  # the listing is a day old: the refresh lists the Pages again

    def disconnect():
        world.services.disconnection.request_disconnect(connection_id, owner_id="owner")
        world.tick()
        assert world.get(connection_id).status == "disconnected"

    _listing_during(world, monkeypatch, disconnect)
    assert world.services.refresher.refresh(connection_id, force=True).result == "refreshed"
    assert world.get(connection_id).status == "disconnected"
    assert items_of(world, CHANNEL_PREFIX) == []  # no Page token outlives the disconnect


@pytest.mark.unit
def test_an_erasure_during_a_listing_leaves_no_channel_item(monkeypatch):
    from tests.integration.test_channels import CHANNEL_PREFIX, CHANNELS_PREFIX, connected, items_of, world_of

    world = world_of("facebook_pages")
    connection_id = connected(world)
    world.services.items.delete(f"{CHANNELS_PREFIX}{connection_id}", expect={})
    for item in items_of(world, CHANNEL_PREFIX):
        world.services.items.delete(item["connection_id"], expect={})

    def erase():
        world.services.disconnection.request_erasure("owner")
        for _ in range(3):
            world.clock.advance(60)
            world.tick()
        assert world.services.connections.get(connection_id) is None

    _listing_during(world, monkeypatch, erase)
    world.services.channels.view(connection_id, "owner")  # never listed (its items lost): listed on first read
    assert items_of(world, CHANNEL_PREFIX) == [] and items_of(world, CHANNELS_PREFIX) == []


@pytest.mark.unit
# Found by the break-test of issue 15: the chain's and the extension's own lifetime bounds (a step's
# `access_lifetime`) give a long-lived token answered without expires_in Meta's documented 60 days, not an hour.
@pytest.mark.parametrize("name", ["instagram", "threads"])
def test_a_long_lived_token_answered_without_expires_in_stays_alive(name):
    from local.sim_provider import DAY
    from tests.integration.test_channels import world_of

    world = world_of(name)
    chain = world.provider._chain

    def without_expiry(*args, **kwargs):
        status, body = chain(*args, **kwargs)
        return status, {k: v for k, v in body.items() if k != "expires_in"}

    world.provider._chain = without_expiry
    result = world.connect("ana")
    assert result["status"] == "connected", result
    world.run_until(world.clock.now() + 3 * DAY)
    assert world.get(result["connection_id"]).status == "active"


@pytest.mark.unit
def test_a_refused_listing_is_not_asked_again_by_every_channel_read():
    """LinkedIn refuses the organization list to a member without the organization scopes (the default scopes):
    each `GET /connections/{id}/channels` called LinkedIn again, so a backend polling its channels spent the app's
    LinkedIn quota. A refusal is remembered for an hour; a reconnect lists at once."""
    from oauth_keeper.usecases.channels import REFUSED_RETRY_AFTER

    from tests.integration.test_channels import connected, world_of

    world = world_of("linkedin")
    refused = {"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED", "message": "Not enough permissions"}
    for _ in range(10):
        world.provider.fail_next("channels", 403, refused)
    connection_id = connected(world)
    for _ in range(5):
        assert world.services.channels.view(connection_id, "owner")["channels"] == []
    assert len(world.provider.sent("channels")) == 1  # the connect's
    world.clock.advance(REFUSED_RETRY_AFTER)
    world.services.channels.view(connection_id, "owner")
    assert len(world.provider.sent("channels")) == 2
    world.provider.faults.clear()
    assert connected(world) == connection_id  # the user reconnects (say, with the organization scopes)
    assert [c["channel_id"] for c in world.services.channels.view(connection_id, "owner")["channels"]]


@pytest.mark.unit
def test_channel_listings_log_no_token_even_when_they_go_wrong(capfd, caplog):
    """Graph takes the user token in the list's query and puts it in its `paging.next` URL; Page tokens come in the
    answer. However the listing goes (pages, an error page echoing the token, a foreign next link, a crash), no
    user token, Page token or client secret reaches a log line."""
    import logging
    from urllib.parse import quote

    from oauth_keeper.observability import logger

    from tests.integration.test_channels import connected, world_of

    caplog.set_level(logging.DEBUG)
    logger.setLevel(logging.DEBUG)
    world = world_of("facebook_pages")
    world.provider.quirks.channels_page_size = 1
    connection_id = connected(world)
    user_token = world.tokens(connection_id)["access_token"]
    world.clock.advance(2 * 86_400)
    world.provider.fail_next("channels", 400, {"error": {"code": 100, "message": f"bad token {user_token}"}})
    world.services.refresher.refresh(connection_id, force=True)
    world.clock.advance(2 * 86_400)
    world.provider.fail_next("channels", 200, {"data": [{"id": "1", "access_token": "pt-leak"}],
                                               "paging": {"next": f"https://evil.example/?access_token={user_token}"}})
    world.services.refresher.refresh(connection_id, force=True)
    for channel in world.services.channels.view(connection_id, "owner")["channels"]:
        world.services.tokens.token_for(connection_id, None, owner_id="owner", channel_id=channel["channel_id"])
    world.services.disconnection.request_disconnect(connection_id, owner_id="owner")
    world.tick()
    secrets = [user_token, world.tokens(connection_id).get("access_token") or user_token, "pt-leak",
               world.provider.client_secret, *world.provider.channel_tokens]
    out, err = capfd.readouterr()
    logged = out + err + "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert logged  # something was logged
    leaked = [s[:12] for s in secrets if s and (s in logged or quote(s, safe="") in logged)]
    assert leaked == []


@pytest.mark.unit
def test_page_tokens_are_never_derived_from_the_short_lived_token_of_an_unfinished_chain():
    """Meta: a Page token derived from a short-lived user token lives an hour; from a long-lived one it does not
    expire. A connect whose chain link ran in the background listed the Pages with the short-lived token, and the
    link's completion did not list them again (a listing less than a day old stands): the token route served the
    hour-long Page tokens with `expires_at: null` until the next re-exchange, weeks later."""
    from tests.integration.test_channels import world_of

    world = world_of("facebook_pages")
    derived_with: dict[str, str] = {}  # Page token -> the user token its listing was sent with
    answer_channels = world.provider._channels

    def recording(shape, request, params):
        status, body = answer_channels(shape, request, params)
        for item in (body.get("data") or []) if isinstance(body, dict) else []:
            derived_with[item["access_token"]] = params.get("access_token", "")
        return status, body

    world.provider._channels = recording
    world.provider.fail_next("chain", 503, {"error": {"code": 2, "message": "Service temporarily unavailable"}})
    result = world.connect("alice", "owner")
    assert (result["status"], result.get("status_reason")) == ("connected", "connect_finishing"), result
    connection_id = result["connection_id"]
    short_lived = world.tokens(connection_id)["access_token"]
    for _ in range(3):
        world.clock.advance(60)
        world.tick()
    connection = world.get(connection_id)
    assert connection.chain_next is None and connection.status == "active"
    long_lived = world.tokens(connection_id)["access_token"]
    assert long_lived != short_lived
    pages = world.services.channels.view(connection_id, "owner")["channels"]
    assert pages
    for page in pages:
        served = world.services.tokens.token_for(connection_id, None, owner_id="owner",
                                                 channel_id=page["channel_id"])["access_token"]
        assert derived_with[served] == long_lived


@pytest.mark.unit
@pytest.mark.parametrize("name", ["instagram", "facebook_pages", "threads"])
@pytest.mark.parametrize(("error", "result", "reason"), [
    ({"code": 4, "message": "Application request limit reached", "type": "OAuthException"}, "retrying",
     "rate_limited"),
    ({"code": 17, "message": "User request limit reached"}, "retrying", "rate_limited"),
    ({"code": 2, "message": "Service temporarily unavailable"}, "retrying", "provider_unavailable"),
    ({"code": 190, "error_subcode": 460, "message": "Password changed"}, "needs_reauth", "invalid_grant"),
])
def test_metas_error_codes_in_a_400_map_to_their_lifecycle(name, error, result, reason):
    """The issue's named error classes, as Meta sends them (HTTP 400 whatever the class): the conformance suite
    only sent RFC 6749 shapes (429, 503, the dead grant)."""
    from tests.conformance.test_provider_conformance import connected, to_due, world_of

    world = world_of(name)
    connection_id = connected(world, "ana")
    to_due(world, connection_id)
    world.provider.fail_next("refresh", 400, {"error": error})
    outcome = world.services.refresher.refresh(connection_id, force=True)
    assert (outcome.result, outcome.reason) == (result, reason)


@pytest.mark.unit
def test_linkedins_brief_revoked_access_token_right_after_a_grant_is_a_retryable_connect_failure():
    """LinkedIn answers REVOKED_ACCESS_TOKEN (65601) for a moment right after a grant: at connect it is transient
    (the user is told to try again, nothing stored); later, on a refresh, the same code means the grant is gone."""
    from local.sim_provider import LINKEDIN_REVOKED
    from tests.conformance.test_provider_conformance import connected, to_due, world_of

    world = world_of("linkedin")
    world.provider.fail_next("userinfo", *LINKEDIN_REVOKED)
    first = world.connect("ana")
    assert (first["status"], first.get("retryable")) == ("error", "true"), first
    assert world.connections() == []
    connection_id = connected(world, "ana")  # the user tries again a moment later
    to_due(world, connection_id)
    world.provider.fail_next("refresh", *LINKEDIN_REVOKED)
    assert world.services.refresher.refresh(connection_id, force=True).result == "needs_reauth"


@pytest.mark.unit
# Found by the break-test of issue 15: a kept refresh token's hard cap counts from its own consent
# (`grant_consented_at`), not from the reconnect that kept it.
def test_a_reconnect_that_keeps_the_stored_refresh_token_keeps_its_hard_cap():
    from oauth_keeper.domain import events

    from local.sim_provider import DAY
    from tests.conformance.test_provider_conformance import connected, world_of

    world = world_of("youtube", overrides={"app_status": "testing"}, expiry_warning=2 * DAY)
    connection_id = connected(world, "ana")
    consented = world.clock.now()
    world.run_until(consented + 4 * DAY)
    world.provider.quirks.omit_refresh_on_next_code = True  # the re-consent brings no refresh token
    assert connected(world, "ana") == connection_id
    world.run_until(consented + 7 * DAY - 1)
    assert len(world.events(events.EXPIRING)) == 1  # warned ahead of the kept token's own cap
    world.run_until(consented + 8 * DAY)
    connection = world.get(connection_id)
    assert (connection.status, connection.status_reason) == ("needs_reauth", "refresh_token_expired")
    assert all(call.status == 200 for call in world.provider.sent("refresh"))  # nothing sent past the cap


@pytest.mark.unit
@pytest.mark.parametrize("landing_last", ["first", "second"])
def test_two_listings_at_once_leave_no_token_item_a_disconnect_cannot_find(monkeypatch, landing_last):
    """Two listings of one connection at once (a refresh's and a first channel read's) both took generation n+1,
    and the index landing last dropped the other's `writing` list: a token item only the other listed was named
    nowhere, and a disconnect or an erasure left it behind for good."""
    from oauth_keeper.domain.channels import ListedChannel, Listing

    from tests.integration.test_channels import CHANNEL_PREFIX, CHANNELS_PREFIX, connected, items_of, world_of

    world = world_of("facebook_pages")
    connection_id = connected(world)
    connection = world.get(connection_id)
    store, items = world.services.channel_items, world.services.items
    update = items.update
    first = Listing(tuple(ListedChannel(str(n), None, f"pt-a{n}") for n in (1, 2, 3)))
    second = Listing(tuple(ListedChannel(str(n), None, f"pt-b{n}") for n in (1, 2)))
    interleaved = []

    outer, inner = (second, first) if landing_last == "second" else (first, second)
    # "second": the outer listing has read the index when the inner one's whole save lands; "first": the inner one
    # lands between the outer one's token writes and its index.
    moment = "writing" if landing_last == "second" else "generation"

    def other_listing_lands_meanwhile(key, *, set, remove=(), expect, **more):  # noqa: A002 - the port's own name
        if key.startswith(CHANNELS_PREFIX) and moment in set and not interleaved:
            interleaved.append(True)
            store.save(connection, inner, now=int(world.clock.now()))
        return update(key, set=set, remove=remove, expect=expect, **more)  # `add`, `returning` (the lease)

    monkeypatch.setattr(items, "update", other_listing_lands_meanwhile)
    with pytest.raises(RuntimeError):  # the outer listing is superseded: the inner one's index stands
        store.save(connection, outer, now=int(world.clock.now()))
    monkeypatch.setattr(items, "update", update)
    assert interleaved
    index = store.index(connection_id)
    assert [c.channel_id for c in index.channels] == [c.channel_id for c in inner.channels]
    for channel in index.channels:  # every token the index names opens
        assert store.open_token(connection, index, channel.channel_id)
    world.services.disconnection.request_disconnect(connection_id, owner_id="owner")
    world.tick()
    assert world.get(connection_id).status == "disconnected"
    assert items_of(world, CHANNEL_PREFIX) == []
