"""`make demo` (the README's first command) connects an account end to end and prints no secret and no raw EMF."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_demo_connects_an_account_and_redacts_every_secret():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TIKTOK_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    run = subprocess.run([sys.executable, "-m", "local.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "status=pending_confirmation" in out and "result=created" in out  # connect confirmation
    assert "Connection Created" in out
    assert re.search(r"status\s+active", out)
    assert "AES-256-GCM envelope" in out
    for name in ("session", "state", "code", "code_challenge", "claim"):
        values = re.findall(rf"[?&]{name}=([^&\s\"]*)", out)
        assert values, f"the demo no longer shows {name}"
        assert set(values) == {"<redacted>"}, f"{name} printed unredacted"
    assert "act." not in out and "rft." not in out  # the simulated TikTok's token prefixes
    # Powertools prints each metric as an EMF JSON line for CloudWatch; the demo totals them instead.
    assert '"_aws"' not in out + run.stderr and "CloudWatchMetrics" not in out + run.stderr
    assert re.search(r"^Metrics \(what CloudWatch would have received\): .*ColdStart 1.*ConnectionsCreated 1", out,
                     re.MULTILINE)


def test_demo_prints_its_steps_not_raw_json_log_records():
    """A newcomer reads `make demo` as a story: a Powertools JSON record (the audit trail's, say) dropped between
    its steps is the same noise as the EMF lines kept off the console; make dev silences the audit logger too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TIKTOK_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    run = subprocess.run([sys.executable, "-m", "local.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    raw = [line[:120] for line in (run.stdout + run.stderr).splitlines() if line.lstrip().startswith('{"')]
    assert raw == []
