"""template.yaml passes cfn-lint and `sam validate --lint` without a single finding."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local.cfn import ROOT, TEMPLATE

pytestmark = pytest.mark.build


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_cfn_lint_finds_nothing():
    # The project venv's cfn-lint (a dev dependency), beside the interpreter running pytest.
    script = Path(sys.executable).parent / "cfn-lint"
    cfn_lint = str(script) if script.is_file() else shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed: `uv sync` installs it with the dev dependencies"
    result = subprocess.run(
        [cfn_lint, "--", str(TEMPLATE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, _report(result)


def test_sam_validate_lint_finds_nothing(sam, tool_env):
    result = subprocess.run(
        [sam, "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=tool_env,
    )
    assert result.returncode == 0, _report(result)
    assert "is a valid SAM Template" in result.stdout + result.stderr, _report(result)
