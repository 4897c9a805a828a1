"""local/security_checks.sh's summary: one verdict per check, and an unreachable vulnerability database said plainly.

The script runs for real; only the tools it calls are stand-ins (a `python3.13` that plays `uv` and the tools it
runs, a `curl` that plays the reachability probe), so no network and no tool install is needed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
# python3.13 -m uv ...: `uv --version` and `uv export` succeed; a tool run passes, except pip-audit when told to fail
case "$*" in
  *pip-audit*) [ "$FAKE_AUDIT" = pass ] && exit 0
               echo "ERROR:pip_audit._cli:annotated-types: Dependency not found on PyPI and could not be audited" >&2
               exit 1 ;;
  *) exit 0 ;;
esac
"""
FAKE_CURL = """#!/bin/sh
[ "$FAKE_PYPI" = reachable ] && exit 0
echo "curl: (7) Failed to connect to pypi.org port 443" >&2
exit 7
"""


def run_checks(tmp_path: Path, *, audit: str, pypi: str, unreachable: str) -> tuple[int, dict[str, str], str]:
    """(exit code, {check: verdict} from the summary, everything after the summary's rows)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("python3.13", FAKE_PYTHON), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AUDIT": audit,
           "FAKE_PYPI": pypi, "AUDIT_UNREACHABLE": unreachable}
    run = subprocess.run(["bash", str(ROOT / "local" / "security_checks.sh")], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    summary = run.stdout.split("==> summary\n", 1)[1].splitlines()
    rows = {}
    for line in summary:
        name, _, verdict = line.strip().partition(" ")
        if name in ("checkov", "bandit", "pip-audit") and name not in rows:
            rows[name] = verdict.strip()
    rest = "\n".join(summary[len(rows):])
    return run.returncode, rows, rest


def test_an_unreachable_database_is_not_audited_never_ok_and_said_plainly(tmp_path):
    code, rows, rest = run_checks(tmp_path, audit="fail", pypi="unreachable", unreachable="warn")

    assert code == 0  # warn: reported, the run goes on (the Makefile's default on this network)
    assert rows == {"checkov": "ok", "bandit": "ok", "pip-audit": "NOT AUDITED"}
    assert "ok" not in rest.split()  # no second line that reads as a pass
    assert "could not reach PyPI's vulnerability data" in rest
    assert "No dependency was checked for known vulnerabilities: this is not a clean result." in " ".join(
        rest.split())


def test_an_unreachable_database_fails_the_run_when_asked_to(tmp_path):
    code, rows, rest = run_checks(tmp_path, audit="fail", pypi="unreachable", unreachable="fail")

    assert code == 1
    assert rows["pip-audit"] == "FAILED (vulnerability database unreachable)"
    assert "could not reach PyPI's vulnerability data" in rest


def test_a_finding_with_the_database_reachable_fails_whatever_audit_unreachable_says(tmp_path):
    code, rows, rest = run_checks(tmp_path, audit="fail", pypi="reachable", unreachable="warn")

    assert code == 1
    assert rows["pip-audit"] == "FAILED (exit 1)"
    assert "vulnerability data" not in rest


def test_a_clean_run_says_ok_for_each_check_and_nothing_else(tmp_path):
    code, rows, rest = run_checks(tmp_path, audit="pass", pypi="reachable", unreachable="warn")

    assert code == 0
    assert rows == {"checkov": "ok", "bandit": "ok", "pip-audit": "ok"}
    assert rest.strip() == ""
