"""What the refresh worker really logs: one invocation of its handler on a batch, its stdout captured byte for byte.

The deployed handler (functions/refresh_worker) runs over the simulated world's container at the template's
default log level (INFO) with Powertools metrics on, so the capture holds its JSON log lines and its EMF metric
blobs exactly as CloudWatch Logs would receive them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from typing import Any

from oauth_keeper import root
from oauth_keeper.observability import logger, metrics

from local import cfn
from local.apigw import LambdaContext
from local.bench.common import environment, quiet, records_for, world_services
from local.simulation import World

DUE_STEP = 100 * 60


def worker_invocation_output(batch: int, level: str = "INFO") -> dict[str, Any]:
    """Bytes, lines, EMF lines and distinct metrics (namespace, name, dimension names and values) of one warm
    refresh worker invocation that refreshes `batch` due connections."""
    world = World.create()
    services = world_services(world)
    with quiet():
        ids = [world.connect(f"user{i}", owner_id=f"owner{i}").connection_id for i in range(2 * batch)]
        world.clock.advance(DUE_STEP)
    first, ids = ids[:batch], ids[batch:]  # the first invocation is the cold one (its ColdStart metric): not measured
    previous = root.install(services)
    sys.path.insert(0, str(cfn.ROOT / "functions" / "refresh_worker"))
    buffer = io.StringIO()
    handler_stream = logger.registered_handler.stream
    old_level = logger.log_level
    try:
        with environment({"POWERTOOLS_METRICS_DISABLED": "false"}):
            module = importlib.import_module("refresh_worker_handler")
            logger.setLevel(level)
            logger.registered_handler.setStream(buffer)
            with contextlib.redirect_stdout(io.StringIO()):
                module.handler({"Records": records_for(first)}, LambdaContext("RefreshWorkerFunction"))
            buffer.seek(0)
            buffer.truncate()
            metrics.clear_metrics()
            with contextlib.redirect_stdout(buffer):
                before = world.tiktok.stats["refresh_successes"]
                module.handler({"Records": records_for(ids)}, LambdaContext("RefreshWorkerFunction"))
                refreshed = world.tiktok.stats["refresh_successes"] - before
    finally:
        logger.registered_handler.setStream(handler_stream)
        logger.setLevel(old_level)
        sys.path.remove(str(cfn.ROOT / "functions" / "refresh_worker"))
        root.install(previous)
    if refreshed != batch:
        raise RuntimeError(f"expected {batch} refreshes, TikTok saw {refreshed}")
    text = buffer.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    emf = [json.loads(line) for line in lines if '"_aws"' in line and line.startswith("{")]
    distinct = set()
    for blob in emf:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                values = tuple((d, str(blob.get(d))) for d in dimensions)
                for metric in directive["Metrics"]:
                    distinct.add((directive["Namespace"], metric["Name"], values))
    return {"bytes": len(text.encode()), "lines": len(lines), "emf_lines": len(emf),
            "log_lines": len(lines) - len(emf), "metrics": sorted(distinct), "batch": batch,
            "sample": [line[:160] for line in lines if '"_aws"' not in line][:3]}
