"""Break-test of issue 13, finding 5 (the webhook queues removals, the refresh worker applies them): the probes
that found something, each kept as the test of its fix or, while open, as a strict xfail."""

from __future__ import annotations

import pytest
from oauth_keeper.domain.provider_events import AccountRemovalRequest
from oauth_keeper.usecases.worker import refresh_request_of

from local.cfn import resources_of_type

pytestmark = pytest.mark.unit


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value] if value else []


def test_the_webhook_is_updated_only_after_the_worker_that_reads_its_removals():
    """The worker of the previous version reads every message as a refresh (`refresh_request_of`, unchanged):
    a removal names no connection, so it is "malformed" and deleted, not failed; and the new webhook has already
    remembered the delivery, so TikTok's retries are answered `duplicate`. The user's removal would be lost for
    good (no `Connection Disconnected`, a pending grant still claimable). CloudFormation updates resources
    without a dependency in parallel, in any order: the webhook must wait for the worker."""
    body = AccountRemovalRequest("tiktok", "acct-alice", 1_800_000_000, "user_revoked", 1).message()
    assert refresh_request_of(body) == (None, False)  # what the previous worker makes of it: dropped
    functions = resources_of_type("AWS::Serverless::Function")
    assert "RefreshWorkerFunction" in _as_list(functions["WebhookFunction"].get("DependsOn"))
