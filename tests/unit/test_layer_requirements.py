"""The layer installs exactly the runtime dependencies the project declares, at the locked versions."""

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_layer_requirements_match_the_lock_and_the_runtime_dependencies():
    pins = dict(
        re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line).groups()
        for line in (ROOT / "shared/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in project} - {"boto3"}  # boto3: Lambda runtime
    assert set(pins) == declared
    locked = locked_versions()
    for name, version in pins.items():
        assert locked[name] == version, f"{name}: layer pins {version}, uv.lock has {locked[name]}"
