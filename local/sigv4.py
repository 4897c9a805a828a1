"""Verify AWS SigV4 signatures the way API Gateway does for AWS_IAM routes, against local credentials; say why one
is refused (never the signature or a secret)."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The local stack's signing identity: documented (README, "The local stack's signing identity") and printed by
# `make dev`. Dummy values that sign for the local gateway only; never real AWS credentials.
LOCAL_ACCESS_KEY = "AKIALOCALDASHBOARD01"
LOCAL_SECRET_KEY = "local-dashboard-secret-not-a-real-aws-key"
LOCAL_REGION = "us-east-1"
LOCAL_CALLER_ARN = "arn:aws:iam::123456789012:user/local-backend"
SERVICE = "execute-api"
MAX_SKEW = 15 * 60  # seconds, as AWS allows
_REDACTED_HEADERS = ("x-amz-security-token",)  # a temporary credential's token: never in a log


@dataclass(frozen=True)
class LocalIdentity:
    secret_key: str
    caller_arn: str


LOCAL_IDENTITIES = {LOCAL_ACCESS_KEY: LocalIdentity(LOCAL_SECRET_KEY, LOCAL_CALLER_ARN)}


@dataclass(frozen=True)
class Verdict:
    """`caller_arn` when the signature is valid; otherwise `refused` says why, fit for a log line: it never holds
    the signature, a secret key or a session token."""

    caller_arn: str | None
    refused: str | None = None


def sign(method: str, url: str, body: bytes | None = None, *, region: str = LOCAL_REGION,
         access_key: str = LOCAL_ACCESS_KEY, secret_key: str = LOCAL_SECRET_KEY,
         headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers that sign this request (what botocore's signer adds)."""
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers or {}))
    SigV4Auth(Credentials(access_key, secret_key), SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def verify(method: str, url: str, headers: dict[str, str], body: bytes, *, region: str = LOCAL_REGION,
           identities: dict[str, LocalIdentity] | None = None, now: dt.datetime | None = None) -> str | None:
    """The caller ARN when the request carries a valid signature by a known identity, else None."""
    return check(method, url, headers, body, region=region, identities=identities, now=now).caller_arn


def check(method: str, url: str, headers: dict[str, str], body: bytes, *, region: str = LOCAL_REGION,
          identities: dict[str, LocalIdentity] | None = None, now: dt.datetime | None = None) -> Verdict:
    """Verify a request's SigV4 signature. `url` is the URL as the client sent it: its path percent-escapes
    included, since the signature covers the path as sent (botocore, and API Gateway, canonicalise it so)."""
    identities = LOCAL_IDENTITIES if identities is None else identities
    lowered = {k.lower(): v for k, v in headers.items()}
    authorization = lowered.get("authorization", "")
    if not authorization:
        return _refused("no Authorization header (an unsigned request)")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return _refused("the Authorization header is not AWS4-HMAC-SHA256 (SigV4)")
    try:
        fields = dict(part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 "):].split(","))
        access_key, date, signed_region, service, terminator = fields["Credential"].split("/")
        signed_headers = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        return _refused("malformed Authorization header (expected Credential=<access key>/<yyyymmdd>/<region>/"
                        "execute-api/aws4_request, SignedHeaders=..., Signature=...)")
    if "x-amz-date" not in lowered:
        return _refused("no X-Amz-Date header")
    amz_date = lowered["x-amz-date"]
    try:
        stamp = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return _refused(f"X-Amz-Date {amz_date!r} is not of the form yyyymmddThhmmssZ")
    identity = identities.get(access_key)
    if identity is None:
        known = ", ".join(sorted(identities)) or "none"
        return _refused(f"unknown access key id {access_key!r} (this gateway knows {known}: the local signing "
                        "identity in the README, not your AWS credentials)")
    if signed_region != region:
        return _refused(f"signed for region {signed_region!r}, but this gateway is in {region!r}")
    if service != SERVICE or terminator != "aws4_request":
        return _refused(f"the credential scope ends in {service}/{terminator}, not {SERVICE}/aws4_request")
    if date != amz_date[:8]:
        return _refused(f"the credential scope's date {date} is not X-Amz-Date's day {amz_date[:8]}")
    skew = ((now or dt.datetime.now(dt.UTC)) - stamp).total_seconds()
    if abs(skew) > MAX_SKEW:
        return _refused(f"clock skew: X-Amz-Date {amz_date} is {abs(skew):.0f} s "
                        f"{'behind' if skew > 0 else 'ahead of'} the gateway's clock (at most {MAX_SKEW} s)")
    if "host" not in signed_headers:
        return _refused("the Host header is not signed (SignedHeaders must include host)")
    missing = [h for h in signed_headers if h not in lowered]
    if missing:
        return _refused(f"signed header(s) {', '.join(missing)} missing from the request")
    request = AWSRequest(method=method, url=url, data=body, headers={h: lowered[h] for h in signed_headers})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, identity.secret_key), SERVICE, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if hmac.compare_digest(expected, signature):
        return Verdict(identity.caller_arn)
    return _refused("signature mismatch: the request that arrived is not the one that was signed (its method, "
                    "path as sent, query, signed headers or body differ), or it was signed with another secret "
                    f"key. The canonical request here, for path {urlsplit(url).path!r}, is:\n"
                    + _redacted(canonical))


def _refused(reason: str) -> Verdict:
    return Verdict(None, reason)


def _redacted(canonical: str) -> str:
    """The canonical request (method, path, query, signed headers, body hash) with token headers' values hidden."""
    lines = []
    for line in canonical.split("\n"):
        name = line.split(":", 1)[0]
        lines.append(f"{name}:<redacted>" if name in _REDACTED_HEADERS else line)
    return "\n".join("    " + line for line in lines)
