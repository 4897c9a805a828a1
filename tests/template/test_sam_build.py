"""`sam build` produces what Lambda runs: an arm64 layer with aarch64-only native code, and handlers that import.

Slow (two builds from PyPI, one clean venv); everything lands in pytest's tmp dirs, nothing in the repo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from local.cfn import ROOT, TEMPLATE, resources_of_type, template

pytestmark = pytest.mark.build

LAYER = "OAuthKeeperLayer"
EM_X86_64 = 62
EM_AARCH64 = 183
# What `marker` expressions in requirements.txt see on Lambda python3.13.
LAMBDA_MARKERS = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "extra": "",
}
# Placeholder values for the variables Lambda sets from Globals (parameters use their defaults).
PLACEHOLDERS = {
    "CONNECTIONS_TABLE": "oauth-keeper-ConnectionsTable-EXAMPLE",
    "FLOWS_TABLE": "oauth-keeper-FlowsTable-EXAMPLE",
    "TOKEN_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    "OWNER_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000001",
    "STACK_NAME": "oauth-keeper",
    "EVENT_BUS_NAME": "oauth-keeper-connections",
    "PUBLIC_BASE_URL": "",
    "ALLOWED_RETURN_ORIGINS": "https://app.example.com",
    "REFRESH_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/oauth-keeper-RefreshQueue-EXAMPLE",
    "REMOVAL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/oauth-keeper-RemovalQueue-EXAMPLE",
    "REMOVAL_QUEUE_ARN": "arn:aws:sqs:us-east-1:123456789012:oauth-keeper-RemovalQueue-EXAMPLE",
}


# ----------------------------------------------------------------- helpers


def _functions() -> dict[str, dict[str, Any]]:
    return resources_of_type("AWS::Serverless::Function")


def _sam_build(sam: str, env: dict[str, str], template_file: Path, build_dir: Path) -> None:
    aws_sam_before = (ROOT / ".aws-sam").exists()
    result = subprocess.run(
        [sam, "build", "--template-file", str(template_file), "--base-dir", str(ROOT), "--build-dir", str(build_dir)],
        cwd=build_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert result.returncode == 0, f"sam build failed\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert (ROOT / ".aws-sam").exists() == aws_sam_before, "sam build wrote .aws-sam into the repo"


def elf_machine(path: Path) -> int | None:
    """e_machine of an ELF file (183 aarch64, 62 x86_64), None when it is not ELF."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byteorder = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


def native_libraries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and re.search(r"\.so(\.\d+)*$", p.name))


def _requirements() -> list[Requirement]:
    path = ROOT / "shared" / "requirements.txt"
    if not path.is_file():
        pytest.fail("shared/requirements.txt is missing: the layer would ship without its dependencies")
    requirements = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(LAMBDA_MARKERS):
            requirements.append(requirement)
    return requirements


def _installed(site: Path) -> dict[str, tuple[Version, Path]]:
    """Distributions in a built site dir: canonical name -> (version, dist-info dir)."""
    found = {}
    for dist_info in site.glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").rpartition("-")
        found[canonicalize_name(name)] = (Version(version), dist_info)
    return found


def _lambda_environment() -> dict[str, str]:
    params = template()["Parameters"]
    env = {}
    for key, value in template()["Globals"]["Function"]["Environment"]["Variables"].items():
        if isinstance(value, str):
            env[key] = value
        elif key in PLACEHOLDERS:
            env[key] = PLACEHOLDERS[key]
        elif isinstance(value, dict) and value.get("Ref") in params and "Default" in params[value["Ref"]]:
            env[key] = str(params[value["Ref"]]["Default"])
        else:
            pytest.fail(f"no placeholder for {key}; add one to PLACEHOLDERS")
    return env


# ----------------------------------------------------------------- fixtures (one build of each per run)


@pytest.fixture(scope="module")
def arm64_build(sam, tool_env, tmp_path_factory) -> Path:
    build_dir = tmp_path_factory.mktemp("sam-arm64") / "build"
    _sam_build(sam, tool_env, TEMPLATE, build_dir)
    return build_dir


@pytest.fixture(scope="module")
def x86_64_build(sam, tool_env, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("sam-x86_64")
    copy = work / "template.yaml"
    copy.write_text(TEMPLATE.read_text(encoding="utf-8").replace("arm64", "x86_64"), encoding="utf-8")
    assert "arm64" not in copy.read_text(encoding="utf-8")
    build_dir = work / "build"
    _sam_build(sam, tool_env, copy, build_dir)
    return build_dir


@pytest.fixture(scope="module")
def clean_venv(python313, tool_env, tmp_path_factory) -> Path:
    """A python3.13 venv with boto3 only: what the Lambda runtime provides besides our artifacts."""
    venv = tmp_path_factory.mktemp("clean-venv") / "venv"
    subprocess.run([str(python313), "-m", "venv", str(venv)], env=tool_env, check=True, timeout=300)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "boto3"],
        env=tool_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, f"pip install boto3 failed\n{result.stdout}\n{result.stderr}"
    return python


# ----------------------------------------------------------------- (a) the arm64 build


def test_the_layer_holds_the_oauth_keeper_package(arm64_build):
    package = arm64_build / LAYER / "python" / "oauth_keeper"
    layer = sorted(os.listdir(arm64_build / LAYER))
    assert (package / "__init__.py").is_file(), f"{package} missing; the layer holds {layer}"
    source_root = ROOT / "shared" / "oauth_keeper"
    sources = {str(p.relative_to(source_root)) for pattern in ("*.py", "*.json") for p in source_root.rglob(pattern)}
    built = {str(p.relative_to(package)) for pattern in ("*.py", "*.json") for p in package.rglob(pattern)}
    assert sources <= built, f"missing from the layer: {sorted(sources - built)}"


def test_the_layer_holds_every_runtime_dependency_at_an_allowed_version(arm64_build):
    installed = _installed(arm64_build / LAYER / "python")
    requirements = _requirements()
    assert requirements, "shared/requirements.txt lists nothing"
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{requirement} is not in the layer (found {sorted(installed)})"
        version, _ = installed[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{name} {version} breaks {requirement}"


def test_every_native_library_of_the_arm64_build_is_aarch64(arm64_build):
    libraries = native_libraries(arm64_build)
    if any(canonicalize_name(r.name) == "cryptography" for r in _requirements()):
        assert libraries, "cryptography ships native code, yet the build holds no .so at all"
    wrong = {str(p.relative_to(arm64_build)): elf_machine(p) for p in libraries if elf_machine(p) != EM_AARCH64}
    assert not wrong, f"not aarch64 ELF (e_machine): {wrong}"


def test_every_extension_module_is_for_cpython_313(arm64_build):
    for library in native_libraries(arm64_build):
        tag = re.search(r"\.cpython-(\d+)-", library.name)
        assert tag is None or tag.group(1) == "313", library.relative_to(arm64_build)


def _runs_on_lambda_arm64(tag: str) -> bool:
    """Whether a wheel tag (py-abi-platform) loads on Lambda python3.13 arm64 (Amazon Linux 2023, glibc 2.34)."""
    _, abi, platform = tag.split("-")
    if re.fullmatch(r"cp3\d+", abi) and abi != "cp313":
        return False
    if platform == "any":
        return True
    legacy = {"manylinux2014_aarch64": (2, 17)}
    glibc = legacy.get(platform)
    if match := re.fullmatch(r"manylinux_(\d+)_(\d+)_aarch64", platform):
        glibc = (int(match.group(1)), int(match.group(2)))
    return glibc is not None and glibc <= (2, 34)


@pytest.mark.parametrize(
    ("tag", "runs"),
    [
        ("py3-none-any", True),
        ("cp311-abi3-manylinux_2_34_aarch64", True),
        ("cp313-cp313-manylinux2014_aarch64", True),
        ("cp313-cp313-manylinux_2_17_aarch64", True),
        ("cp311-abi3-manylinux_2_34_x86_64", False),
        ("cp312-cp312-manylinux_2_17_aarch64", False),
        ("cp313-cp313-manylinux_2_39_aarch64", False),
        ("cp313-cp313-musllinux_1_2_aarch64", False),
        ("cp313-cp313-linux_x86_64", False),
    ],
)
def test_the_wheel_tag_check_knows_what_lambda_arm64_loads(tag, runs):
    assert _runs_on_lambda_arm64(tag) is runs


def test_every_wheel_in_the_layer_was_made_for_lambda_arm64_and_python_313(arm64_build):
    for _, dist_info in _installed(arm64_build / LAYER / "python").values():
        wheel = dist_info / "WHEEL"
        if not wheel.is_file():
            continue
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text(encoding="utf-8").splitlines()
            if line.startswith("Tag:")
        ]
        assert any(_runs_on_lambda_arm64(t) for t in tags), f"{dist_info.name}: {tags}"


def test_every_function_artifact_holds_its_handler_module(arm64_build):
    for name, fn in _functions().items():
        module = fn["Properties"]["Handler"].rpartition(".")[0]
        assert (arm64_build / name / f"{module.replace('.', '/')}.py").is_file(), name
    built = (arm64_build / "template.yaml").read_text(encoding="utf-8")
    assert "arm64" in built and "x86_64" not in built


# ----------------------------------------------------------------- (b) the x86_64 build imports


def test_the_x86_64_build_is_really_x86_64(x86_64_build):
    machines = {elf_machine(p) for p in native_libraries(x86_64_build)}
    assert machines <= {EM_X86_64}, machines


_IMPORT_PROBE = textwrap.dedent("""
    import importlib, json, os, sys
    module_name, attribute, *allowed = sys.argv[1:]
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    assert callable(handler), f"{module_name}.{attribute} is not callable"
    roots = [os.path.realpath(p) + os.sep for p in allowed + [sys.prefix]]
    stdlib = os.path.realpath(os.path.dirname(os.__file__)) + os.sep
    roots.append(stdlib)
    base_site = stdlib + "site-packages" + os.sep
    strays = sorted(
        name for name, m in list(sys.modules.items())
        if (f := getattr(m, "__file__", None))
        and (not any(os.path.realpath(f).startswith(r) for r in roots)
             or os.path.realpath(f).startswith(base_site))
    )
    print(json.dumps({"file": module.__file__, "strays": strays}))
""")


@pytest.mark.parametrize("function", sorted(_functions()))
def test_every_handler_imports_in_a_clean_python313_with_only_the_built_artifacts(
    function, x86_64_build, clean_venv, tmp_path
):
    module, _, attribute = _functions()[function]["Properties"]["Handler"].rpartition(".")
    function_dir = x86_64_build / function
    layer_dir = x86_64_build / LAYER / "python"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{function_dir}{os.pathsep}{layer_dir}",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_EC2_METADATA_DISABLED": "true",
        **_lambda_environment(),
    }
    result = subprocess.run(
        [str(clean_venv), "-c", _IMPORT_PROBE, module, attribute, str(function_dir), str(layer_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"{function}: import {module} failed\n{result.stderr[-6000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(function_dir.resolve()), report["file"]
    assert not report["strays"], f"{function} imported modules from outside the artifacts: {report['strays']}"
