"""The simulated networks over real HTTP, for `make dev`: every shipped network's SimulatedProvider behind one loopback
server, each under its own path prefix (http://127.0.0.1:3002/<network>/...), with a consent page.

`local/sim_provider.py` simulates a network from its profile as an httpx transport; here each one gets what a
browser and the handlers need to reach it over the wire: `GET /<network>/authorize` checks the authorization
request as the profile says (client id, registered redirect URI, `response_type=code`, state, PKCE required,
supported or refused, the profile's fixed authorize parameters) and shows a consent page (user, scopes, Allow,
Deny); Allow redirects with a code bound to the redirect URI and PKCE challenge, Deny with `error=access_denied`.
Every other path (token, refresh, chain, user info, revoke, channels: `provider_world.simulated_urls` names them) is
turned into an httpx.Request and answered by the network's SimulatedProvider, on the clock it was given.
"""

from __future__ import annotations

import html
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import oauth_keeper.domain.providers as providers
from oauth_keeper.domain.providers import ProviderProfile, profile_from_data, with_overrides

from local.fake_tiktok.server import LoopbackServer
from local.fake_tiktok.wire import BadRequest, Response, html_response, json_response, redirect, single_values
from local.provider_world import simulated_urls
from local.sim_provider import SIMULATED, SimulatedProvider

NETWORK_USERS = ("alice", "bob")  # who can log in at each simulated network (display name "User <handle>")
# Every shipped network but TikTok, which has its own, richer simulator (local/fake_tiktok/).
NETWORKS = tuple(name for name in SIMULATED if name != "tiktok")
_FORM_ONLY = ("user", "action", "granted")  # the consent form's own fields, never authorization parameters

_PAGE = Template(
    '<!doctype html><html><head><meta charset="utf-8"><title>$network - Authorize $app_name</title></head><body>'
    '<h1>$app_name would like to access your $network account</h1>'
    '<form method="post" action="$form_action">$hidden_fields'
    '<p><label for="user">Log in as</label> <select id="user" name="user">$user_options</select></p>'
    '<fieldset><legend>$app_name will be able to</legend>$scope_boxes</fieldset>'
    '<p>You will be sent back to $redirect_uri</p>'
    '<button type="submit" id="authorize" name="action" value="authorize">Allow</button> '
    '<button type="submit" id="cancel" name="action" value="cancel">Deny</button>'
    '</form></body></html>')
_ERROR = Template(
    '<!doctype html><html><head><meta charset="utf-8"><title>$network - Something went wrong</title></head><body>'
    '<h1>Something went wrong</h1><p>We couldn\'t log you in with $network.</p>'
    '<p>Error: <code id="error">$error</code></p><p id="error-description">$description</p></body></html>')


class _Refused(Exception):
    """An authorization request the network refuses; `redirect_uri` set: told to the app, else on its own page."""

    def __init__(self, error: str, description: str, redirect_uri: str | None = None, state: str | None = None):
        super().__init__(description)
        self.error, self.description, self.redirect_uri, self.state = error, description, redirect_uri, state


class SimulatedNetworks:
    """The networks' loopback server. `start()` binds it; then `env()` is the `<NAME>_<KEY>` endpoint settings
    and `PROVIDERS` that point the handlers at it, and `put_credentials()` stores each network's client id and
    secret where the functions read them (SSM, `<prefix>/<network>/<client_id_param>` and `client_secret`)."""

    def __init__(self, *, clock: Callable[[], float], public_base_url: str, names: Iterable[str] = NETWORKS,
                 app_name: str = "oauth-keeper (local)"):
        self.app_name = app_name
        self._clock = clock
        self._public_base_url = public_base_url
        self._names = tuple(names)
        self._server = LoopbackServer(self)
        self._lock = threading.RLock()  # a SimulatedProvider is not thread-safe; the server is threaded
        self.providers: dict[str, SimulatedProvider] = {}
        self.stats: Counter[str] = Counter()  # consents, denials, refused authorizations

    # -- life --------------------------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> SimulatedNetworks:
        """Bind (port 0: a free one) and build each network's simulator for its URLs on that port."""
        self._server.start(host, port)
        for name in self._names:
            data = providers._profile_file(name)  # noqa: SLF001 - the shipped file, as provider_world reads it
            assert data is not None, f"no shipped profile {name!r}"
            base = profile_from_data(data)
            profile = with_overrides(base, simulated_urls(name, base, host=self.url(name)))
            self.providers[name] = SimulatedProvider(profile=profile, clock=self._clock, quirks=SIMULATED[name](),
                                                     client_id=f"{name}-local-client",
                                                     client_secret=f"{name}-local-secret")
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def base_url(self) -> str:
        return self._server.base_url

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def redirect_uri(self, name: str) -> str:
        """The one redirect URI each network has registered for the app: the stack's callback route."""
        return f"{self._public_base_url}/callback/{name}"

    def profile(self, name: str) -> ProviderProfile:
        return self.providers[name].profile

    def env(self) -> dict[str, str]:
        """The functions' settings for the networks: `<NAME>_<KEY>` endpoint overrides (local mode's http://)."""
        values: dict[str, str] = {}
        for name, sim in self.providers.items():
            prefix = name.upper().replace("-", "_")
            for key, url in simulated_urls(name, sim.profile, host=self.url(name)).items():
                values[f"{prefix}_{key.upper()}"] = url
        return values

    def put_credentials(self, ssm_prefix: str) -> None:
        import boto3

        from local.stack import REGION

        ssm = boto3.client("ssm", region_name=REGION)
        for name, sim in self.providers.items():
            ssm.put_parameter(Name=f"{ssm_prefix}/{name}/{sim.profile.client_id_param}", Value=sim.client_id,
                              Type="String", Overwrite=True)
            ssm.put_parameter(Name=f"{ssm_prefix}/{name}/client_secret", Value=sim.client_secret,
                              Type="SecureString", Overwrite=True)

    def summary(self, name: str) -> dict[str, int]:
        """What the network has answered so far, by step: successful calls per step (code_exchange, chain,
        refresh, userinfo, revoke) and `errors`."""
        with self._lock:
            calls = list(self.providers[name].calls)
        counts = Counter(c.step if c.status < 400 else "errors" for c in calls)
        return {step: counts[step] for step in ("code_exchange", "chain", "refresh", "userinfo", "revoke", "errors")}

    # -- the wire ----------------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request (LoopbackServer's app interface)."""
        path, _, query = target.partition("?")
        name, _, rest = path.lstrip("/").partition("/")
        sim = self.providers.get(name)
        if sim is None:
            return json_response(404, {"error": "not_found", "error_description": f"no simulated network at {path}"})
        if rest == "authorize":
            if method == "GET":
                return self._authorize_page(sim, query)
            if method == "POST":
                return self._authorize_submit(sim, body)
            return json_response(405, {"error": "invalid_request", "error_description": f"{method} not allowed"})
        return self._forward(sim, method, target, headers, body)

    def _forward(self, sim: SimulatedProvider, method: str, target: str, headers: Mapping[str, str],
                 body: bytes) -> Response:
        kept = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding",
                                                                       "connection")}
        request = httpx.Request(method, self.base_url + target, headers=kept, content=body)
        try:
            with self._lock:
                answer = sim.handle_request(request)
        except httpx.TimeoutException:  # a quirk lost the answer: the client sees its connection dropped late
            return json_response(504, {"error": "temporarily_unavailable", "error_description": "answer lost"})
        return Response(answer.status_code, answer.content,
                        {"Content-Type": answer.headers.get("content-type", "application/json"),
                         "Cache-Control": "no-store"})

    # -- authorize -----------------------------------------------------------------------------------------------
    def _authorize_page(self, sim: SimulatedProvider, query: str) -> Response:
        try:
            params = single_values(query)
            scopes = self._check(sim, params)
        except BadRequest as exc:
            return self._error_page(sim, _Refused("invalid_request", str(exc)))
        except _Refused as exc:
            return self._refused(sim, exc)
        return html_response(200, self._page(sim, params, scopes))

    def _authorize_submit(self, sim: SimulatedProvider, body: bytes) -> Response:
        # Read leniently, like a browser's form post, then checked as the page was: a forged post gains nothing.
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {k: v[-1] for k, v in form.items() if k not in _FORM_ONLY}
        try:
            scopes = self._check(sim, params)
        except _Refused as exc:
            return self._refused(sim, exc)
        back = {"state": params["state"]}
        if form.get("action", ["cancel"])[-1] != "authorize":
            self.stats["denials"] += 1
            return redirect(_with_query(params["redirect_uri"], {
                "error": "access_denied", "error_description": "The user denied the request.", **back}))
        user = form.get("user", [""])[-1]
        if user not in NETWORK_USERS:
            return self._error_page(sim, _Refused("invalid_request", "Pick a user to log in as."))
        ticked = set(form.get("granted", []))
        granted = tuple(s for s in scopes if s in ticked or s in sim.profile.always_granted_scopes)
        with self._lock:
            code = sim.approve(user, granted, redirect_uri=params["redirect_uri"],
                               code_challenge=params.get("code_challenge"))
        self.stats["consents"] += 1
        answer = {"code": code, **back}
        if sim.profile.granted_scopes_param:
            answer[sim.profile.granted_scopes_param] = sim.profile.join_scopes(granted)
        return redirect(_with_query(params["redirect_uri"], answer))

    def _check(self, sim: SimulatedProvider, params: dict[str, str]) -> tuple[str, ...]:
        """The requested scopes of an authorization request the profile accepts; _Refused otherwise."""
        profile = sim.profile
        name = profile.name
        if params.get(profile.client_id_param) != sim.client_id:
            raise _Refused("invalid_client", f"Unknown {profile.client_id_param}.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri != self.redirect_uri(name):
            raise _Refused("redirect_uri_mismatch", "The redirect_uri is not registered for this app.")
        state = params.get("state")
        if not state:
            raise _Refused("invalid_request", "state is required.", redirect_uri)
        if params.get("response_type") != "code":
            raise _Refused("unsupported_response_type", "response_type must be code.", redirect_uri, state)
        challenge = params.get("code_challenge")
        if profile.pkce_support == "unsupported" and (challenge or "code_challenge_method" in params):
            raise _Refused("invalid_request", "PKCE is not supported here.", redirect_uri, state)
        if profile.pkce_support == "required" and not challenge:
            raise _Refused("invalid_request", "code_challenge is required.", redirect_uri, state)
        if challenge and params.get("code_challenge_method") != "S256":
            raise _Refused("invalid_request", "code_challenge_method must be S256.", redirect_uri, state)
        for key, value in profile.authorize_params.items():
            if params.get(key) != value:
                raise _Refused("invalid_request", f"{key} must be {value}.", redirect_uri, state)
        return profile.split_scopes(params.get("scope")) or profile.default_scopes

    def _refused(self, sim: SimulatedProvider, refused: _Refused) -> Response:
        if refused.redirect_uri is None:  # not a redirect URI the app registered: never send the browser there
            return self._error_page(sim, refused)
        self.stats["refused"] += 1
        return redirect(_with_query(refused.redirect_uri, {
            "error": refused.error, "error_description": refused.description,
            **({"state": refused.state} if refused.state else {})}))

    def _error_page(self, sim: SimulatedProvider, refused: _Refused) -> Response:
        self.stats["refused"] += 1
        return html_response(400, _ERROR.substitute({k: html.escape(v) for k, v in {
            "network": sim.profile.display_name, "error": refused.error, "description": refused.description}.items()}))

    def _page(self, sim: SimulatedProvider, params: dict[str, str], scopes: tuple[str, ...]) -> str:
        e = html.escape
        profile = sim.profile
        hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in params.items()
                         if k not in _FORM_ONLY)
        users = "".join(f'<option value="{e(u)}">User {e(u)} (@{e(u)})</option>' for u in NETWORK_USERS)
        boxes = "".join(
            f'<label><input type="checkbox" id="scope-{e(s)}" checked disabled> {e(s)} (always shared)</label><br>'
            if s in profile.always_granted_scopes else
            f'<label><input type="checkbox" id="scope-{e(s)}" name="granted" value="{e(s)}" checked> {e(s)}</label><br>'
            for s in dict.fromkeys(scopes))
        text = {"network": profile.display_name, "app_name": self.app_name, "redirect_uri": params["redirect_uri"],
                "form_action": f"/{profile.name}/authorize"}
        return _PAGE.substitute({k: e(v) for k, v in text.items()}, hidden_fields=hidden, user_options=users,
                                scope_boxes=boxes)


def _with_query(url: str, values: dict[str, Any]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(values)
