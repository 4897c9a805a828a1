"""The profiles' `channels` section: what the loader accepts and refuses, the `<NAME>_CHANNELS_URL` setting, and
how one answer page is read and bounded (`domain/channels.py read_page`)."""

from __future__ import annotations

import pytest
from oauth_keeper.domain.channels import read_page
from oauth_keeper.domain.providers import ChannelsFields, profile_for, profile_from_data, with_overrides

from tests.unit.test_profile_format import BASE

pytestmark = pytest.mark.unit
SECTION = {"url": "https://g.test/me/accounts", "token": "access_token"}


@pytest.mark.parametrize(("change", "message"), [
    ({"url": ""}, "needs a url"),
    ({"method": "POST"}, "method must be GET"),
    ({"roles": ["ADMINISTRATOR"]}, "go together"),
    ({"role_path": "role"}, "go together"),
    ({"max_items": 201}, "max_items"),
    ({"max_pages": 0}, "max_pages"),
    ({"id": "a..b"}, "dotted JSON path"),
    ({"token": "x y"}, "dotted JSON path or null"),
    ({"bearer": "yes"}, "bearer"),
])
def test_the_loader_refuses_a_channels_section_that_cannot_work(change, message):
    with pytest.raises(ValueError, match=message):
        profile_from_data({**BASE, "channels": {**SECTION, **change}})


def test_a_profile_without_the_section_lists_nothing_and_the_setting_needs_one():
    assert profile_from_data(BASE).channels is None
    with pytest.raises(ValueError, match="lists no channels"):
        with_overrides(profile_from_data(BASE), {"channels_url": "https://sim.test/c"})


def test_the_channels_url_setting_moves_the_listing_and_is_held_to_https():
    for name in ("facebook_pages", "linkedin", "youtube"):
        profile = profile_for(name, (name,), {name: {"channels_url": "http://sim.test/c"}})
        assert profile.channels.url == "http://sim.test/c"
        assert "channels_url" in profile.insecure_endpoints()


def page(fields: ChannelsFields, body, kept: int = 0):
    return read_page(fields, body, kept)


def test_roles_prefixes_tokens_and_names_are_read_as_the_profile_says():
    fields = profile_from_data({**BASE, "channels": {
        "url": "https://g.test/acl", "items": "elements", "id": "organizationalTarget",
        "id_prefix": "urn:li:organization:", "name": None, "role_path": "role",
        "roles": ["ADMINISTRATOR"]}}).channels
    body = {"elements": [
        {"organizationalTarget": "urn:li:organization:42", "role": "ADMINISTRATOR"},
        {"organizationalTarget": "urn:li:organization:43", "role": "ANALYST"},  # cannot post: skipped
        {"organizationalTarget": "urn:li:person:44", "role": "ADMINISTRATOR"},  # not an organization: refused
        {"organizationalTarget": "urn:li:organization:42", "role": "ADMINISTRATOR"},  # again: refused
    ]}
    listing = page(fields, body)
    assert [c.channel_id for c in listing.channels] == ["42"] and listing.refused == 2
    assert listing.channels[0].name is None and listing.channels[0].token is None


def test_a_number_id_is_read_as_text_and_kept_items_count_across_pages():
    fields = ChannelsFields(url="https://g.test/x", token="t", max_items=3)
    body = {"data": [{"id": n, "name": f"P{n}", "t": f"tok{n}"} for n in (1, 2, True)]}
    listing = page(fields, body, kept=2)
    assert [c.channel_id for c in listing.channels] == ["1"] and listing.truncated
    assert listing.refused == 0  # `True` is not an id, but the room ran out before it
