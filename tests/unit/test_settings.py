"""Configuration fails fast: a deployment missing a required variable fails its cold start, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from oauth_keeper.domain.errors import ConfigurationError
from oauth_keeper.settings import REQUIRED, Settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COMPLETE = {
    "CONNECTIONS_TABLE": "connections", "FLOWS_TABLE": "flows", "TOKEN_KEY_ARN": "arn:aws:kms:eu-west-1:1:key/k",
    "OWNER_KEY_ARN": "arn:aws:kms:eu-west-1:1:key/h",
    "STACK_NAME": "oauth-keeper-prod",
    "EVENT_BUS_NAME": "bus", "REFRESH_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/refresh",
}


def test_a_complete_environment_gives_typed_settings():
    settings = Settings.from_env({**COMPLETE, "SWEEP_INTERVAL_MINUTES": "10", "ALLOWED_RETURN_ORIGINS":
                                  "https://App.example.com:443/x, http://localhost:3000"})
    assert settings.connections_table == "connections" and settings.sweep_interval == 600
    assert settings.allowed_return_origins == {"https://app.example.com", "http://localhost:3000"}


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_or_empty_required_variable_is_a_configuration_error_naming_it(name, value):
    env = {k: v for k, v in COMPLETE.items() if k != name}
    if value is not None:
        env[name] = value
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


def test_every_missing_variable_is_named_at_once():
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env({})
    assert all(name in raised.value.message for name in REQUIRED)


@pytest.mark.parametrize(("name", "value"), [
    ("DUE_SHARDS", "sixteen"), ("DUE_SHARDS", "0"), ("DUE_SHARDS", "257"), ("SWEEP_INTERVAL_MINUTES", "٥"),
    ("REFRESH_CONCURRENCY", "-1"), ("EXPIRY_WARNING_DAYS", "1e3"),
])
def test_a_number_that_is_not_one_is_a_configuration_error_not_a_crash(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**COMPLETE, name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("TIKTOK_PKCE_MODE", "plain"), ("TIKTOK_REFRESH_POLICY", "lazy"), ("TIKTOK_CLIENT_AUTH", "private_key_jwt"),
])
def test_a_provider_option_outside_its_values_is_a_configuration_error(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**COMPLETE, name: value})


@pytest.mark.parametrize("handler", ["authorize_handler", "refresh_worker_handler"])
def test_a_handler_without_its_configuration_fails_at_cold_start(handler):
    """Lambda imports the handler module in its init phase: the error shows there, not at the first user."""
    folder = next(p.parent for p in (ROOT / "functions").rglob(f"{handler}.py"))
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT / "shared")])
    done = subprocess.run([sys.executable, "-c", f"import {handler}"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr and "CONNECTIONS_TABLE" in done.stderr
    with_config = subprocess.run([sys.executable, "-c", f"import {handler}"], env={**env, **COMPLETE},
                                 capture_output=True, text=True, timeout=60, check=False)
    assert with_config.returncode == 0, with_config.stderr


@pytest.mark.parametrize(("changes", "named"), [
    ({"PROVIDERS": "tiktok,acme"}, "ACME_PROFILE=generic"),
    ({"PROVIDERS": "acme", "ACME_PROFILE": "generic"}, "ACME_AUTHORIZE_URL"),
    ({"PROVIDERS": "acme", "ACME_PROFILE": "generic", "ACME_DISCOVERY": "true"}, "ACME_ISSUER"),
    ({"ALLOWED_RETURN_ORIGINS": "app.example.com"}, "ALLOWED_RETURN_ORIGINS"),
    ({"ALLOWED_RETURN_ORIGINS": "https://app.example.com,ftp://files.example.com"}, "ALLOWED_RETURN_ORIGINS"),
])
def test_a_provider_or_origin_that_could_never_work_fails_the_cold_start(changes, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env({**COMPLETE, **changes})


def test_a_generic_provider_with_its_endpoints_or_discovery_is_accepted():
    Settings.from_env({**COMPLETE, "PROVIDERS": "acme", "ACME_PROFILE": "generic",
                       "ACME_AUTHORIZE_URL": "https://id.acme.test/a", "ACME_TOKEN_URL": "https://id.acme.test/t"})
    Settings.from_env({**COMPLETE, "PROVIDERS": "acme", "ACME_PROFILE": "generic", "ACME_DISCOVERY": "true",
                       "ACME_ISSUER": "https://id.acme.test"})
