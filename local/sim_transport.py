"""An httpx transport that hands requests straight to a FakeTikTok: no sockets, no waiting.

Long fault simulations (hours of outage, thousands of refreshes) need the real client code path — httpx
building the form body, our parsing and classification — without paying for loopback round trips or real
timeouts. A "timeout" fault becomes httpx.ReadTimeout at once; everything else is the simulator's answer.
"""

from __future__ import annotations

import httpx

from local.fake_tiktok import FakeTikTok


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, fake: FakeTikTok) -> None:
        self._fake = fake
        fake.timeout_delay = 0.0  # the transport raises the timeout itself

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        answer = self._fake.handle(request.method, target, dict(request.headers), request.read())
        if answer.headers.get("X-Sim-Fault") == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)


def in_process_client(fake: FakeTikTok) -> httpx.Client:
    return httpx.Client(transport=InProcessTransport(fake), base_url=fake_base(fake))


def fake_base(fake: FakeTikTok) -> str:
    try:
        return fake.base_url
    except RuntimeError:
        return "http://tiktok.sim"
