"""samconfig.toml's dev and prod environments, as SAM CLI itself reads them, agree with template.yaml's parameters;
the Makefile's deploy, logs, delete and sync targets run the SAM CLI it installs on them."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from local.cfn import ROOT, template

pytestmark = pytest.mark.unit
SAM = str(Path.home() / ".local" / "bin" / "sam")
COMMANDS = ("build", "deploy", "sync", "logs", "delete", "validate")
FUNCTIONS = [name for name, res in template()["Resources"].items() if res["Type"] == "AWS::Serverless::Function"]


@pytest.fixture(scope="module")
def resolved(sam_python) -> dict[str, dict[str, dict]]:
    """{env: {command: the parameters SAM CLI resolves for `sam <command> --config-env <env>`}}."""
    script = f"""
import json
from samcli.lib.config.samconfig import SamConfig
# A fresh SamConfig per command, as each `sam` run reads the file anew (get_all merges into what it read).
print(json.dumps({{env: {{cmd: SamConfig({str(ROOT)!r}).get_all([cmd], "parameters", env=env) for cmd in {COMMANDS!r}}}
                   for env in ("default", "dev", "prod")}}))
"""
    run = subprocess.run([sam_python, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(run.stdout)


def overrides(params: dict) -> dict[str, str]:
    """`Key=Value Key=Value` (SAM's parameter_overrides string) as a dict."""
    return dict(pair.split("=", 1) for pair in shlex.split(params.get("parameter_overrides", "")))


def allowed(name: str, value: str) -> bool:
    """The value passes the template parameter's own constraints (what CloudFormation checks at deploy)."""
    spec = template()["Parameters"][name]
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return False
    if spec["Type"] == "Number":
        number = float(value)
        return spec.get("MinValue", number) <= number <= spec.get("MaxValue", number)
    if name == "AllowedReturnOrigins":  # no pattern in the template; the functions refuse anything else at start
        return all(urlsplit(o).scheme in ("https", "http") and urlsplit(o).hostname and not urlsplit(o).path
                   for o in value.split(","))
    return True


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_is_a_stack_of_its_own_for_every_command(resolved, env):
    stacks = {cmd: resolved[env][cmd].get("stack_name") for cmd in ("deploy", "sync", "logs", "delete")}
    assert stacks == dict.fromkeys(stacks, f"oauth-keeper-{env}")
    deploy = resolved[env]["deploy"]
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_s3"] is True
    assert deploy["s3_prefix"] == f"oauth-keeper-{env}"
    assert resolved[env]["validate"]["lint"] is True


def test_the_default_environment_is_the_stack_plain_sam_deploy_always_updated(resolved):
    assert resolved["default"]["deploy"]["stack_name"] == "oauth-keeper"
    assert "parameter_overrides" not in resolved["default"]["deploy"]


@pytest.mark.parametrize(("env", "command"), [("dev", "deploy"), ("dev", "sync"), ("prod", "deploy")])
def test_every_override_is_a_template_parameter_with_an_allowed_value(resolved, env, command):
    given = overrides(resolved[env][command])
    assert given, f"{env} {command} sets no parameter"
    for name, value in given.items():
        assert name in template()["Parameters"], f"{env}: {name} is not a parameter of template.yaml"
        assert allowed(name, value), f"{env}: {name}={value} is refused by the template"


def test_dev_deploys_without_questions_and_prod_asks_only_for_what_has_no_default(resolved):
    without_default = {name for name, spec in template()["Parameters"].items() if "Default" not in spec}
    assert without_default == {"AllowedReturnOrigins"}
    assert without_default <= set(overrides(resolved["dev"]["deploy"]))
    assert overrides(resolved["dev"]["sync"]) == overrides(resolved["dev"]["deploy"])
    assert not without_default & set(overrides(resolved["prod"]["deploy"]))  # `make deploy ENV=prod GUIDED=1`


def test_prod_confirms_its_change_sets_and_keeps_its_logs_longer(resolved):
    assert resolved["prod"]["deploy"]["confirm_changeset"] is True
    assert resolved["dev"]["deploy"]["confirm_changeset"] is False
    dev, prod = overrides(resolved["dev"]["deploy"]), overrides(resolved["prod"]["deploy"])
    assert int(prod["LogRetentionDays"]) > int(dev["LogRetentionDays"])
    assert prod["SsmPrefix"] != dev["SsmPrefix"]  # a sandbox TikTok app for dev, the real one for prod
    assert prod["SsmPrefix"] == template()["Parameters"]["SsmPrefix"]["Default"]  # the README's put-parameter lines
    assert prod["LogLevel"] == "INFO"
    assert "parameter_overrides" not in resolved["prod"]["sync"] and "watch" not in resolved["prod"]["sync"]


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("args", "commands"), [
    (("deploy",), [f"{SAM} build --config-env dev", f"{SAM} deploy --config-env dev"]),
    (("deploy", "ENV=prod", "GUIDED=1"),
     [f"{SAM} build --config-env prod", f"{SAM} deploy --config-env prod --guided"]),
    (("logs",), [f"{SAM} logs --config-env dev --tail " + " ".join(f"--name {fn}" for fn in FUNCTIONS)]),
    (("logs", "ENV=prod", "FN=BackendApiFunction"),
     [f"{SAM} logs --config-env prod --tail --name BackendApiFunction"]),
    (("delete", "ENV=prod"), [f"{SAM} delete --config-env prod"]),
    (("sync",), [f"{SAM} sync --config-env dev --watch"]),
])
def test_make_runs_the_installed_sam_cli_on_the_chosen_environment(args, commands):
    run = make_dry_run(*args)
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stdout.splitlines() if line.startswith(SAM)] == commands


def test_make_sync_refuses_any_stack_but_dev():
    run = make_dry_run("sync", "ENV=prod")
    assert run.returncode != 0 and run.stdout == ""
    assert "sam sync is for the dev stack only" in run.stderr
