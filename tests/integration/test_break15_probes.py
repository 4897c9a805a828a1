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
