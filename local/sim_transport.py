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


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> object:
        import json

        return json.loads(self._body)


class DirectClient:
    """The two calls TokenEndpoint makes (POST a form, GET with a bearer token), straight into the simulator.

    For month-long simulations only: httpx itself costs more than half of each simulated refresh. Everything
    above the HTTP client (form fields, parsing, classification) is still the real code; the shorter fault
    tests and the integration suite use real httpx.
    """

    def __init__(self, fake: FakeTikTok) -> None:
        self._fake = fake
        fake.timeout_delay = 0.0

    def post(self, url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> _Answer:
        from urllib.parse import urlencode

        body = urlencode(data).encode()
        head = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self._answer("POST", url, self._fake.handle("POST", _target(url), head, body))

    def get(self, url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> _Answer:
        from urllib.parse import urlencode

        target = _target(url) + ("?" + urlencode(params) if params else "")
        return self._answer("GET", url, self._fake.handle("GET", target, headers or {}, b""))

    @staticmethod
    def _answer(method: str, url: str, answer: object) -> _Answer:
        if answer.headers.get("X-Sim-Fault") == "timeout":  # type: ignore[attr-defined]
            raise httpx.ReadTimeout("simulated timeout", request=httpx.Request(method, url))
        return _Answer(answer.status, answer.body)  # type: ignore[attr-defined]


def _target(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path
