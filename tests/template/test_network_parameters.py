"""Each shipped network is enabled by configuration: its scopes and its uncertain choices are template parameters
that reach every function, and the template's defaults pass the cold-start checks with every network enabled."""

from __future__ import annotations

import json

import pytest
from oauth_keeper.settings import Settings

from local.cfn import ROOT, template

pytestmark = pytest.mark.unit
PROFILES = ROOT / "shared" / "oauth_keeper" / "domain" / "profiles"
NETWORKS = sorted(json.loads(p.read_text())["name"] for p in PROFILES.glob("*.json")
                  if p.name != "profile.schema.json" and p.stem not in ("tiktok", "generic"))


def variables() -> dict:
    return template()["Globals"]["Function"]["Environment"]["Variables"]


@pytest.mark.parametrize("network", NETWORKS)
def test_every_network_has_a_scopes_parameter_reaching_the_functions(network):
    reference = variables()[f"{network.upper()}_SCOPES"]
    parameter = template()["Parameters"][reference["Ref"]]
    assert parameter["Default"] == ""  # the profile's scopes unless the deployer says otherwise


def test_the_template_defaults_start_with_every_network_enabled():
    params = template()["Parameters"]
    env = {"CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k", "OWNER_KEY_ARN": "h",
           "STACK_NAME": "s", "EVENT_BUS_NAME": "b", "REFRESH_QUEUE_URL": "q",
           "PROVIDERS": ",".join(["tiktok", *NETWORKS])}
    for name, value in variables().items():
        if isinstance(value, dict) and value.get("Ref") in params and name.split("_")[0] != "TIKTOK":
            env.setdefault(name, str(params[value["Ref"]].get("Default", "")))
    settings = Settings.from_env(env)
    assert set(NETWORKS) <= set(settings.providers)


@pytest.mark.parametrize(("parameter", "variable"), [("YouTubeAppStatus", "YOUTUBE_APP_STATUS"),
                                                      ("LinkedInRefreshStrategy", "LINKEDIN_REFRESH_STRATEGY")])
def test_every_allowed_choice_passes_the_cold_start(parameter, variable):
    for value in template()["Parameters"][parameter]["AllowedValues"]:
        network = "youtube" if variable.startswith("YOUTUBE") else "linkedin"
        Settings.from_env({"CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k", "OWNER_KEY_ARN": "h",
                           "STACK_NAME": "s", "EVENT_BUS_NAME": "b", "REFRESH_QUEUE_URL": "q",
                           "PROVIDERS": network, variable: value})
