"""(f) Cold start, measured whole: import + client creation + one request, per handler, against a minimal boto3 handler.

Each row is a fresh `python -S` process with only the layer's dependency closure (as in (a)), the function's
environment from a moto server this process runs (the template's tables, keys, parameters, bus and queue: see
local/stack.py), AWS_ENDPOINT_URL pointing at it. The child times the handler module's import, then one
invocation with a representative event (an SQS record, the schedule's event, an API Gateway request), and counts
the boto3 clients it creates (with the time each took) and the AWS requests it makes. The reference is the
smallest boto3 handler: `import boto3`, one DynamoDB client, one GetItem, in the same kind of process against
the same moto server. Both sides pay moto's answer times, so the ratio is what counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from local.bench.common import median, spread, table
from local.bench.imports import ROOT, build_layer_dir, handler_targets

RUNS = int(os.environ.get("BENCH_COLD_RUNS", "5"))
GOAL = 1.5

_PATCH = """
import sys, time, json
t0 = time.perf_counter()
import botocore.client, botocore.session
created, requests = [], dict()
_create = botocore.session.Session.create_client
def create_client(self, service_name, *args, **kwargs):
    started = time.perf_counter()
    client = _create(self, service_name, *args, **kwargs)
    created.append([service_name, (time.perf_counter() - started) * 1000])
    return client
botocore.session.Session.create_client = create_client
_call = botocore.client.BaseClient._make_api_call
def make_api_call(self, operation, params):
    key = self.meta.service_model.service_name + "." + operation
    requests[key] = requests.get(key, 0) + 1
    return _call(self, operation, params)
botocore.client.BaseClient._make_api_call = make_api_call
patch_ms = (time.perf_counter() - t0) * 1000
"""

_HANDLER_CHILD = _PATCH + """
t = time.perf_counter()
import {module} as handler_module
import_ms = (time.perf_counter() - t) * 1000
class Context:
    function_name = "{function}"; function_version = "$LATEST"; memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:{function}"
    aws_request_id = "bench"; log_group_name = "/aws/lambda/bench"; log_stream_name = "bench"
    def get_remaining_time_in_millis(self): return 30000
event = json.loads(sys.stdin.read())
import io, contextlib
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    answer = handler_module.handler(event, Context())
invoke_ms = (time.perf_counter() - t) * 1000
status = answer.get("statusCode") if isinstance(answer, dict) else None
print("BENCH " + json.dumps({{"import_ms": import_ms, "invoke_ms": invoke_ms, "created": created,
                             "requests": requests, "status": status}}))
"""

_REFERENCE_CHILD = _PATCH + """
t = time.perf_counter()
import boto3
import_ms = (time.perf_counter() - t) * 1000
t = time.perf_counter()
client = boto3.client("dynamodb")
client.get_item(TableName="{table}", Key={{"connection_id": {{"S": "con_missing"}}}}, ConsistentRead=True)
invoke_ms = (time.perf_counter() - t) * 1000
print("BENCH " + json.dumps({{"import_ms": import_ms, "invoke_ms": invoke_ms, "created": created,
                             "requests": requests, "status": None}}))
"""


def events(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One representative event per function: what its first invocation most often is."""
    from local.apigw import http_event

    def api(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return http_event(method, path, **kwargs)[1]

    return {
        "RefreshWorkerFunction": {"Records": [{"messageId": "m0", "body": json.dumps(
            {"connection_id": "con_00000000000000000000000000000000"})}]},
        "SweeperFunction": {},
        "BackendApiFunction": api("GET", "/connections/con_00000000000000000000000000000000"),
        "ConnectSessionsFunction": api("POST", "/connect-sessions", headers={"content-type": "application/json"},
                                       body=json.dumps({"provider": "tiktok", "owner_id": "owner-1",
                                                        "return_to": env["ALLOWED_RETURN_ORIGINS"] + "/x",
                                                        "mode": "popup"})),
        "AuthorizeFunction": api("GET", "/connect/tiktok", raw_query="session=unknown"),
        "CallbackFunction": api("GET", "/callback/tiktok", raw_query="state=unknown&code=abc"),
        "WebhookFunction": api("POST", "/webhooks/tiktok", headers={"content-type": "application/json",
                                                                  "tiktok-signature": "t=1,s=00"},
                               body=json.dumps({"event": "authorization.removed", "user_openid": "x"})),
    }


def lazy_saving(created: list[list[Any]], used: set[str]) -> float:
    """ms a first invocation would save creating only the clients it used. The first client created also pays
    botocore's one-time set-up (session, loaders, endpoint data), so when it goes unused that set-up moves to the
    first used client instead of vanishing: the saving is then that client's own (marginal) time."""
    if not created:
        return 0.0
    total = sum(ms for _, ms in created)
    if not used & {c for c, _ in created}:
        return total
    first_used = next(i for i, (c, _) in enumerate(created) if c in used)
    lazy = created[0][1] + sum(ms for i, (c, ms) in enumerate(created) if c in used and i not in (0, first_used))
    return total - lazy


def _run(code: str, env: dict[str, str], layer: Path, path: list[str], stdin: str = "") -> dict[str, Any]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AWS_"))}
    child_env.update(env)
    child_env["PYTHONPATH"] = os.pathsep.join([*path, str(layer)])
    child_env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "oauth-keeper-bench" / "pycache")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-S", "-c", code], env=child_env, input=stdin, capture_output=True,  # noqa: S603
                          text=True, cwd=ROOT, check=False)
    found = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode or not found:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(found[-1][len("BENCH "):])
    result["process_ms"] = (time.perf_counter() - started) * 1000
    result["total_ms"] = result["import_ms"] + result["invoke_ms"]
    return result


def main() -> dict[str, Any]:
    print(__doc__.split("\n\n")[0].strip())
    import httpx
    from moto.server import ThreadedMotoServer

    from local.bench.sweep_reads import _dummy_aws_env
    from local.fake_tiktok import FakeTikTok
    from local.stack import DUMMY_CREDENTIALS, create_resources

    layer = Path(tempfile.gettempdir()) / "oauth-keeper-bench" / "layer"
    build_layer_dir(layer)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    tiktok = FakeTikTok(redirect_uris=("http://127.0.0.1:3000/callback/tiktok",)).start()
    saved = os.environ.get("AWS_ENDPOINT_URL")
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        with _dummy_aws_env():
            resources = create_resources(public_base_url="http://127.0.0.1:3000",
                                         allowed_return_origins=["http://127.0.0.1:3000"],
                                         tiktok_base_url=tiktok.base_url, client_key=tiktok.client_key,
                                         client_secret=tiktok.client_secret, connect_confirmation="required")
        env = {**DUMMY_CREDENTIALS, **resources.env, "AWS_ENDPOINT_URL": endpoint,
               "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_METRICS_NAMESPACE": "OAuthKeeper"}
        payloads = events(env)
        targets = {t.label.split(" (")[0]: t for t in handler_targets()}
        reference = _REFERENCE_CHILD.format(table=env["CONNECTIONS_TABLE"])
        jobs = {name: (_HANDLER_CHILD.format(module=t.statement.split()[-1], function=name), list(t.path),
                       json.dumps(payloads.get(name, {}))) for name, t in targets.items()}
        jobs["reference: boto3 + 1 GetItem"] = (reference, [], "")
        for code, path, stdin in jobs.values():  # warm-up: bytecode, not measured
            _run(code, env, layer, path, stdin)
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
        for _ in range(RUNS):  # round-robin: a burst of load elsewhere spreads over every row
            for name, (code, path, stdin) in jobs.items():
                samples[name].append(_run(code, env, layer, path, stdin))
    finally:
        tiktok.stop()
        moto.stop()
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved

    reference_runs = samples.pop("reference: boto3 + 1 GetItem")
    failed = [r["error"] for r in reference_runs if "error" in r]
    if failed:
        raise RuntimeError(f"reference failed: {failed[0]}")
    rows, results = [], {}
    for name, runs in samples.items():
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            rows.append([name, f"failed: {errors[0][:80]}", "", "", "", "", "", ""])
            continue
        ratios = [r["total_ms"] / b["total_ms"] for r, b in zip(runs, reference_runs, strict=True)]
        first = runs[0]
        created = [c for c, _ in first["created"]]
        used = {key.split(".")[0] for key in first["requests"]}
        unused = [c for c in created if c not in used]
        unused_ms = median(lazy_saving(r["created"], used) for r in runs)
        create_ms = median(sum(ms for _, ms in r["created"]) for r in runs)
        results[name] = {"ratios": ratios, "total_ms": median(r["total_ms"] for r in runs), "created": created,
                         "unused": unused, "unused_ms": unused_ms, "create_ms": create_ms,
                         "requests": first["requests"], "status": first["status"]}
        rows.append([name, f"{median(r['import_ms'] for r in runs):.0f}", f"{median(r['invoke_ms'] for r in runs):.0f}",
                     spread(ratios, "{:.2f}x"), ", ".join(created) or "-", f"{create_ms:.0f}",
                     ", ".join(f"{k} x{v}" if v > 1 else k for k, v in first["requests"].items()) or "-",
                     f"{', '.join(unused) or '-'} ({unused_ms:.0f} ms)" if unused else "-"])
    ref_total = median(r["total_ms"] for r in reference_runs)
    print(f"\nMedian of {RUNS} fresh processes per row, ms; ratio = handler total / reference total of the same "
          "round (min/median/max). Reference: import boto3 "
          f"{median(r['import_ms'] for r in reference_runs):.0f} ms + client and GetItem "
          f"{median(r['invoke_ms'] for r in reference_runs):.0f} ms = {ref_total:.0f} ms.\n")
    print(table(["function", "import ms", "first invocation ms", f"total / reference (goal <= {GOAL}x)",
                 "boto3 clients created", "creating them ms", "AWS requests",
                 "created but unused (lazy creation would save)"],
                rows))
    print("\nClients are created by the composition root when the invocation first builds a use case (root.py), "
          "not at import. 'created but unused' is what creating clients only for what the invocation needs would "
          "save on that first invocation; boto3's own import (in 'first invocation' for handlers that import it "
          "lazily) is paid by the reference too. Timings are noisy on this shared machine; the ratio to the "
          "reference measured in the same round is the figure.")
    return {"results": results, "reference_ms": ref_total}
