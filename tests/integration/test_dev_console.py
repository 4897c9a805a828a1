"""`make dev`'s console: the banner and the request log, never the handlers' raw EMF metric lines."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_make_dev_prints_no_raw_emf_when_handlers_run():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TIKTOK_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    dev = subprocess.Popen([sys.executable, "-m", "local.dev", "--port", "0", "--tiktok-port", "0",
                            "--networks-port", "0"], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in dev.stdout], daemon=True).start()
    out: list[str] = []
    try:
        while not any(line.startswith("Requests (paths only") for line in out):
            out.append(lines.get(timeout=120))
        dashboard = re.search(r"Dashboard\s+(http://\S+)/dev/", "".join(out)).group(1)
        # The dashboard's first poll: its proxy signs GET /connections for the backend API function, whose
        # first invocation is a cold start (Powertools prints the ColdStart metric whatever
        # POWERTOOLS_METRICS_DISABLED says), then a connect session for the connect-sessions function.
        assert httpx.get(f"{dashboard}/dev/api/state", timeout=30).status_code == 200
        connect = httpx.post(f"{dashboard}/dev/api/connect", json={"mode": "popup"},
                             headers={"Origin": dashboard}, timeout=30)
        assert connect.status_code == 201, connect.text
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)
    while not lines.empty():
        out.append(lines.get())
    console = "".join(out)

    assert re.search(r"POST\s+/dev/api/connect\s+201", console) and "Stopped." in console  # request log, shutdown
    assert '"_aws"' not in console and "CloudWatchMetrics" not in console
