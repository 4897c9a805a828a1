"""Finds the tools the template tests run (SAM CLI, a real python3.13) and the environment they run in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from local.cfn import ROOT

SAM_INSTALL_HINT = (
    "SAM CLI not found: install it with `uv tool install aws-sam-cli==1.170.0` "
    "(it lands in ~/.local/bin/sam); it must not go into the project venv (boto3 pins clash)."
)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def sam() -> str:
    """Path of the `sam` executable; skipped locally when absent, a failure in CI."""
    found = shutil.which("sam")
    if not found:
        fallback = Path.home() / ".local" / "bin" / "sam"
        found = str(fallback) if fallback.is_file() else None
    if not found:
        if _running_in_ci():
            pytest.fail(f"CI=true and {SAM_INSTALL_HINT}")
        pytest.skip(SAM_INSTALL_HINT)
    return found


@pytest.fixture(scope="session")
def python313() -> Path:
    """The real python3.13 interpreter (not a pyenv shim, not the uv venv, which has no pip)."""
    shim = shutil.which("python3.13", path=_path_without_project_venv())
    if not shim:
        pytest.fail("python3.13 is not on PATH; sam build needs exactly python3.13 (see .python-version)")
    # cwd=ROOT so a pyenv shim resolves through the repo's .python-version.
    out = subprocess.run(
        [shim, "-c", "import sys; print(sys.executable)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=_clean_env(),
    )
    if out.returncode != 0:
        pytest.fail(f"python3.13 does not run: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def _path_without_project_venv() -> str:
    venv = os.environ.get("VIRTUAL_ENV")
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if venv:
        parts = [p for p in parts if not Path(p).resolve().is_relative_to(Path(venv).resolve())]
    return os.pathsep.join(parts)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = _path_without_project_venv()
    return env


@pytest.fixture(scope="session")
def tool_env(python313: Path) -> dict[str, str]:
    """Environment for sam and pip: the real python3.13 first on PATH, no telemetry, no project venv."""
    env = _clean_env()
    env["PATH"] = os.pathsep.join([str(python313.parent), env["PATH"]])
    env["SAM_CLI_TELEMETRY"] = "0"
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="session")
def sam_python(sam) -> str:
    """The interpreter of the SAM CLI install (it holds samtranslator, which the project venv does not)."""
    script = Path(sam).resolve()
    with open(script, "rb") as f:
        first_line = f.readline().decode("utf-8", "replace").strip()
    interpreter = first_line[2:].strip() if first_line.startswith("#!") else ""
    if not interpreter or "python" not in Path(interpreter.split()[0]).name:
        message = f"{script} is not a Python script (installed otherwise than by `uv tool install`?)"
        if _running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return interpreter.split()[0]
