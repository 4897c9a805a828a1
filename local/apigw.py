"""Build API Gateway HTTP API (payload 2.0) events from template.yaml's routes, as API Gateway would."""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from local import cfn

LOCAL_ACCOUNT = "123456789012"
_IMPORT_LOCK = threading.RLock()
LOCAL_CALLER_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:user/local-backend"  # the same identity local/sigv4.py knows


@dataclass(frozen=True)
class Route:
    function: str
    handler: str  # module.function
    method: str
    path: str  # /callback/{provider}
    auth: str  # NONE | AWS_IAM

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None

    code_uri: str = ""

    def load_handler(self):
        """Import the handler from its CodeUri, as Lambda would from /var/task (module names are unique)."""
        module_name, func = self.handler.rsplit(".", 1)
        with _IMPORT_LOCK:  # concurrent first requests must not see a half-imported module
            module = sys.modules.get(module_name)
            if module is None:
                path = cfn.ROOT / self.code_uri / f"{module_name}.py"
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[module_name] = module
        return getattr(module, func)


def routes() -> list[Route]:
    return [Route(r["function"], r["handler"], r["method"], r["path"], r["auth"], r["code_uri"])
            for r in cfn.http_routes()]


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    for route in routes():
        params = route.match(method, path)
        if params is not None:
            return route, params
    raise LookupError(f"No route for {method} {path}")


def http_event(
    method: str,
    path: str,
    *,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    body: str | bytes | None = None,
    caller_arn: str | None = LOCAL_CALLER_ARN,
    domain: str = "127.0.0.1:3000",
) -> tuple[Route, dict[str, Any]]:
    """The event API Gateway would send for this request, and the route (function) it goes to."""
    route, path_params = find_route(method, path)
    now = time.time()
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    headers.setdefault("host", domain)
    is_binary = isinstance(body, bytes)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method.upper(), "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "local")},
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_binary,
    }
    if cookies:
        event["cookies"] = cookies
    if path_params:
        event["pathParameters"] = path_params
    if raw_query:
        # API Gateway also offers a decoded map (repeated keys joined by commas); the handlers ignore it.
        from urllib.parse import parse_qsl
        joined: dict[str, str] = {}
        for k, v in parse_qsl(raw_query, keep_blank_values=True):
            joined[k] = f"{joined[k]},{v}" if k in joined else v
        event["queryStringParameters"] = joined
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if is_binary else body
    if route.auth == "AWS_IAM" and caller_arn:
        event["requestContext"]["authorizer"] = {"iam": {
            "accessKey": "AKIALOCAL", "accountId": LOCAL_ACCOUNT, "callerId": "AIDALOCAL",
            "principalOrgId": None, "userArn": caller_arn, "userId": "AIDALOCAL",
        }}
    return route, event


class LambdaContext:
    """The few attributes Powertools reads from a Lambda context."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        """The whole of the function's Timeout in template.yaml: the invocation has just started (the harness
        in local/lambda_harness.py counts it down in simulated time)."""
        return int(_timeout(self.function_name) * 1000)


def _timeout(function: str) -> float:
    resources = cfn.template()["Resources"]
    props = resources[function]["Properties"] if function in resources else {}
    return float(props.get("Timeout") or cfn.template()["Globals"]["Function"]["Timeout"])


def invoke(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Send one request through the template's route to its handler, in-process."""
    route, event = http_event(method, path, **kwargs)
    if route.auth == "AWS_IAM" and "authorizer" not in event["requestContext"]:
        # API Gateway refuses an unsigned call to an IAM route before any function runs.
        return {"statusCode": 403, "headers": {"content-type": "application/json"},
                "body": '{"message":"Forbidden"}'}
    return route.load_handler()(event, LambdaContext(route.function))


class Browser:
    """Just enough of a browser for our routes: it sends its cookies and keeps the ones it is given."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def get(self, url: str) -> dict[str, Any]:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        response = invoke("GET", parts.path, raw_query=parts.query,
                          cookies=[f"{k}={v}" for k, v in self.cookies.items()] or None)
        for cookie in response.get("cookies", []):
            name, _, rest = cookie.partition("=")
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return response
