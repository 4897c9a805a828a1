"""HTTP answers in one place: security headers, HTML pages for browsers, JSON errors for the API, cookies."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from ..domain.errors import FlowRejected, OAuthKeeperError
from ..observability import logger

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1f2328}"
    "h1{font-size:1.4rem}p{line-height:1.5}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# No scripts, no third-party content, nothing framed, no forms: a page that can only be read.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def api_app() -> APIGatewayHttpResolver:
    """A resolver for JSON routes: every failure becomes the one error shape, never a stack trace."""
    app = APIGatewayHttpResolver(debug=False)  # debug would print whole events, query strings included
    app.exception_handler(NotFoundError)(not_found_json)
    app.exception_handler(OAuthKeeperError)(json_error)
    app.exception_handler(Exception)(unexpected_json)
    return app


def browser_app() -> APIGatewayHttpResolver:
    """A resolver for browser routes: failures become small HTML pages that say what to do next."""
    app = APIGatewayHttpResolver(debug=False)
    app.exception_handler(NotFoundError)(not_found_html)
    app.exception_handler(OAuthKeeperError)(html_error)
    app.exception_handler(Exception)(unexpected_html)
    return app


def html_page(status: int, title: str, message: str, *, cookies: list[Cookie] | None = None) -> Response:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=body,
                    headers=dict(SECURITY_HEADERS), cookies=cookies or [])


# The pop-up's only script: constant, so the CSP can allow exactly it by hash. The result travels as JSON
# data (never executed) and goes to the app's exact origin only.
_POPUP_SCRIPT = (
    "var d=JSON.parse(document.getElementById('result').textContent);"
    "if(window.opener&&!window.opener.closed){window.opener.postMessage(d.message,d.origin);window.close();}"
    "else{window.location.replace(d.fallback);}"
)
_POPUP_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_POPUP_SCRIPT.encode()).digest()).decode()
POPUP_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "default-src 'none';", f"default-src 'none'; script-src 'sha256-{_POPUP_SCRIPT_HASH}';"
)


def popup_result(origin: str, message: dict[str, Any], fallback: str, *,
                 cookies: list[Cookie] | None = None) -> Response:
    """Post the result to the window that opened us (only at `origin`) and close; without an opener, fall
    back to the full-page redirect."""
    data = json.dumps({"origin": origin, "message": message, "fallback": fallback})
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert in <script>
    title = {"connected": "Connected", "pending_confirmation": "Almost done"}.get(
        str(message.get("status")), "Connection not completed")
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>You can close this window and go back to the app.</p>"
        f"<script type=application/json id=result>{data}</script><script>{_POPUP_SCRIPT}</script>"
        "</body></html>"
    )
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": POPUP_CONTENT_SECURITY_POLICY}
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=body, headers=headers,
                    cookies=cookies or [])


def redirect(location: str, *, cookies: list[Cookie] | None = None) -> Response:
    return Response(status_code=302, headers={**SECURITY_HEADERS, "Location": location}, cookies=cookies or [])


def json_response(status: int, data: Any) -> Response:
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(data, separators=(",", ":")),
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def json_error(exc: OAuthKeeperError) -> Response:
    if exc.status >= 500:
        logger.error("Request failed", extra={"error_code": exc.code})
    body = {"error": {"code": exc.code, "field": exc.field, "message": exc.message, **exc.extra}}
    return json_response(exc.status, body)


def html_error(exc: OAuthKeeperError) -> Response:
    if isinstance(exc, FlowRejected):
        return html_page(exc.status, exc.title, exc.message)
    if exc.status >= 500:
        logger.error("Request failed", extra={"error_code": exc.code})
        return html_page(503, "Something went wrong on our side",
                         "Please go back to the app and try again in a few minutes.")
    title = "Not found" if exc.status == 404 else "This link can't be used"
    return html_page(exc.status, title, exc.message + " Go back to the app and start again.")


def not_found_json(exc: Exception) -> Response:
    """No route matched (e.g. a path parameter with characters no route accepts): a 404, never a 500."""
    return json_response(404, {"error": {"code": "not_found", "field": None, "message": "No such route."}})


def not_found_html(exc: Exception) -> Response:
    return html_page(404, "Not found", "This address is not part of the sign-in. Go back to the app and start again.")


def unexpected_html(exc: Exception) -> Response:
    logger.exception("Unexpected failure")
    return html_page(500, "Something went wrong on our side", "Please go back to the app and try again later.")


def unexpected_json(exc: Exception) -> Response:
    logger.exception("Unexpected failure")
    return json_response(500, {"error": {"code": "internal_error", "field": None,
                                         "message": "Something went wrong; try again later."}})


def flow_cookie(name: str, value: str, max_age: int) -> Cookie:
    """__Host- prefix: Secure, Path=/, no Domain, so no sibling subdomain can set or read it."""
    return Cookie(name=name, value=value, path="/", secure=True, http_only=True,
                  same_site=SameSite.LAX_MODE, max_age=max_age)


def expired_cookie(name: str) -> Cookie:
    return flow_cookie(name, "", 0)
