"""Verify AWS SigV4 signatures the way API Gateway does for AWS_IAM routes, against local credentials."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Local, documented dummy credentials: the dashboard's server-side proxy signs with them. Never real ones.
LOCAL_ACCESS_KEY = "AKIALOCALDASHBOARD01"
LOCAL_SECRET_KEY = "local-dashboard-secret-not-a-real-aws-key"
LOCAL_CALLER_ARN = "arn:aws:iam::123456789012:user/local-backend"
MAX_SKEW = 15 * 60  # seconds, as AWS allows


@dataclass(frozen=True)
class LocalIdentity:
    secret_key: str
    caller_arn: str


LOCAL_IDENTITIES = {LOCAL_ACCESS_KEY: LocalIdentity(LOCAL_SECRET_KEY, LOCAL_CALLER_ARN)}


def sign(method: str, url: str, body: bytes | None = None, *, region: str = "us-east-1",
         access_key: str = LOCAL_ACCESS_KEY, secret_key: str = LOCAL_SECRET_KEY,
         headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers that sign this request (what botocore's signer adds)."""
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers or {}))
    SigV4Auth(Credentials(access_key, secret_key), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def verify(method: str, url: str, headers: dict[str, str], body: bytes, *, region: str = "us-east-1",
           identities: dict[str, LocalIdentity] | None = None, now: dt.datetime | None = None) -> str | None:
    """The caller ARN when the request carries a valid signature by a known identity, else None."""
    identities = LOCAL_IDENTITIES if identities is None else identities
    lowered = {k.lower(): v for k, v in headers.items()}
    authorization = lowered.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return None
    try:
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, date, signed_region, service, _ = fields["Credential"].split("/")
        signed_headers = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
        amz_date = lowered["x-amz-date"]
        stamp = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except (KeyError, ValueError):
        return None
    identity = identities.get(access_key)
    if identity is None or signed_region != region or service != "execute-api" or date != amz_date[:8]:
        return None
    if abs(((now or dt.datetime.now(dt.UTC)) - stamp).total_seconds()) > MAX_SKEW:
        return None
    if "host" not in signed_headers or any(h not in lowered for h in signed_headers):
        return None
    request = AWSRequest(method=method, url=url, data=body, headers={h: lowered[h] for h in signed_headers})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, identity.secret_key), "execute-api", region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return identity.caller_arn if hmac.compare_digest(expected, signature) else None
