"""The token_type bound (domain/protocol.py MAX_TOKEN_TYPE_LENGTH, 32 ASCII letters and digits): a longer one is
an anomaly and becomes "Bearer", so a provider's overlong token_type is never stored (shown through a refresh by
the real HTTP client; the code exchange parses its answer with the same `token_answer`)."""

from __future__ import annotations

import httpx
import pytest
from oauth_keeper.domain.protocol import MAX_TOKEN_TYPE_LENGTH

from tests.unit.test_provider_answers import GOOD, answer
from tests.unit.test_retry_after import HttpWorld

pytestmark = pytest.mark.unit


def test_a_token_type_of_32_characters_is_kept():
    assert MAX_TOKEN_TYPE_LENGTH == 32
    tokens = answer(token_type="B" * 32)
    assert tokens.token_type == "B" * 32 and tokens.anomalies == ()


@pytest.mark.parametrize("length", [33, 4096, 100_000])
def test_a_longer_token_type_is_an_anomaly_and_becomes_bearer(length):
    tokens = answer(token_type="B" * length)
    assert tokens.token_type == "Bearer" and "token_type:invalid" in tokens.anomalies


def test_an_overlong_token_type_in_a_refresh_answer_is_never_stored():
    world = HttpWorld()
    cid = world.connect()
    world.answers.append(lambda request: httpx.Response(200, json={**GOOD, "open_id": "acct-1",
                                                                   "token_type": "B" * 5000}))
    assert world.refresher.refresh(cid, force=True).result == "refreshed"
    assert world.tokens(cid)["token_type"] == "Bearer"
