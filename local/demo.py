"""`make demo`: one whole TikTok connect on the embedded local default (moto + simulated TikTok), step by step.

The handlers run in-process on API Gateway payload-2.0 events built from template.yaml's routes; AWS is a
moto server and TikTok the simulated one, both reached over real loopback HTTP. Secrets are never printed.

`make demo PROVIDER=instagram` (any shipped network) tells the same story for that network in memory: the real
connect, claim and refresh use cases against the network simulated from its profile (local/sim_provider.py), then
a year of keep-alive in simulated time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from urllib.parse import parse_qs, urlsplit

import httpx

from local.stack import DUMMY_CREDENTIALS

APP_ORIGIN = "http://127.0.0.1:3000"
BASE_URL = "http://127.0.0.1:3000"  # where the local gateway would serve the API
RETURN_TO = f"{APP_ORIGIN}/app/connections?tab=social"
SECRET_PARAMS = ("session", "state", "code", "code_challenge", "claim")


def redact_url(url: str) -> str:
    """Show a URL with its secret parameters' values replaced."""
    return re.sub(rf"(?<=[?&])({'|'.join(SECRET_PARAMS)})=[^&\"\s]*", r"\1=<redacted>", url)


def step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}")


def main() -> int:
    provider = os.environ.get("PROVIDER", "tiktok").strip() or "tiktok"
    if provider != "tiktok":
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        from local.emf import emf_kept_off_stdout

        with emf_kept_off_stdout():
            return run_network(provider)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    # The demo prints its own narrative; the handlers' JSON logs and EMF metrics would drown it. The metrics are
    # kept off stdout by local/emf.py and totalled at the end (what CloudWatch would have received).
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from oauth_keeper.audit import audit_logger

    # A deployed function writes audit records whatever its level (oauth_keeper/audit.py); the demo's narrative
    # says what was done, so they follow POWERTOOLS_LOG_LEVEL here, as in local/dev.py.
    audit_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto_server.start()
    host, port = moto_server.get_host_and_port()
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"

    from local.emf import emf_kept_off_stdout
    from local.fake_tiktok import FakeTikTok

    tiktok = FakeTikTok(redirect_uris=(f"{BASE_URL}/callback/tiktok",)).start()
    try:
        with emf_kept_off_stdout() as metrics:
            outcome = run(tiktok, os.environ["AWS_ENDPOINT_URL"])
        print(f"Metrics (what CloudWatch would have received): {metrics.summary()}")
        return outcome
    finally:
        tiktok.stop()
        moto_server.stop()


def run(tiktok, moto_url: str) -> int:
    from oauth_keeper import root
    from oauth_keeper.domain.timestamps import iso8601

    from local import apigw
    from local.stack import create_resources, install_from_env

    step(0, f"Local AWS (moto) at {moto_url}, simulated TikTok at {tiktok.base_url}")
    resources = create_resources(
        public_base_url=BASE_URL, allowed_return_origins=[APP_ORIGIN], tiktok_base_url=tiktok.base_url,
        client_key=tiktok.client_key, client_secret=tiktok.client_secret,
        scopes="user.info.basic,video.list,video.publish",
        connect_confirmation="required",  # as the template deploys by default
    )
    os.environ.update(resources.env)
    install_from_env()
    print("    tables, KMS key, SSM client_key/client_secret and the event bus created from template.yaml")

    step(1, "The app's backend: POST /connect-sessions (IAM-signed)")
    body = {"owner_id": "demo-user-42", "provider": "tiktok", "return_to": RETURN_TO}
    response = apigw.invoke("POST", "/connect-sessions", body=json.dumps(body))
    print(f"    {response['statusCode']} {redact_url(response['body'])}")
    if response["statusCode"] != 201:
        return 1
    connect_url = json.loads(response["body"])["connect_url"]

    step(2, "The browser opens the connect link: GET /connect/tiktok")
    browser = apigw.Browser()
    response = browser.get(connect_url)
    authorize_url = response["headers"]["Location"]
    print(f"    {response['statusCode']} -> {redact_url(authorize_url)}")
    print(f"    cookie set: {next(iter(browser.cookies))}=<redacted>; HttpOnly; Secure; SameSite=Lax")

    step(3, "TikTok's consent page (over loopback HTTP): the user picks Authorize")
    with httpx.Client(timeout=5) as http:
        page = http.get(authorize_url)
        asked = parse_qs(urlsplit(authorize_url).query)["scope"][0]
        print(f"    GET consent page: {page.status_code}, asks for {asked}")
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        form.update({"user": "alice", "action": "authorize"})
        granted = ["user.info.basic", "video.list", "video.publish"]
        consent = http.post(tiktok.authorize_url, data={**form, "granted": granted})
    callback_url = consent.headers["location"]
    print(f"    {consent.status_code} -> {redact_url(callback_url)}")

    step(4, "TikTok sends the browser back: GET /callback/tiktok (code exchanged over loopback HTTP)")
    response = browser.get(callback_url)
    back = response["headers"]["Location"]
    print(f"    {response['statusCode']} -> {redact_url(back)}")
    result = parse_qs(urlsplit(back).query)
    if result.get("status") != ["pending_confirmation"]:
        return 1
    print("    nothing is connected yet: the grant waits for the app's backend to claim it")

    step(5, "The app's backend claims it for its logged-in user: POST /connections/claims (IAM-signed)")
    claim = {"claim": result["claim"][0], "owner_id": "demo-user-42"}  # the owner of the app's own session
    response = apigw.invoke("POST", "/connections/claims", body=json.dumps(claim))
    answer = json.loads(response["body"])
    print(f"    {response['statusCode']} result={answer.get('result')} "
          f"connection_id={answer.get('connection', {}).get('connection_id')}")
    if response["statusCode"] != 200:
        return 1

    step(6, "The stored connection (DynamoDB via moto; tokens stay sealed)")
    connection = root.container().connections.get(answer["connection"]["connection_id"])
    shown = {k: v for k, v in vars(connection).items() if k not in ("sealed_tokens", "outbox")}
    shown["tokens"] = f"<AES-256-GCM envelope, {len(connection.sealed_tokens or b'')} bytes>"
    for key, value in shown.items():
        if key.endswith("_at") and isinstance(value, int):
            value = f"{iso8601(value)}  ({value})"
        print(f"    {key:18} {value}")

    step(7, "Events on the connections bus")
    for event in resources.received_events():
        detail = event["detail"]
        print(f"    {event['detail-type']}: {detail['connection_id']} status={detail['status']} "
              f"reason={detail['reason']}")
    print("\nDone: one TikTok account connected end to end.")
    return 0


def run_network(provider: str, days: int = 365) -> int:
    """The connect, claim and keep-alive story for a shipped network, in memory and simulated time."""
    from oauth_keeper.domain.timestamps import iso8601

    from local.provider_world import ProviderWorld
    from local.sim_provider import DAY, SIMULATED

    if provider not in SIMULATED:
        print(f"No simulated {provider!r}: PROVIDER is one of {', '.join(sorted(SIMULATED))}.")
        return 2
    world = ProviderWorld.create(name=provider, connect_confirmation="required", quirks=SIMULATED[provider]())
    profile = world.profile
    step(0, f"{profile.display_name} simulated from its profile ({provider}.json): strategy "
            f"{profile.refresh_strategy}, {len(profile.chain)} chain link(s), client auth {profile.client_auth}")
    step(1, f"Connect: connect session, authorization, consent and callback (GET /callback/{provider})")
    result = world.connect("alice", owner_id="demo-user-42")
    print(f"    callback -> status={result.get('status')}" + (f" error={result['error']}" if "error" in result else ""))
    for call in world.provider.calls:
        print(f"    {call.step:14} {call.status}")
    if result.get("status") != "pending_confirmation":
        return 1
    step(2, "The app's backend claims it for its logged-in user")
    answer = world.services.pending.claim({"claim": result["claim"], "owner_id": "demo-user-42"})
    connection = world.get(answer["connection"]["connection_id"])
    print(f"    result={answer['result']} connection_id={connection.connection_id} account_id={connection.account_id}")
    for key in ("access_expires_at", "refresh_expires_at", "next_refresh_at"):
        value = getattr(connection, key)
        print(f"    {key:18} {iso8601(value) if value else None}")
    step(3, f"{days} days of keep-alive in simulated time (the clock skips to each due refresh)")
    before = len(world.provider.sent("refresh"))
    world.run_until(world.clock.now() + days * DAY)
    connection = world.get(connection.connection_id)
    refreshes = world.provider.sent("refresh")[before:]
    print(f"    {len(refreshes)} refreshes, all answered {sorted({c.status for c in refreshes})}; status "
          f"{connection.status}, access token valid until {iso8601(connection.access_expires_at)}")
    step(4, "Events on the connections bus")
    for event in world.publisher.events:
        detail = event["detail"]
        print(f"    {event['detail_type']}: status={detail['status']} reason={detail['reason']}")
    if connection.status == "needs_reauth":  # a grant capped whatever refreshing does (e.g. LinkedIn's year)
        print(f"\nDone: one {profile.display_name} account connected, kept alive to its grant's cap, announced "
              "ahead (Connection Expiring), then honestly needs_reauth: the user connects again.")
    else:
        print(f"\nDone: one {profile.display_name} account connected and kept alive.")
    return 0 if connection.status in ("active", "needs_reauth") else 1


if __name__ == "__main__":
    sys.exit(main())
