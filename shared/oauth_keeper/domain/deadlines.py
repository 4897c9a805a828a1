"""Time budgets, in seconds: how long each kind of call may take, and what they add up to under a lease.

Lambda cuts a function off at its timeout (template.yaml) and API Gateway an HTTP API integration at 30 s.
Everything the service waits for is bounded here, and the bounds that depend on each other are derived from
each other, so changing one moves the others (docs/architecture.md, "Deadlines").
"""

from __future__ import annotations

import math

# One AWS call (DynamoDB, KMS, SSM, SQS, EventBridge), as botocore is configured (adapters/aws.py): at most
# AWS_ATTEMPTS attempts of connect + read, and standard-mode backoff between them (at most 1 s before the 2nd).
AWS_CONNECT_TIMEOUT = 0.5
AWS_READ_TIMEOUT = 1.0
AWS_ATTEMPTS = 2
AWS_RETRY_BACKOFF = 1.0
AWS_CALL_LIMIT = AWS_ATTEMPTS * (AWS_CONNECT_TIMEOUT + AWS_READ_TIMEOUT) + AWS_RETRY_BACKOFF

# One provider call, body included (adapters/provider_http.py), and the least worth starting.
PROVIDER_CALL_LIMIT = 8.0
MIN_PROVIDER_CALL = 1.0

# Kept free at the end of every invocation: the answer still has to be shaped, logged and returned.
HANDLER_MARGIN = 1.0
API_GATEWAY_LIMIT = 30.0  # HTTP API's integration timeout

# Under a refresh lease: the provider call, then the commit: the write and, when someone wrote meanwhile, a
# re-read and a second write. The reads the call needs (breaker, stored tokens' data key, credentials, a data
# key that outlives the lease: cached, as a rule) come before it: before the lease on the read-first path; under
# a lease taken in one write (usecases/refresh.py), which is renewed before the call when they took longer
# than the margin, so the provider call and the commit always have this much.
AWS_CALLS_AFTER_THE_ANSWER = 3
AWS_CALLS_UNDER_LEASE = AWS_CALLS_AFTER_THE_ANSWER
LEASE_MARGIN = 2.0
LEASE_SECONDS = math.ceil(AWS_CALLS_UNDER_LEASE * AWS_CALL_LIMIT + PROVIDER_CALL_LIMIT + LEASE_MARGIN)
# The provider call must end this long before the lease does, so the commit fits inside it.
COMMIT_RESERVE = AWS_CALLS_AFTER_THE_ANSWER * AWS_CALL_LIMIT + 1.0

# A refresh starts only with this much of the invocation left: a whole provider call, then the commit. One
# given less could abandon a slow but healthy provider's answer after it rotated the refresh token.
REFRESH_MIN_TIME = PROVIDER_CALL_LIMIT + COMMIT_RESERVE

# Optional work (the display name and avatar) is tried only with this much time left; else it is deferred.
ENRICH_MIN = 3.0

# A disconnect: what must still fit after the revoke (erase the tokens, publish the event).
ERASE_RESERVE = 2.0

# The callback: what must still fit after the code exchange (store the grant: read, data key, write).
SAVE_RESERVE = 1.5  # expected, not worst: a slower store means the invocation ends late, which the alarm shows
# A connect chain's link is sent from the callback only with the least call worth starting and the save after it
# left; with less, or when the link fails transiently (a slow provider's timeout among them), the connection is
# stored on the short-lived token and the worker runs the link (ADR 0025). The callback's 10 s never fit a whole
# PROVIDER_CALL_LIMIT after the code exchange: a link is tried with what is left, never waited for beyond it.
CHAIN_LINK_MIN = MIN_PROVIDER_CALL + SAVE_RESERVE
# Kept after a link for the user-info call when the account id must still come from it (as much as enrichment).
USERINFO_RESERVE = ENRICH_MIN


def budget(deadline: float | None, now: float) -> float:
    """Seconds left before `deadline` (epoch seconds); infinite without one."""
    return math.inf if deadline is None else deadline - now
