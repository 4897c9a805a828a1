"""Id guessing (issue 13, section 3): a caller allowed the per-connection routes, who knows an owner id and a
TikTok open_id, reads or changes nothing of that owner's connection.

Before, the id was derived from owner, provider and account (ADR 0010): computing it was enough to read the
token. Now ids are random (ADR 0018), and every per-connection route takes `owner_id` (the owner the caller acts
for): a connection of another owner is answered exactly as an unknown id, so an id learnt elsewhere is no way in
either, and the answer says nothing about whether it exists.
"""

from __future__ import annotations

import pytest
from oauth_keeper.domain.connection import derived_connection_id

from local import apigw
from tests.integration.test_audit import audited, error_level, the_record  # noqa: F401 - pytest fixtures
from tests.integration.test_backend_api import connect, item

pytestmark = pytest.mark.integration

ROUTES = [("GET", "/connections/{}"), ("GET", "/connections/{}/token"), ("POST", "/connections/{}/refresh"),
          ("DELETE", "/connections/{}")]
UNKNOWN = "con_" + "a" * 32


def answer(method: str, path: str, query: str = "") -> tuple[int, dict[str, str], str]:
    response = apigw.invoke(method, path, raw_query=query)
    return response["statusCode"], response["headers"], response["body"]


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_the_id_computed_from_owner_provider_and_open_id_names_no_connection(stack, tiktok, browser, method,
                                                                             route):
    real = connect(browser, tiktok)["connection_id"][0]
    guessed = derived_connection_id("owner-1", "tiktok", tiktok.users["alice"].open_id)  # what ADR 0010 gave
    before = item(real)
    assert answer(method, route.format(guessed)) == answer(method, route.format(UNKNOWN))
    assert answer(method, route.format(guessed))[0] == 404
    assert item(real) == before and tiktok.stats["refreshes"] == 0 and tiktok.stats["revocations"] == 0


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_another_owner_s_connection_is_answered_exactly_as_an_unknown_id_and_left_alone(stack, tiktok, browser,
                                                                                       method, route):
    victim = connect(browser, tiktok, user="alice", owner_id="owner-1")["connection_id"][0]
    connect(browser, tiktok, user="bob", owner_id="owner-2")  # the attacker's caller acts for owner-2
    before = item(victim)
    refused = answer(method, route.format(victim), "owner_id=owner-2")
    assert refused == answer(method, route.format(UNKNOWN), "owner_id=owner-2")
    status, _, body = refused
    assert status == 404 and '"code":"connection_not_found"' in body.replace(" ", "")
    assert item(victim) == before  # no refresh, no disconnect, not even a lease
    assert tiktok.stats["refreshes"] == 0 and tiktok.stats["revocations"] == 0
    # The owner's own caller is served as before, with or without owner_id.
    assert answer(method, route.format(victim), "owner_id=owner-1")[0] in (200, 202)


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_a_malformed_owner_id_is_refused_before_any_lookup(stack, tiktok, browser, method, route):
    victim = connect(browser, tiktok)["connection_id"][0]
    for query in ("owner_id=", "owner_id=a%20b", "owner_id=" + "x" * 129, "owner_id=owner-1&owner_id=owner-1"):
        status, _, body = answer(method, route.format(victim), query)
        assert status == 400 and '"field":"owner_id"' in body.replace(" ", ""), (query, body)
    assert answer(method, route.format(UNKNOWN), "owner_id=a%20b")[0] == 400  # the same for an unknown id


def test_a_read_of_another_owner_s_connection_is_audited_as_refused_with_the_owner_asked_for(
        audited, tiktok, browser):  # noqa: F811 - the fixture
    victim = connect(browser, tiktok)["connection_id"][0]
    assert answer("GET", f"/connections/{victim}/token", "owner_id=owner-2")[0] == 404
    _, records = audited()
    record = the_record(records, "token_read", connection_id=victim)
    assert record["outcome"] == "refused" and record["error_code"] == "connection_not_found"
    assert record["owner_id"] == "owner-2"  # who the caller acted for; never the victim's owner
