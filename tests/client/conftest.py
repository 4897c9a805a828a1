"""The Python client (clients/python) against the real local stack: `make dev`'s gateway, handlers, moto and the
simulated TikTok, started once for this folder on free ports, reached over loopback HTTP."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:  # the package as its source tree; test_installed_client.py installs it
    sys.path.insert(0, str(CLIENT_SRC))

from botocore.credentials import Credentials  # noqa: E402
from oauth_keeper_client import Client, RetryPolicy  # noqa: E402

from local import sigv4  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="package")
def dev() -> Iterator:
    """One whole local stack for the folder (about 7 s to start): each test uses owners and TikTok users of its own."""
    from local.dev import start_dev_stack

    with start_dev_stack(port=0, tiktok_port=0) as stack:
        yield stack


@dataclass
class Waits:
    """The client's injected `sleep` and `clock`: a sleep is recorded and moves the clock, so tests never wait."""

    seconds: list[float] = field(default_factory=list)
    now: float = 0.0

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def waits() -> Waits:
    return Waits()


def make_client(base_url: str, waits: Waits, *, secret_key: str = sigv4.LOCAL_SECRET_KEY, **options) -> Client:
    """A client signing as the local stack's identity (explicit credentials: this process's AWS_* variables are
    moto's dummy ones)."""
    options.setdefault("region", sigv4.LOCAL_REGION)
    return Client(base_url, credentials=Credentials(sigv4.LOCAL_ACCESS_KEY, secret_key), sleep=waits,
                  clock=waits.clock, **options)


@pytest.fixture
def client(dev, waits) -> Client:
    return make_client(dev.base_url, waits, retry=RetryPolicy(max_attempts=3))


@pytest.fixture
def owner() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tiktok_user(dev) -> str:
    """A TikTok account of this test's own (revoking or failing it touches no other test)."""
    handle = f"u{uuid.uuid4().hex[:10]}"
    dev.tiktok.add_user(handle)
    return handle


@pytest.fixture
def tiktok_faults(dev) -> Iterator:
    """The simulated TikTok's fault controls, cleared after the test (the stack is shared)."""
    yield dev.tiktok
    dev.tiktok.clear_faults()


def play_user(connect_url: str, user: str) -> dict[str, str]:
    """The user's browser: open the connect link, press Authorize on the simulated TikTok's consent page, follow
    TikTok back to the callback. Returns the query the browser lands on at `return_to`."""
    with httpx.Client(timeout=30) as browser:
        to_tiktok = browser.get(connect_url)
        assert to_tiktok.status_code == 302, to_tiktok.text
        # A browser sends the __Host- flow cookie back to 127.0.0.1 over http; httpx's jar keeps Secure cookies
        # for https only, so the header is set as the browser would.
        cookie = to_tiktok.headers["set-cookie"].split(";", 1)[0]
        authorize_url = to_tiktok.headers["location"]
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        consent = browser.post(authorize_url.split("?", 1)[0],
                               data={**form, "user": user, "action": "authorize",
                                     "granted": form["scope"].split(",")})
        assert consent.status_code == 302, consent.text
        back = browser.get(consent.headers["location"], headers={"Cookie": cookie})
        assert back.status_code == 302, back.text
    return {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}


def connect(dev, client: Client, owner: str, user: str) -> str:
    """A whole connect through the client and the user's browser; the claimed connection's id."""
    session = client.create_connect_session(owner_id=owner, return_to=dev.dashboard_url)
    landed = play_user(session.connect_url, user)
    assert landed["status"] == "pending_confirmation", landed
    return client.claim(landed["claim"], owner_id=owner).connection.connection_id


def sweep(dev) -> dict:
    """What the schedule and the refresh worker do in AWS (the disconnect and erasure jobs): the dashboard's sweep."""
    return sweep_at(dev.base_url)


def sweep_at(base_url: str) -> dict:
    answer = httpx.post(f"{base_url}/dev/api/sweep", json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def finish_erasure(dev) -> None:
    """An erasure's job: a sweep, and the pass a minute later that ends its marking (usecases/disconnect.py)."""
    from oauth_keeper.usecases.disconnect import RECHECK_AFTER

    sweep(dev)
    dev.clock.advance(RECHECK_AFTER + 1)
    sweep(dev)
