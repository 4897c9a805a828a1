"""The callback's SAVE_RESERVE and ENRICH_MIN (usecases/connect.py, domain/deadlines.py), and ENRICH_MIN in the
refresher's deferred enrichment (`Refresher._enrich_later`): the code exchange must end SAVE_RESERVE before the
deadline; the grant is stored whatever time the exchange left; the display name is fetched only with at least
ENRICH_MIN left, else deferred (`profile_pending`) to the next committed refresh, which applies the same rule.

Time is the injected ManualClock: a scripted provider call moves it by how long the call "took".
"""

from __future__ import annotations

from typing import Any

import pytest
from oauth_keeper.domain.connection import ACTIVE
from oauth_keeper.domain.deadlines import ENRICH_MIN, SAVE_RESERVE
from oauth_keeper.domain.events import CREATED
from oauth_keeper.domain.providers import ProviderProfile
from oauth_keeper.domain.tokens import TokenSet, UserProfile
from oauth_keeper.usecases.connect import Callback, CallbackResult, flow_cookie_name
from oauth_keeper.usecases.refresh import REFRESHED

from local.memory import StaticCredentials, no_sleep
from tests.unit import test_callback, test_refresh_decisions
from tests.unit.test_callback import NONCE, OWNER, STATE, tokens

pytestmark = pytest.mark.unit


def test_the_budgets_are_the_documented_ones():
    assert (SAVE_RESERVE, ENRICH_MIN) == (1.5, 3.0)


# -- the callback ------------------------------------------------------------------------------------------------
class SlowExchange(test_callback.ScriptedProvider):
    """The callback's scripted provider, whose code exchange takes `takes` seconds of the shared clock and
    records the deadline it was given."""

    def __init__(self, world: test_callback.World, takes: float) -> None:
        super().__init__()
        self._world, self._takes = world, takes
        self.deadlines: list[float | None] = []

    def exchange_code(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> TokenSet:
        self.deadlines.append(deadline)
        self._world.clock.advance(self._takes)
        return super().exchange_code(*args, deadline=deadline, **kwargs)

    def users_fetched(self) -> int:
        return len([c for c in self.calls if c[0] == "fetch_user"])


class CallbackWorld(test_callback.World):
    def __init__(self, exchange_takes: float = 0.0) -> None:
        super().__init__()
        self.provider = SlowExchange(self, exchange_takes)
        self.callback = Callback(flows=self.flows, profiles=self.profiles,
                                 credentials=StaticCredentials({"client_key": "ck", "client_secret": "cs"}),
                                 provider=self.provider, connections=self.store, outbox=self.outbox,
                                 clock=self.clock, sleep=no_sleep)

    def complete_by(self, deadline_in: float | None) -> CallbackResult:
        """The callback for acct-1's code, with `deadline_in` seconds left (None: no deadline)."""
        self.start()
        self.provider.exchanges.append(tokens("acct-1"))
        deadline = None if deadline_in is None else self.now + deadline_in
        return self.callback.complete("tiktok", {"state": [STATE], "code": ["code-1"]},
                                      {flow_cookie_name(STATE): NONCE}, deadline=deadline)


@pytest.mark.parametrize(("deadline_in", "exchange_deadline_in"), [(9.0, 9.0 - 1.5), (4.0, 4.0 - 1.5), (None, None)])
def test_the_code_exchange_must_end_save_reserve_before_the_deadline(deadline_in, exchange_deadline_in):
    world = CallbackWorld()
    start = world.now
    assert world.complete_by(deadline_in).params["status"] == "connected"
    expected = None if exchange_deadline_in is None else start + exchange_deadline_in
    assert world.provider.deadlines == [expected]


def test_an_exchange_that_left_less_than_save_reserve_still_stores_the_grant_and_defers_the_profile():
    """What the code does with SAVE_RESERVE: it only shortens the exchange's deadline. Nothing checks the time left
    after the exchange: the code is spent, so the grant is stored anyway (and the Created event sent); the display
    name, with less than ENRICH_MIN left, is deferred."""
    world = CallbackWorld(exchange_takes=8.5)  # of 9 s: 0.5 s left, less than SAVE_RESERVE
    result = world.complete_by(9.0)
    assert result.params["status"] == "connected"
    stored = world.store.find(OWNER, "tiktok", "acct-1")
    assert stored.status == ACTIVE and stored.profile_pending and stored.display_name is None
    assert world.provider.users_fetched() == 0
    assert [e["detail_type"] for e in world.publisher.events] == [CREATED]


def test_with_enrich_min_left_after_the_save_the_callback_fetches_the_display_name():
    world = CallbackWorld(exchange_takes=6.0)  # of 9 s: exactly ENRICH_MIN left
    assert world.complete_by(9.0).params["status"] == "connected"
    stored = world.store.find(OWNER, "tiktok", "acct-1")
    assert world.provider.users_fetched() == 1
    assert stored.display_name == "Creator One" and not stored.profile_pending


def test_with_less_than_enrich_min_left_the_callback_defers_the_display_name():
    world = CallbackWorld(exchange_takes=6.1)  # of 9 s: 2.9 s left
    assert world.complete_by(9.0).params["status"] == "connected"
    stored = world.store.find(OWNER, "tiktok", "acct-1")
    assert world.provider.users_fetched() == 0
    assert stored.profile_pending and stored.display_name is None


def test_without_a_deadline_the_callback_fetches_the_display_name():
    world = CallbackWorld()
    world.complete_by(None)
    assert world.provider.users_fetched() == 1


# -- the refresher: the deferred profile, after the commit ------------------------------------------------------------
class ProfileProvider(test_refresh_decisions.ScriptedProvider):
    """The refresher's scripted provider, answering user info too (and recording the access tokens it got)."""

    def __init__(self) -> None:
        super().__init__()
        self.users: list[str] = []

    def fetch_user(self, profile: ProviderProfile, access_token: str, *,
                   deadline: float | None = None) -> UserProfile:
        self.users.append(access_token)
        return UserProfile(account_id="acct-1", display_name="Creator One", avatar_url="https://cdn.example/a.jpg")


def refreshed_with_time_left(deadline_in: float | None, refresh_takes: float):
    """A connection whose profile the callback deferred, refreshed with `deadline_in` seconds left; the provider
    call and the commit take `refresh_takes` of them."""
    world = test_refresh_decisions.World()
    world.provider = ProfileProvider()
    world.refresher = world.worker()
    cid = world.connect()
    world.store.mark_profile_pending(cid)
    deadline = None if deadline_in is None else world.now + deadline_in

    def slow_answer() -> TokenSet:
        world.clock.advance(refresh_takes)
        return world.answer("2")

    world.provider.script(slow_answer)
    assert world.refresher.refresh(cid, force=True, deadline=deadline).result == REFRESHED
    return world, world.at(cid)


def test_a_refresh_with_enrich_min_left_after_its_commit_fetches_the_deferred_profile():
    world, stored = refreshed_with_time_left(25, 22)  # exactly ENRICH_MIN left
    assert world.provider.users == ["at-2"]  # with the new access token
    assert stored.display_name == "Creator One" and not stored.profile_pending


def test_a_refresh_with_less_than_enrich_min_left_leaves_the_profile_pending():
    world, stored = refreshed_with_time_left(25, 23)  # 2 s left
    assert world.provider.users == []
    assert stored.profile_pending and stored.display_name is None


def test_a_refresh_without_a_deadline_fetches_the_deferred_profile():
    world, stored = refreshed_with_time_left(None, 60)
    assert world.provider.users == ["at-2"] and not stored.profile_pending


def test_a_refresh_with_less_than_enrich_min_left_to_the_fraction_of_a_second_leaves_the_profile_pending():
    world, stored = refreshed_with_time_left(25, 22.6)  # 2.4 s left, though int(now) makes it 3
    assert world.provider.users == [] and stored.profile_pending
