"""Break-test findings for issue 13, section 2: what a public role's permissions still let a flaw in that function
do to a connection (template.yaml's policies judged as data by tests/security/iam_policy.py)."""

from __future__ import annotations

import boto3
import pytest

from tests.integration.test_backend_api import call, item, run_jobs
from tests.integration.test_connect_confirmation import claim, confirming, finish_connect  # noqa: F401 - fixture
from tests.security.test_role_writes import REQUIRED, may, update

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("confirming")
def test_the_webhook_role_cannot_undo_a_user_s_disconnect_and_keep_its_tokens_served(tiktok, browser, clock):
    """The app disconnects a connection (DELETE: `disconnecting`, the background job will revoke it). A flaw in
    the public webhook function writes, within what its role allows (status and schedule), the connection back
    to `active` and out of the Due index: the revoke never runs, the operation reads `superseded`, and the token
    route keeps serving the tokens of a connection the user asked to disconnect."""
    back = finish_connect(browser, tiktok)
    connection_id = claim(back["claim"][0], "owner-1")[1]["connection"]["connection_id"]
    status, operation = call("DELETE", f"/connections/{connection_id}", raw_query="owner_id=owner-1")
    assert status == 202
    stored = item(connection_id)
    revision = {"N": str(int(stored["revision"]["N"]) + 1)}
    resurrect = update(connection_id, {"status": {"S": "active"}, "revision": revision},
                       remove=("next_refresh_at", "due_shard", "status_reason"), expect_revision=None)
    if may("WebhookFunction", REQUIRED, "UpdateItem", resurrect):
        boto3.client("dynamodb").update_item(**resurrect)
    run_jobs()
    run_jobs()
    status, token = call("GET", f"/connections/{connection_id}/token", raw_query="owner_id=owner-1")
    assert status != 200, "a connection the user disconnected is served again"
    assert tiktok.grants_for(tiktok.users["alice"].open_id) == [], "its grant was never revoked"


def test_the_policy_evaluator_counts_legacy_attribute_updates_as_iam_does(stack):
    """IAM's `dynamodb:Attributes` names every attribute a request touches, whichever form it takes; a flaw in a
    public function chooses the form. The evaluator reads only UpdateExpression/ConditionExpression, so an
    UpdateItem written with the legacy `AttributeUpdates` looks to it like a write of the key alone: it reports
    that the webhook role may overwrite the tokens (what AWS refuses), and it would as readily report as allowed
    a request of the code that AWS refuses. It must count those names or refuse to judge (it promises never to
    allow by not understanding)."""
    import os

    legacy = {"TableName": os.environ["CONNECTIONS_TABLE"], "Key": {"connection_id": {"S": "con_x"}},
              "AttributeUpdates": {"tokens": {"Value": {"B": b"old"}, "Action": "PUT"},
                                   "owner_id": {"Value": {"S": "eve"}, "Action": "PUT"}}}
    try:
        allowed = may("WebhookFunction", REQUIRED, "UpdateItem", legacy)
    except ValueError:
        return  # refusing to judge is fine
    assert not allowed
