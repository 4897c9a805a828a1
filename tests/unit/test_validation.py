import pytest
from oauth_keeper.domain.errors import InvalidInput
from oauth_keeper.domain.schedule import due_shard, next_refresh_at
from oauth_keeper.domain.validation import checked_return_to, normalize_origin, parse_connect_request, parse_json_object
from oauth_keeper.http.requests import parse_query
from oauth_keeper.usecases.connect import flow_cookie_name, with_query

pytestmark = pytest.mark.unit
ALLOWED = frozenset({"https://app.example.com", "http://127.0.0.1:3000"})


@pytest.mark.parametrize("url", [
    "https://app.example.com/settings/connections",
    "https://APP.example.com:443/x?tab=social",
    "http://127.0.0.1:3000/",
])
def test_allow_listed_return_to_is_accepted(url):
    assert checked_return_to(url, ALLOWED) == url


@pytest.mark.parametrize("url", [
    "https://evil.example.net/",
    "https://app.example.com.evil.net/",
    "https://app.example.com@evil.net/",
    "https://user:pw@app.example.com/",
    "http://app.example.com/",  # scheme is part of the origin
    "https://app.example.com:8443/",
    "//app.example.com/x",
    "javascript:alert(1)//https://app.example.com",
    "https:\\\\evil.net\\app.example.com",
    "https://app.example.com\\@evil.net/",
    "https://evil.net%2f@app.example.com/",
    "https://app.example.com%2f.evil.net/",
    " https://app.example.com/",
    "https://app.example.com/\n",
    "https://app.example.com/#fragment",
    "https:///app.example.com",
    "https://app.example.com:99999/",
    "ftp://app.example.com/",
    "https://app.example.com/" + "a" * 3000,
])
def test_open_redirect_attempts_are_refused(url):
    with pytest.raises(InvalidInput) as refused:
        checked_return_to(url, ALLOWED)
    assert refused.value.field == "return_to"


def test_origins_normalize_like_a_browser():
    assert normalize_origin("HTTPS://App.Example.com:443/path") == "https://app.example.com"
    assert normalize_origin("http://127.0.0.1:3000") == "http://127.0.0.1:3000"


@pytest.mark.parametrize(("body", "field"), [
    ({"provider": "tiktok", "return_to": "https://app.example.com/"}, "owner_id"),
    ({"owner_id": "", "provider": "tiktok", "return_to": "https://app.example.com/"}, "owner_id"),
    ({"owner_id": "a b", "provider": "tiktok", "return_to": "https://app.example.com/"}, "owner_id"),
    ({"owner_id": "x" * 129, "provider": "tiktok", "return_to": "https://app.example.com/"}, "owner_id"),
    ({"owner_id": "u1", "provider": 3, "return_to": "https://app.example.com/"}, "provider"),
    ({"owner_id": "u1", "provider": "tiktok"}, "return_to"),
    ({"owner_id": "u1", "provider": "tiktok", "return_to": "https://app.example.com/", "scopes": []}, "scopes"),
    ({"owner_id": "u1", "provider": "tiktok", "return_to": "https://app.example.com/", "scopes": ["a b"]},
     "scopes"),
    ({"owner_id": "u1", "provider": "tiktok", "return_to": "https://app.example.com/", "extra": 1}, "extra"),
])
def test_invalid_connect_requests_name_the_field(body, field):
    with pytest.raises(InvalidInput) as refused:
        parse_connect_request(body)
    assert refused.value.field == field


@pytest.mark.parametrize("raw", [None, "", "[1,2]", "{not json", b"\xff\xfe", "x" * 9000])
def test_bodies_must_be_small_json_objects(raw):
    with pytest.raises(InvalidInput):
        parse_json_object(raw)


def test_query_is_decoded_once_and_repeats_are_kept():
    query = parse_query("code=ab%2A%21~%25cd&state=s1&state=s2&scopes=user.info.basic%2Cvideo.list")
    assert query["code"] == ["ab*!~%cd"]
    assert query["state"] == ["s1", "s2"]
    assert query["scopes"] == ["user.info.basic,video.list"]


def test_query_with_too_many_parameters_is_refused():
    with pytest.raises(InvalidInput):
        parse_query("&".join(f"k{i}=v" for i in range(60)))


def test_return_to_keeps_its_own_query():
    assert with_query("https://app.example.com/cb?tab=social", {"status": "connected", "connection_id": "c1"}) \
        == "https://app.example.com/cb?tab=social&status=connected&connection_id=c1"


def test_flow_cookie_is_host_prefixed_per_flow_and_does_not_reveal_the_state():
    a, b = flow_cookie_name("state-a"), flow_cookie_name("state-b")
    assert a.startswith("__Host-") and a != b and "state-a" not in a


def test_refresh_is_scheduled_before_expiry_by_the_larger_margin():
    issued = 1_000_000
    # 2 h token: 20% is 24 min > 15 min
    at = next_refresh_at(issued, issued + 7200)
    assert issued + 7200 - 24 * 60 - 120 <= at <= issued + 7200 - 24 * 60
    # 24 h token: 20% is 4.8 h
    day = next_refresh_at(issued, issued + 86400)
    assert issued + 86400 - int(86400 * 0.2) - 120 <= day <= issued + 86400 - int(86400 * 0.2)
    # 30 min token: the 15-minute floor wins
    short = next_refresh_at(issued, issued + 1800)
    assert issued + 1800 - 900 - 90 <= short <= issued + 900
    assert next_refresh_at(issued, None) is None


def test_due_shards_are_stable_and_spread():
    shards = {due_shard(f"con_{i}", 16) for i in range(500)}
    assert shards == set(range(16))
    assert due_shard("con_x", 16) == due_shard("con_x", 16)


@pytest.mark.parametrize(("changes", "field"), [
    ({"owner_id": "user-1\n"}, "owner_id"), ({"scopes": ["video.list\n"]}, "scopes"),
])
def test_a_trailing_newline_never_passes_as_a_valid_id_or_scope(changes, field):
    """`$` in a Python pattern matches before a final newline: every check is a full match."""
    body = {"owner_id": "user-1", "provider": "tiktok", "return_to": "https://app.example.com/x", **changes}
    with pytest.raises(InvalidInput) as refused:
        parse_connect_request(body)
    assert refused.value.field == field


def test_an_owner_id_with_a_trailing_newline_cannot_list_or_erase(monkeypatch):
    from oauth_keeper.usecases.connections import ConnectionQueries
    from oauth_keeper.usecases.disconnect import Disconnection

    with pytest.raises(InvalidInput):
        ConnectionQueries(connections=None, clock=None).list("user-1\n", None, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Disconnection(connections=None, items=None, profiles=None, credentials=None, provider=None,  # type: ignore[arg-type]
                      outbox=None, clock=None).request_erasure("user-1\n")
