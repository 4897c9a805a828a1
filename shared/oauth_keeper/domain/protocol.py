"""OAuth 2.0 as a confidential client, the pure part: secrets, PKCE, authorize URLs, token and error answers.

No I/O here: the HTTP adapter sends what these functions build and hands back what the provider said, so
every rule below (RFC 6749, RFC 7636, RFC 9207's `iss`, OIDC's id_token `sub`) is testable on plain data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from .errors import FailureKind, ProviderError
from .providers import SCOPE_PATTERN, LifetimeBounds, ProviderProfile
from .tokens import TokenSet


def new_secret() -> str:
    """256 bits of randomness, URL-safe (43 characters): states, nonces, connect-session tokens.

    RFC 9700 section 4.7.1: a state must be unguessable; it is stored only as a hash."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636 section 4.1): 64 URL-safe characters, inside the 43..128 allowed."""
    return secrets.token_urlsafe(48)  # 64 characters, inside RFC 7636's 43..128


def code_challenge(verifier: str, method: str) -> str:
    """The PKCE challenge for `method` (PKCE_METHODS): `s256` is RFC 7636 section 4.2 (base64url SHA-256),
    `s256-hex` is TikTok's variant (the hex digest, still labelled S256). Raises ValueError for another method."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if method == "s256":
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if method == "s256-hex":  # TikTok's desktop/mobile variant: the hex digest, still labelled S256
        return digest.hex()
    raise ValueError(f"unknown PKCE method {method!r}")


def authorize_url(
    profile: ProviderProfile,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: tuple[str, ...],
    code_verifier: str | None,
) -> str:
    """The authorization request URL (RFC 6749 section 4.1.1, RFC 7636 section 4.3): the profile's endpoint
    with client id, `response_type=code`, scopes joined the provider's way, redirect URI, state, challenge."""
    params = {
        **profile.authorize_params,
        profile.client_id_param: client_id,
        "response_type": "code",
        "scope": profile.join_scopes(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if code_verifier:  # every flow has one unless the profile declares PKCE unsupported
        params["code_challenge"] = code_challenge(code_verifier, profile.pkce)
        params["code_challenge_method"] = "S256"
    separator = "&" if "?" in profile.authorize_url else "?"
    return profile.authorize_url + separator + urlencode(params)


MAX_TOKEN_LENGTH = 4096  # characters of an access or refresh token (JWTs included); longer is not stored
MAX_ACCOUNT_ID_LENGTH = 256
MAX_DISPLAY_NAME_LENGTH = 256
MAX_URL_LENGTH = 2048
MAX_TOKEN_TYPE_LENGTH = 32
MAX_SCOPE_TEXT_LENGTH = 4096
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # RFC 6749 appendix A: tokens are VSCHAR (visible ASCII)


def token_answer(profile: ProviderProfile, body: Any, status: int, sent_at: int, *,
                 step: str = "refresh", bounds: LifetimeBounds | None = None) -> TokenSet:
    """What the token endpoint said (RFC 6749 sections 5.1 and 5.2), parsed, typed and bounded.

    Success is the presence of an access token, whatever the status says (TikTok's statuses are undocumented).
    Returns a TokenSet; raises ProviderError for an error answer (classified by the profile) and for a success
    answer that cannot be used (`invalid_answer`, transient, `maybe_processed`: the provider may have rotated).
    `step` (STEPS, or `chain`) selects the profile's error rules that apply; `bounds` are the step's own bounds of
    the access token's lifetime (None: the profile's `access_lifetime`)."""
    f = profile.token_fields
    access = body.get(f.access_token) if isinstance(body, dict) else None
    if access not in (None, ""):
        return parse_token_response(profile, body, sent_at, bounds=bounds)
    if _error_code(body) is None and 200 <= status < 300:
        raise invalid_answer(profile, body, status, "no access token")
    raise provider_error(profile, body, status, step=step)


def parse_token_response(profile: ProviderProfile, body: dict[str, Any], sent_at: int, *,
                         bounds: LifetimeBounds | None = None) -> TokenSet:
    """A successful token response (RFC 6749 section 5.1) as a TokenSet, mapped by the profile's field names.

    Expiries count from `sent_at` (epoch seconds, when the request left), so a slow answer never stretches
    them; each lifetime is bounded by the profile (`LifetimeBounds`), and a value that is missing, not a number
    or implausible becomes the profile's shortest documented lifetime, named in `anomalies`. An empty or missing
    refresh token becomes None: it never overwrites a stored one. Raises ProviderError (`invalid_answer`) when
    a token is of the wrong type, too long or not visible ASCII: such an answer cannot be stored."""
    f = profile.token_fields
    anomalies: list[str] = []
    access = _token(profile, body, f.access_token, sent_at)
    if access is None:
        raise invalid_answer(profile, body, 200, "no usable access token")
    refresh = _token(profile, body, f.refresh_token, sent_at)
    access_lifetime = bounded_lifetime(body.get(f.expires_in), bounds or profile.access_lifetime, f.expires_in,
                                       anomalies, shorter_is_safe=True)
    refresh_expires_at = short_refresh_expires_at = None
    if refresh and f.refresh_expires_in:
        reported = body.get(f.refresh_expires_in)
        refresh_expires_at = sent_at + bounded_lifetime(reported, profile.refresh_lifetime, f.refresh_expires_in,
                                                        anomalies)
        if type(reported) is int and 0 < reported < profile.refresh_lifetime.minimum:
            short_refresh_expires_at = sent_at + reported
    token_type = body.get(f.token_type)
    if not (isinstance(token_type, str) and 0 < len(token_type) <= MAX_TOKEN_TYPE_LENGTH
            and token_type.isascii() and token_type.isalnum()):
        if token_type is not None:
            anomalies.append(f"{f.token_type}:invalid")
        token_type = "Bearer"
    scope_text = body.get(f.scope)
    if isinstance(scope_text, list) and all(isinstance(s, str) for s in scope_text):  # Instagram's `permissions`
        scope_text = " ".join(scope_text)
    scopes: tuple[str, ...] = ()
    if isinstance(scope_text, str) and len(scope_text) <= MAX_SCOPE_TEXT_LENGTH:
        split = profile.split_scopes(scope_text)
        scopes = tuple(s for s in split if SCOPE_PATTERN.match(s))
        if len(scopes) != len(split):
            anomalies.append(f"{f.scope}:invalid_entries")
    elif scope_text is not None:
        anomalies.append(f"{f.scope}:invalid")
    account_id = _account_id(body, f.account_id)
    if account_id is not None and (len(account_id) > MAX_ACCOUNT_ID_LENGTH or not account_id.isprintable()):
        anomalies.append("account_id:invalid")
        account_id = None  # the callback then refuses the connect (account_unavailable): never guess
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        token_type=token_type,
        access_expires_at=sent_at + access_lifetime,
        refresh_expires_at=refresh_expires_at,
        scopes=scopes,
        account_id=account_id,
        issued_at=sent_at,
        anomalies=tuple(anomalies),
        short_refresh_expires_at=short_refresh_expires_at,
    )


def bounded_lifetime(value: Any, bounds: LifetimeBounds, name: str, anomalies: list[str], *,
                     shorter_is_safe: bool = False) -> int:
    """A provider's lifetime in seconds (an integer, an integral float, or a string of ASCII digits), trusted
    only inside `bounds`; otherwise `bounds.fallback`, with `<name>:missing`, `:unparsable` or `:out_of_bounds`
    added to `anomalies`. With `shorter_is_safe` (an access token: thinking it dies sooner only costs an early
    refresh, thinking it lives longer serves a dead token), a positive value below the minimum is kept as
    reported (`<name>:below_minimum`): never longer than the provider said."""
    if value is None or value == "":
        anomalies.append(f"{name}:missing")
        return bounds.fallback
    if isinstance(value, float) and math.isfinite(value) and (value.is_integer() or shorter_is_safe):
        value = math.floor(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        anomalies.append(f"{name}:unparsable")
        return bounds.fallback
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            anomalies.append(f"{name}:unparsable")
            return bounds.fallback
        value = int(value)
    if shorter_is_safe and value < bounds.minimum:  # zero or less: dead on arrival, refreshed before it is served
        anomalies.append(f"{name}:below_minimum")
        return max(0, value)
    if not bounds.minimum <= value <= bounds.maximum:
        anomalies.append(f"{name}:out_of_bounds")
        return bounds.fallback
    return value


def _token(profile: ProviderProfile, body: dict[str, Any], name: str, sent_at: int) -> str | None:
    """A token field: None when absent, null or empty; raises `invalid_answer` when present but unusable."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH or not _PRINTABLE.fullmatch(value):
        raise invalid_answer(profile, body, 200, f"unusable {name}")
    return value


def invalid_answer(profile: ProviderProfile, body: Any, status: int, what: str) -> ProviderError:
    """A success answer we cannot use. The provider may have issued (and rotated) tokens we never saw."""
    return ProviderError(f"{profile.display_name} answered the token request with {what}.", code="invalid_answer",
                         kind=FailureKind.TRANSIENT, log_id=log_id_of(body), http_status=status,
                         maybe_processed=True)


def _account_id(body: dict[str, Any], path: str | None) -> str | None:
    """The account the tokens belong to: a response field, or a claim of the id_token (`id_token.sub`).

    The id_token came straight from the token endpoint over TLS to an authenticated client, so OIDC Core
    3.1.3.7 lets us read it without checking its signature; we only need its subject.
    """
    if not path:
        return None
    if path.startswith("id_token."):
        return _scalar_text(dig(_jwt_claims(body.get("id_token")), path[len("id_token."):]))
    return _scalar_text(dig(body, path))


def _jwt_claims(token: Any) -> dict[str, Any]:
    try:
        payload = str(token).split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return data if isinstance(data, dict) else {}
    except (IndexError, ValueError):
        return {}


def provider_error(profile: ProviderProfile, body: Any, status: int, *, step: str | None = None) -> ProviderError:
    """An error answer (RFC 6749 section 5.2, or a nested `{"error": {"code"}}` as Meta's Graph API sends) as a
    ProviderError classified by the profile (`classify_answer`: its error rules for `step`, then its table).

    A 5xx or a redirect may come from something in front of the provider after the provider processed the
    request: `maybe_processed` says so."""
    code, kind = profile.classify_answer(body, status, step, _error_code(body) or ("http_" + str(status)))
    code = code or "http_" + str(status)
    return ProviderError(
        f"{profile.display_name} refused the token request ({code}).",
        code=code,
        kind=kind,
        log_id=log_id_of(body),
        http_status=status,
        # A 5xx may come from something in front of the provider after it processed the request, and so may a
        # redirect no token endpoint sends by itself: either may hide a rotation. So may `server_error` (RFC 6749
        # section 5.2: "an unexpected condition"), whatever status it came with.
        maybe_processed=status >= 500 or 300 <= status < 400 or code == "server_error",
    )


def _error_code(body: Any) -> str | None:
    """The error code of an error answer: `error`, or a nested `error.code`; a short printable string or None."""
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, dict):  # some APIs nest {"error": {"code": ...}}
        code = code.get("code")
    if not isinstance(code, str | int) or isinstance(code, bool) or code == "":
        return None
    code = str(code)
    return code if len(code) <= 64 and code.isascii() and code.isprintable() else "unrecognised_error"


def log_id_of(body: Any) -> str | None:
    """The provider's request id (TikTok's `log_id`), for support tickets; never a secret."""
    if not isinstance(body, dict):
        return None
    value = body.get("log_id") or dig(body, "error.log_id")
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        return None
    value = str(value)
    return value if len(value) <= 128 and value.isascii() and value.isprintable() else None


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (`data.user.open_id`) in parsed JSON; None when any step is missing."""
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _scalar_text(value: Any) -> str | None:
    """A JSON string or integer as text; None for anything else (an object is never an id)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def bounded_text(value: Any, limit: int) -> str | None:
    """A printable string of at most `limit` characters, else None: display names and ids from a provider."""
    text = _scalar_text(value)
    return text if text is not None and len(text) <= limit and text.isprintable() else None


def bounded_url(value: Any) -> str | None:
    """An absolute https URL of visible ASCII, at most MAX_URL_LENGTH long, else None (avatars)."""
    text = bounded_text(value, MAX_URL_LENGTH)
    return text if text and text.startswith("https://") and _PRINTABLE.fullmatch(text) else None
