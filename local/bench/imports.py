"""(a) Cold import time of each Lambda handler module, in fresh python3.13 processes.

Each child times its own import (time.perf_counter around `import <handler>`) and prints it; the figure is
the median over N children. Two environments:

- venv: the project's interpreter with PYTHONPATH = the function's folder + shared/ (what the brief and the
  tests use); the venv also holds the dev tools, which some libraries pick up (httpx imports click when present);
- layer-only: `python -S` (no site-packages) with PYTHONPATH = the function's folder + shared/ + a folder of
  links to exactly the layer's dependency closure (shared/requirements.txt) plus boto3 (the Lambda runtime
  ships it): what a deployed function can import.

Bytecode: this machine sets PYTHONDONTWRITEBYTECODE=1, so every import would compile from source (boto3 then
takes ~3x longer). Lambda runs from compiled .pyc files, so the children use a private PYTHONPYCACHEPREFIX and
one unmeasured warm-up run per target writes the bytecode first. One row shows boto3 from source for contrast.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from local import cfn
from local.bench.common import median, table

ROOT = cfn.ROOT
RUNS = 7
_CHILD = """
import sys, time
t = time.perf_counter()
{statement}
ms = (time.perf_counter() - t) * 1000
print("BENCH " + __import__("json").dumps({{"ms": ms, "boto3": "boto3" in sys.modules, "httpx": "httpx" in sys.modules,
      "click": "click" in sys.modules, "modules": len(sys.modules)}}))
"""


# What template.yaml's Globals give every function (placeholder values: nothing is called at import).
FUNCTION_ENV = {
    "CONNECTIONS_TABLE": "bench-connections", "FLOWS_TABLE": "bench-flows",
    "TOKEN_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/bench",
    "OWNER_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/bench-owner",
    "STACK_NAME": "bench",
    "EVENT_BUS_NAME": "bench-bus",
    "REFRESH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench-refresh",
    "ALLOWED_RETURN_ORIGINS": "https://app.example.com", "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Target:
    label: str
    statement: str
    path: tuple[str, ...]  # PYTHONPATH entries before the layer


def handler_targets() -> list[Target]:
    """Every function in template.yaml: the HTTP routes' functions, then the others (schedule, queue)."""
    seen: dict[str, tuple[str, str]] = {}
    for route in cfn.http_routes():
        seen.setdefault(route["function"], (route["handler"], route["code_uri"]))
    for name, resource in cfn.resources_of_type("AWS::Serverless::Function").items():
        props = resource["Properties"]
        seen.setdefault(name, (props["Handler"], props["CodeUri"]))
    targets = []
    for name, (handler, code_uri) in seen.items():
        module = handler.rsplit(".", 1)[0]
        folder = str((ROOT / code_uri).resolve())
        targets.append(Target(f"{name} ({module})", f"import {module}", (folder, str(ROOT / "shared"))))
    return targets


def baseline_targets() -> list[Target]:
    return [Target("bare `import boto3`", "import boto3", ()), Target("empty interpreter", "pass", ())]


# ---- the layer's dependency closure ----------------------------------------------------------------------

def layer_distributions() -> list[str]:
    """Distributions a deployed function can import: the layer's requirements, their dependencies, boto3's."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    roots = [line.split("#")[0].strip() for line in (ROOT / "shared" / "requirements.txt").read_text().splitlines()]
    todo = [r for r in roots if r] + ["boto3"]
    seen: dict[str, str] = {}
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        distribution = metadata.distribution(requirement.name)
        seen[name] = distribution.metadata["Name"]
        for spec in distribution.requires or []:
            dependency = Requirement(spec)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(spec)
    return sorted(seen.values())


def build_layer_dir(into: Path) -> list[str]:
    """Links to the top-level modules of every layer distribution; returns the distribution names."""
    from importlib import metadata

    into.mkdir(parents=True, exist_ok=True)
    names = layer_distributions()
    for name in names:
        distribution = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in distribution.files or []}
        for top in tops:
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__", "bin"):
                continue
            source = Path(str(distribution.locate_file(top)))
            link = into / top
            if source.exists() and not link.exists():
                link.symlink_to(source)
    return names


# ---- running children ------------------------------------------------------------------------------------

def _env(path: list[str], pycache: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(FUNCTION_ENV)  # handlers build their settings at import, as in Lambda: give them a deployment's
    env["PYTHONPATH"] = os.pathsep.join(path)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def run_child(target: Target, *, layer: Path | None, pycache: Path | None) -> tuple[dict, float]:
    """One fresh interpreter: the child's own figure, and the process's wall time seen from here."""
    path = list(target.path) + ([str(layer)] if layer else [])
    args = [sys.executable, *(["-S"] if layer else []), "-c", _CHILD.format(statement=target.statement)]
    started = time.perf_counter()
    done = subprocess.run(args, env=_env(path, pycache), capture_output=True, text=True, cwd=ROOT, check=False)  # noqa: S603
    wall = (time.perf_counter() - started) * 1000
    found = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode or not found:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": error}, wall
    return json.loads(found[-1][len("BENCH "):]), wall


def boto3_chain(target: Target, *, layer: Path, pycache: Path) -> str | None:
    """Which import chain brings boto3 in, from `python -X importtime` (None when it is not imported)."""
    path = list(target.path) + [str(layer)]
    args = [sys.executable, "-S", "-X", "importtime", "-c", target.statement]
    done = subprocess.run(args, env=_env(path, pycache), capture_output=True, text=True, cwd=ROOT, check=False)  # noqa: S603
    lines = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            lines.append((int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    index = next((i for i, (_, _, name) in enumerate(lines) if name == "boto3"), None)
    if index is None:
        return None
    cumulative, depth, _ = lines[index]
    chain = ["boto3"]
    for _, d, name in lines[index + 1:]:  # importtime prints a module after its children: parents follow
        if d < depth:
            chain.append(name)
            depth = d
    return " -> ".join(reversed(chain)) + f" ({cumulative / 1000:.0f} ms)"


def main() -> dict:
    print(__doc__.split("\n\n")[0].strip())
    print(f"Median of {RUNS} fresh processes per row (import time measured inside the child; process = whole "
          "interpreter run seen by the parent).\n")
    work = Path(tempfile.gettempdir()) / "oauth-keeper-bench"
    pycache = work / "pycache"
    layer = work / "layer"
    distributions = build_layer_dir(layer)
    targets = handler_targets() + baseline_targets()
    modes = {"venv": None, "layer-only": layer}

    for target in targets:  # warm-up: write the bytecode, not measured
        for mode_layer in modes.values():
            run_child(target, layer=mode_layer, pycache=pycache)
    samples: dict[tuple[str, str], list[tuple[dict, float]]] = {}
    for _ in range(RUNS):  # round-robin, so a burst of load elsewhere spreads over every row
        for target in targets:
            for mode, mode_layer in modes.items():
                samples.setdefault((target.label, mode), []).append(
                    run_child(target, layer=mode_layer, pycache=pycache))

    rows, results = [], {}
    for target in targets:
        row: list = [target.label]
        for mode in modes:
            runs = samples[(target.label, mode)]
            errors = [r["error"] for r, _ in runs if "error" in r]
            if errors:
                row += [f"failed: {errors[0]}", "-"]
                results[(target.label, mode)] = None
                continue
            ms = median(r["ms"] for r, _ in runs)
            row += [ms, median(w for _, w in runs)]
            results[(target.label, mode)] = ms
        first = samples[(target.label, "layer-only")][0][0]
        row.append(", ".join(n for n in ("boto3", "httpx") if first.get(n)) or "-")
        rows.append(row)
    print(table(["module", "venv import ms", "venv process ms", "layer-only import ms", "layer-only process ms",
                 "pulls in"], rows))

    source_runs = [run_child(baseline_targets()[0], layer=layer, pycache=None)[0] for _ in range(3)]
    source_ms = median(r.get("ms", float("nan")) for r in source_runs)
    print(f"\nboto3 compiled from source (no .pyc, as PYTHONDONTWRITEBYTECODE=1 makes every run here): "
          f"{source_ms:.0f} ms (median of 3, layer-only)")
    print(f"Layer-only closure: {', '.join(distributions)}")

    chains = {}
    for target in handler_targets():
        chain = boto3_chain(target, layer=layer, pycache=pycache)
        if chain:
            chains[target.label] = chain
    if chains:
        print("\nWhy boto3 is imported at handler import (first chain, python -X importtime, layer-only):")
        for label, chain in chains.items():
            print(f"  {label}: {chain}")
    print("\nFigures are from x86_64 here; Lambda runs arm64 (Graviton) at 256 MB: compare rows, not absolutes.")
    return {"results": results, "source_boto3_ms": source_ms, "chains": chains}
