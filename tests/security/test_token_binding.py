"""Attacks with write access to the Connections table (which the public callback and webhook roles have): an old
ciphertext written back over newer tokens, an item moved to another owner. Neither is ever served, to the app or
to TikTok, and each raises the integrity metric its alarm reads. A table seeded with format-1 items, as every
stack deployed before holds them, keeps working, and each item is sealed as format 2 by its next write."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from oauth_keeper import root

from local import apigw
from tests.integration.test_alarm_metrics import emf_metrics
from tests.integration.test_connect_confirmation import claim, confirming, finish_connect  # noqa: F401 - fixture
from tests.security.support import connection_item
from tests.security.test_stored_data import connect, open_stored
from tests.v1_tokens import seal_v1

pytestmark = pytest.mark.integration


def overwrite(connection_id: str, **values: Any) -> None:
    """What a role with dynamodb:UpdateItem on the table can do: set attributes, nothing else checked."""
    names = {f"#a{i}": name for i, name in enumerate(values)}
    boto3.client("dynamodb").update_item(
        TableName=os.environ["CONNECTIONS_TABLE"], Key={"connection_id": {"S": connection_id}},
        UpdateExpression="SET " + ", ".join(f"{n} = :v{i}" for i, n in enumerate(names)),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":v{i}": value for i, value in enumerate(values.values())})


def token_route(connection_id: str, owner_id: str) -> dict[str, Any]:
    return apigw.invoke("GET", f"/connections/{connection_id}/token", raw_query=f"owner_id={owner_id}")


def integrity_failures(out: str) -> float:
    """How many TokenIntegrityFailures the handlers' EMF output counts (Powertools writes a list of values)."""
    values = [d["TokenIntegrityFailures"] for d in emf_metrics(out).get("TokenIntegrityFailures", [])]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_an_old_ciphertext_written_back_is_never_served(stack, tiktok, clock, capfd):
    alice = connect(tiktok, "owner-1", "alice")
    old_blob = connection_item(alice)["tokens"]["B"]
    old_access = open_stored(alice)["access_token"]
    clock.advance(3 * 3600)
    assert root.container().refresher.refresh(alice, force=True).result == "refreshed"
    new_access = open_stored(alice)["access_token"]
    assert new_access != old_access and connection_item(alice)["token_version"]["N"] == "2"

    overwrite(alice, tokens={"B": old_blob})  # the item's token_version still says 2
    capfd.readouterr()
    answer = token_route(alice, "owner-1")
    assert answer["statusCode"] == 500, answer
    assert json.loads(answer["body"])["error"]["code"] == "token_unreadable"
    assert old_access not in json.dumps(answer) and new_access not in json.dumps(answer)
    assert integrity_failures(capfd.readouterr().out) >= 1


def test_an_old_ciphertext_written_back_is_never_sent_to_tiktok(stack, tiktok, clock):
    """The old blob's refresh token was rotated away: presenting it would make TikTok revoke the whole grant (a
    replayed refresh token may be stolen) and the user would be told to reconnect for it."""
    alice = connect(tiktok, "owner-1", "alice")
    old_blob = connection_item(alice)["tokens"]["B"]
    clock.advance(3 * 3600)
    assert root.container().refresher.refresh(alice, force=True).result == "refreshed"
    overwrite(alice, tokens={"B": old_blob})
    before = tiktok.stats["token_requests"]
    clock.advance(3 * 3600)
    root.container().refresher.refresh(alice, force=True)
    assert tiktok.stats["token_requests"] == before  # nothing was sent
    item = connection_item(alice)
    assert item["status"]["S"] == "needs_reauth" and item["status_reason"]["S"] == "token_unreadable"
    assert tiktok.grants_for(tiktok.users["alice"].open_id), "the grant at TikTok is still alive"


def test_an_item_moved_to_another_owner_does_not_serve_its_tokens_there(stack, tiktok, capfd):
    alice = connect(tiktok, "owner-1", "alice")
    access = open_stored(alice)["access_token"]
    overwrite(alice, owner_id={"S": "owner-2"})
    capfd.readouterr()
    answer = token_route(alice, "owner-2")
    assert answer["statusCode"] == 500, answer
    assert json.loads(answer["body"])["error"]["code"] == "token_unreadable"
    assert access not in json.dumps(answer)
    assert integrity_failures(capfd.readouterr().out) >= 1


def test_an_item_moved_to_another_account_does_not_serve_its_tokens(stack, tiktok):
    alice = connect(tiktok, "owner-1", "alice")
    bob = connect(tiktok, "owner-1", "bob")
    overwrite(alice, account_id={"S": connection_item(bob)["account_id"]["S"]})
    answer = token_route(alice, "owner-1")
    assert answer["statusCode"] == 500 and json.loads(answer["body"])["error"]["code"] == "token_unreadable"


@pytest.mark.usefixtures("confirming")
def test_a_pending_grant_moved_to_another_owner_cannot_be_claimed_by_it(stack, tiktok, browser, capfd):
    """The callback's role writes pending grants: rewriting one's owner must not let that owner claim it. The grant
    is discarded for what it is (`token_unreadable`), not as a code that ran out of time."""
    from oauth_keeper.domain.claims import pending_key

    code = finish_connect(browser, tiktok, owner_id="owner-1")["claim"][0]
    overwrite(pending_key(code), owner_id={"S": "owner-2"})
    capfd.readouterr()
    status, body = claim(code, "owner-2")
    assert status == 410 and body["error"]["code"] == "claim_used", body
    assert integrity_failures(capfd.readouterr().out) >= 1
    assert call_list("owner-2") == []
    failed = [e["detail"] for e in stack.received_events() if e["detail-type"] == "Connection Confirmation Failed"]
    assert [d["reason"] for d in failed] == ["token_unreadable"]


def call_list(owner_id: str) -> list[dict[str, Any]]:
    answer = apigw.invoke("GET", "/connections", raw_query=f"owner_id={owner_id}")
    return json.loads(answer["body"])["connections"]


def seed_v1(connection_id: str) -> dict[str, Any]:
    """Re-seal the item's tokens exactly as the version before issue 13 wrote them (format 1); returns them."""
    tokens = open_stored(connection_id)
    item = connection_item(connection_id)
    blob = seal_v1(boto3.client("kms"), os.environ["TOKEN_KEY_ARN"], tokens, connection_id=connection_id,
                   provider=item["provider"]["S"])
    overwrite(connection_id, tokens={"B": blob})
    return tokens


def test_a_table_of_v1_items_is_served_refreshed_and_resealed_as_v2(stack, tiktok, clock):
    seeded = {cid: None for cid in (connect(tiktok, "owner-1", "alice"), connect(tiktok, "owner-2", "bob"),
                                    connect(tiktok, "owner-3", "alice"))}
    for cid in seeded:
        seeded[cid] = seed_v1(cid)
    root.reset()  # a new deployment's cold containers: nothing cached from the seeding
    from local.stack import install_from_env

    install_from_env(clock=clock)
    owners = {cid: connection_item(cid)["owner_id"]["S"] for cid in seeded}

    for cid, tokens in seeded.items():
        assert connection_item(cid)["tokens"]["B"][0] == 1
        answer = token_route(cid, owners[cid])
        assert answer["statusCode"] == 200, answer
        assert json.loads(answer["body"])["access_token"] == tokens["access_token"]

    clock.advance(3 * 3600)
    for cid, tokens in seeded.items():
        # the refresh sends the v1 blob's refresh token and writes the answer back as v2
        assert root.container().refresher.refresh(cid, force=True).result == "refreshed"
        item = connection_item(cid)
        assert item["tokens"]["B"][0] == 2 and item["token_version"]["N"] == "2"
        answer = json.loads(token_route(cid, owners[cid])["body"])
        assert answer["access_token"] not in (tokens["access_token"], "")
    assert tiktok.stats["refresh_reuses"] == 0


def test_new_data_keys_unwrap_only_with_the_stacks_encryption_context(stack, tiktok):
    alice = connect(tiktok, "owner-1", "alice")
    blob = connection_item(alice)["tokens"]["B"]
    wrapped = blob[3: 3 + int.from_bytes(blob[1:3], "big")]
    kms = boto3.client("kms")
    with pytest.raises(ClientError, match="InvalidCiphertext"):
        kms.decrypt(CiphertextBlob=wrapped, KeyId=os.environ["TOKEN_KEY_ARN"])
    from oauth_keeper.adapters.kms import encryption_context

    context = encryption_context(os.environ["STACK_NAME"])
    assert context == {"purpose": "oauth-keeper/tokens", "stack": "oauth-keeper-local"}
    assert kms.decrypt(CiphertextBlob=wrapped, KeyId=os.environ["TOKEN_KEY_ARN"], EncryptionContext=context)
    assert blob[0] == 2
