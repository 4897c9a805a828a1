"""`make test` says how long it will take before it starts, and how long it took when it ends, passed or failed.

The Makefile runs for real in a scratch copy; the commands it runs are stand-ins (a `python3.13` that plays uv,
ruff and pytest, a security script that passes), so this takes a second, not the suite's twenty minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/bin/sh
# python3.13 -m uv ...: every step passes, except pytest when FAKE_PYTEST=fail
case "$*" in
  *"run --frozen pytest"*) echo "pytest (stand-in)"; [ "$FAKE_PYTEST" = fail ] && exit 1; exit 0 ;;
  *) exit 0 ;;
esac
"""


def make_test(tmp_path: Path, pytest_outcome: str) -> subprocess.CompletedProcess:
    work = tmp_path / "repo"
    (work / "local").mkdir(parents=True)
    (work / ".venv").mkdir()
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    for name in ("pyproject.toml", "uv.lock"):
        (work / name).write_text("")
    (work / "local" / "security_checks.sh").write_text("echo 'security checks (stand-in)'\n")
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "sam").write_text("#!/bin/sh\n")  # installed: make does not install it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.13").write_text(FAKE_PYTHON)
    (bin_dir / "python3.13").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HOME=str(home), FAKE_PYTEST=pytest_outcome)
    return subprocess.run(["make", "--no-print-directory", "test"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_make_test_gives_an_estimate_first_and_the_time_it_took_last(tmp_path):
    run = make_test(tmp_path, "pass")

    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"make test: ruff, lint-imports, security checks, then every test: about \d+ minutes .*",
                        lines[0])
    assert "pytest (stand-in)" in lines
    assert re.fullmatch(r"make test: passed in 0 min \d+ s\.", lines[-1])


def test_a_failing_make_test_still_says_how_long_it_took_and_fails(tmp_path):
    run = make_test(tmp_path, "fail")

    assert run.returncode != 0
    assert re.fullmatch(r"make test: FAILED in 0 min \d+ s\.", run.stdout.splitlines()[-1])
