"""An httpx transport that hands requests straight to a FakeTikTok: no sockets, no waiting.

Long fault simulations (hours of outage, thousands of refreshes) need the real client code path — httpx
building the form body, our parsing and classification — without paying for loopback round trips or real
timeouts. A "timeout" fault becomes httpx.ReadTimeout at once; everything else is the simulator's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from local.fake_tiktok import FakeTikTok


class InProcessTransport(httpx.BaseTransport):
    """`latency` ({"token": 6.0, "userinfo": 5.0, "revoke": 1.0}) is simulated: the shared clock moves by it
    (through `advance`) instead of anybody waiting, and a latency longer than the request's read timeout ends
    as httpx.ReadTimeout at that timeout, as a real client would see it. `drip` sends the answer in that many
    pieces, the latency spread between them: a body that trickles in."""

    def __init__(self, fake: FakeTikTok) -> None:
        self._fake = fake
        fake.timeout_delay = 0.0  # the transport raises the timeout itself
        self.latency: dict[str, float] = {}
        self.drip = 1
        self.advance: Callable[[float], None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        endpoint = next((name for name in ("token", "userinfo", "revoke") if f"/{name}" in target
                         or (name == "userinfo" and "/user/info" in target)), "")
        wait = self.latency.get(endpoint, 0.0)
        read_timeout = (request.extensions.get("timeout") or {}).get("read") or float("inf")
        answer = self._fake.handle(request.method, target, dict(request.headers), request.read())
        if answer.headers.get("X-Sim-Fault") == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        if wait and self.advance is not None and self.drip <= 1:
            self.advance(min(wait, read_timeout))
            if wait > read_timeout:  # TikTok processed it; the client gave up before the answer came
                raise httpx.ReadTimeout("simulated slow answer", request=request)
        if wait and self.advance is not None and self.drip > 1:
            return httpx.Response(answer.status, headers=answer.headers, request=request,
                                  stream=_Drip(answer.body, self.drip, wait / self.drip, self.advance))
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)


class _Drip(httpx.SyncByteStream):
    """A body in `pieces` parts, `gap` simulated seconds apart."""

    def __init__(self, body: bytes, pieces: int, gap: float, advance: Callable[[float], None]) -> None:
        self._body, self._pieces, self._gap, self._advance = body, pieces, gap, advance

    def __iter__(self):
        size = max(1, -(-len(self._body) // self._pieces))
        for start in range(0, len(self._body), size):
            self._advance(self._gap)
            yield self._body[start:start + size]


def in_process_client(fake: FakeTikTok) -> httpx.Client:
    return httpx.Client(transport=InProcessTransport(fake), base_url=fake_base(fake))


def fake_base(fake: FakeTikTok) -> str:
    try:
        return fake.base_url
    except RuntimeError:
        return "http://tiktok.sim"


class _Answer:
    """Just what HttpProviderClient reads of a streamed httpx response."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self._body = body
        self.headers = {k.lower(): v for k, v in headers.items()}

    def iter_bytes(self):
        yield self._body


class DirectClient:
    """The provider client's one call (`stream`), straight into the simulator.

    For month-long simulations only: httpx itself costs more than half of each simulated refresh. Everything
    above the HTTP client (form fields, parsing, classification, deadlines) is still the real code; the shorter
    fault tests and the integration suite use real httpx.
    """

    def __init__(self, fake: FakeTikTok) -> None:
        self._fake = fake
        fake.timeout_delay = 0.0

    @contextmanager
    def stream(self, method: str, url: str, *, data: dict[str, str] | None = None,
               params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
               timeout: object = None) -> Iterator[_Answer]:
        from urllib.parse import urlencode

        target = _target(url) + ("?" + urlencode(params) if params else "")
        head = dict(headers or {})
        body = b""
        if data is not None:
            body = urlencode(data).encode()
            head.setdefault("Content-Type", "application/x-www-form-urlencoded")
        answer = self._fake.handle(method, target, head, body)
        if answer.headers.get("X-Sim-Fault") == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=httpx.Request(method, url))
        yield _Answer(answer.status, answer.body, answer.headers)


def _target(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path
