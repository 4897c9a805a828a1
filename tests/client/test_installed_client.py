"""The client as an app installs it: `uv pip install clients/python` into a fresh venv, then a whole connect, claim,
token read and disconnect against `make dev`'s stack (its own process, as `make dev` starts it), signed with the
identity `make dev` prints. Offline: the client's dependencies come from the project's lock, out of uv's cache."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from local import sigv4
from tests.client.conftest import ROOT, play_user, sweep_at

pytestmark = pytest.mark.integration
STARTUP_TIMEOUT = 120  # seconds for `make dev`'s stack to print its banner (about 8 on the CI machine)

# What an app's backend does with the installed client; the user's browser (play_user) runs in the test between
# the steps, handing the claim code over stdin as the app's page would hand it to its backend.
APP = '''
import json, sys
from oauth_keeper_client import Client, NeedsReauthorization

def say(**fields):
    print(json.dumps(fields, default=str), flush=True)

client = Client(sys.argv[1])  # botocore's credential chain: the AWS_* variables `make dev` printed
session = client.create_connect_session(owner_id="user-42", return_to=sys.argv[1] + "/dev/")
say(step="session", connect_url=session.connect_url, expires_at=session.expires_at)
claimed = client.claim(sys.stdin.readline().strip(), owner_id="user-42")
connection = claimed.connection
say(step="claim", result=claimed.result, connection_id=connection.connection_id, status=connection.status)
token = client.get_token(connection.connection_id, owner_id="user-42", min_valid_seconds=600)
say(step="token", type=token.token_type, length=len(token.access_token), shown=token.access_token in repr(token))
operation = client.disconnect(connection.connection_id, owner_id="user-42")
say(step="disconnect", kind=operation.kind, status=operation.status)
sys.stdin.readline()  # the job ran (in AWS: the refresh worker, within seconds)
say(step="operation", status=client.wait_for_operation(operation, timeout=30, interval=0.5).status)
try:
    client.get_token(connection.connection_id, owner_id="user-42")
except NeedsReauthorization as exc:
    say(step="after", status=exc.status, reason=exc.reason)
'''


def uv_command() -> list[str]:
    """uv as `make` runs it: `uv run` names itself in $UV; else the one on PATH, else python3.13's module."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    if shutil.which("uv"):
        return ["uv"]
    if shutil.which("python3.13"):
        return ["python3.13", "-m", "uv"]
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true and uv not found")
    pytest.skip("uv not found: run `make setup`")


def run(*command: str | Path, **options) -> str:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=300, **options)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def client_dependencies(uv: list[str], into: Path) -> Path:
    """The client's dependencies (botocore and what it needs) pinned from the project's uv.lock, as a pylock.toml
    that `uv pip install --offline` installs from uv's cache (`uv sync` put those wheels there)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    needed, todo = set(), ["botocore"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [d["name"] for d in packages[name].get("dependencies", [])]
    exported = run(*uv, "export", "--frozen", "--no-emit-project", "--format", "pylock.toml", "--quiet", cwd=ROOT)
    head, *blocks = exported.split("\n[[packages]]\n")
    kept = [b for b in blocks if re.search(r'^name = "([^"]+)"', b, re.M).group(1) in needed]
    assert len(kept) == len(needed), (needed, kept)
    path = into / "pylock.toml"
    path.write_text(head + "".join("\n[[packages]]\n" + b for b in kept))
    return path


@pytest.fixture
def make_dev() -> Iterator[dict[str, str]]:
    """`make dev`'s stack in its own process on free ports; what its banner says (URLs, identity)."""
    env = {**os.environ, "PYTHONPATH": "shared:."}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-u", "-m", "local.dev", "--port", "0", "--tiktok-port", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    banner: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while not banner or not banner[-1].startswith("Requests"):
            try:
                banner.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail("make dev printed no banner:\n" + "".join(banner))
        text = "".join(banner)
        found = {
            "api": re.search(r"API \(local gateway\) (\S+)", text).group(1),
            **dict(re.findall(r"export (AWS_\w+)=(\S+)", text)),
        }
        yield found
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as make dev is stopped
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_installed_client_connects_claims_reads_a_token_and_disconnects(make_dev, tmp_path):
    # `make dev` printed the identity its gateway accepts.
    assert {k: v for k, v in make_dev.items() if k != "api"} == {
        "AWS_ACCESS_KEY_ID": sigv4.LOCAL_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": sigv4.LOCAL_SECRET_KEY,
        "AWS_DEFAULT_REGION": sigv4.LOCAL_REGION}

    uv = uv_command()
    venv = tmp_path / "venv"
    run(*uv, "venv", "--offline", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(*uv, "pip", "install", "--offline", "--quiet", "--preview-features", "pylock", "--python", python,
        "-r", client_dependencies(uv, tmp_path))
    run(*uv, "pip", "install", "--offline", "--quiet", "--python", python, ROOT / "clients" / "python")
    installed = run(python, "-c", "import oauth_keeper_client; print(oauth_keeper_client.__file__)")
    assert str(venv) in installed  # the installed package, not the source tree

    # The app's process sees only what an app's would: its own home, and the identity make dev printed.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           **{k: v for k, v in make_dev.items() if k.startswith("AWS_")}}
    app = subprocess.Popen([python, "-c", APP, make_dev["api"]], env=env, cwd=tmp_path, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def step(name: str) -> dict:
            line = app.stdout.readline()
            assert line, f"the app stopped before {name}: {app.stderr.read()}"
            said = json.loads(line)
            assert said["step"] == name, said
            return said

        session = step("session")
        landed = play_user(session["connect_url"], "alice")
        assert landed["status"] == "pending_confirmation"
        app.stdin.write(landed["claim"] + "\n")
        app.stdin.flush()
        claimed = step("claim")
        assert claimed["result"] == "created" and claimed["status"] == "active"
        token = step("token")
        assert token["type"] == "Bearer" and token["length"] > 0 and token["shown"] is False  # repr hides it
        assert step("disconnect") == {"step": "disconnect", "kind": "disconnect", "status": "running"}
        sweep_at(make_dev["api"])
        app.stdin.write("swept\n")
        app.stdin.flush()
        assert step("operation")["status"] == "succeeded"
        assert step("after") == {"step": "after", "status": "disconnected", "reason": "app_disconnected"}
        assert app.wait(timeout=30) == 0, app.stderr.read()
    finally:
        if app.poll() is None:
            app.kill()
