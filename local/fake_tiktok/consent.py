"""TikTok's consent page and its own error page, rendered from the templates next to this module
(consent.html, error.html)."""

import html
from collections.abc import Mapping
from pathlib import Path
from string import Template

from .authority import BASIC_SCOPE, AuthRequest, TikTokUser
from .wire import log_id

# The OAuth parameters the consent form carries through as hidden fields.
AUTHORIZE_PARAMS = (
    "client_key",
    "response_type",
    "scope",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "disable_auto_auth",
)


def _load(name: str) -> Template:
    # The files are indented for reading, but pages go out as one line, byte for byte what the simulator has
    # always sent. So a line break in a template may only fall between two tags, never inside text.
    text = Path(__file__).with_name(name).read_text(encoding="utf-8")
    return Template("".join(line.strip() for line in text.splitlines()))


_CONSENT = _load("consent.html")
_ERROR = _load("error.html")


def _fill(template: Template, text: Mapping[str, str], markup: Mapping[str, str] | None = None) -> str:
    """Fill a template: every `text` value is HTML-escaped (quotes too); `markup` is built in this module, from
    escaped parts only. Anything echoed from a request or a setting goes through one or the other."""
    return template.substitute({name: html.escape(value) for name, value in text.items()}, **(markup or {}))


def consent_page(
    req: AuthRequest, *, app_name: str, users: Mapping[str, TikTokUser], preselect: str, form_action: str
) -> str:
    """The page a browser sees at the authorize URL. No JavaScript: a plain form whose two submit buttons tell
    Authorize from Cancel, the request carried through as hidden fields and `preselect` (a handle or open_id)
    chosen in the user list."""
    e = html.escape
    hidden = "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(req.params[name])}">'
        for name in AUTHORIZE_PARAMS
        if name in req.params
    )
    options = "".join(
        f'<option value="{e(handle)}"{" selected" if preselect in (handle, u.open_id) else ""}>'
        f"{e(u.display_name)} (@{e(handle)})</option>"
        for handle, u in users.items()
    )
    boxes = [
        f'<label><input type="checkbox" id="scope-{BASIC_SCOPE}" checked disabled> {BASIC_SCOPE}'
        " (always shared)</label><br>"
    ]
    boxes += [
        f'<label><input type="checkbox" id="scope-{e(s)}" name="granted" value="{e(s)}" checked> {e(s)}</label><br>'
        for s in dict.fromkeys(req.scopes)
        if s != BASIC_SCOPE
    ]
    return _fill(
        _CONSENT,
        text={"app_name": app_name, "redirect_uri": req.redirect_uri, "form_action": form_action},
        markup={"hidden_fields": hidden, "user_options": options, "scope_boxes": "".join(boxes)},
    )


def error_page(error: str, description: str) -> str:
    """TikTok's own page for an authorize request it cannot send back to the app."""
    return _fill(_ERROR, text={"error": error, "description": description, "log_id": log_id()})
