"""The grown profile format: strategies, request shapes, timing and error rules are data, and older profiles
keep their meaning."""

import pytest
from oauth_keeper.domain.errors import ConfigurationError
from oauth_keeper.domain.providers import profile_for, profile_from_data
from oauth_keeper.settings import Settings

pytestmark = pytest.mark.unit
BASE = {"name": "acme", "display_name": "Acme", "authorize_url": "https://a.test/a",
        "token_url": "https://a.test/t", "revoke_url": None, "userinfo_url": None}
ENV = {"CONNECTIONS_TABLE": "c", "FLOWS_TABLE": "f", "TOKEN_KEY_ARN": "k", "OWNER_KEY_ARN": "h", "STACK_NAME": "s",
       "EVENT_BUS_NAME": "b", "REFRESH_QUEUE_URL": "q"}


@pytest.mark.parametrize(("flags", "strategy"), [
    ({}, "rotating"),
    ({"rotates_refresh_tokens": True, "issues_refresh_tokens": True}, "rotating"),
    ({"rotates_refresh_tokens": False}, "standard"),
    ({"issues_refresh_tokens": False}, "none"),
])
def test_profiles_from_before_the_strategy_keep_their_meaning(flags, strategy):
    assert profile_from_data({**BASE, **flags}).refresh_strategy == strategy


def test_the_shipped_tiktok_profile_is_still_strict_rotation():
    tiktok = profile_for("tiktok", ("tiktok",), {})
    assert tiktok.refresh_strategy == "rotating" and tiktok.rotates_refresh_tokens and tiktok.issues_refresh_tokens


@pytest.mark.parametrize(("strategy", "issues", "rotates"), [
    ("rotating", True, True), ("standard", True, False), ("extend", False, False), ("re_exchange", False, False),
    ("none", False, False)])
def test_a_strategy_sets_what_older_code_reads(strategy, issues, rotates):
    profile = profile_from_data({**BASE, "refresh_strategy": strategy})
    assert (profile.issues_refresh_tokens, profile.rotates_refresh_tokens) == (issues, rotates)
    assert profile.refreshes_with_access_token == (strategy in ("extend", "re_exchange"))


def test_a_strategy_contradicted_by_an_old_flag_is_refused():
    with pytest.raises(ValueError, match="contradicts refresh_strategy"):
        profile_from_data({**BASE, "refresh_strategy": "standard", "rotates_refresh_tokens": True})


def test_each_step_has_its_shape_filled_from_the_profile():
    profile = profile_from_data({**BASE, "client_auth": "client_secret_basic", "refresh_strategy": "extend",
                                 "requests": {"refresh": {"url": "https://g.test/refresh", "method": "GET",
                                                          "encoding": "query", "client_auth": "none",
                                                          "params": {"grant_type": "ig_refresh_token"}}}})
    refresh, exchange = profile.request("refresh"), profile.request("code_exchange")
    assert (refresh.url, refresh.method, refresh.encoding, refresh.client_auth, refresh.credential_param) == (
        "https://g.test/refresh", "GET", "query", "none", "access_token")
    assert (exchange.url, exchange.method, exchange.encoding, exchange.client_auth) == (
        "https://a.test/t", "POST", "form", "client_secret_basic")


def test_a_get_request_carries_its_parameters_in_the_query():
    with pytest.raises(ValueError, match="GET request carries its parameters in the query"):
        profile_from_data({**BASE, "requests": {"refresh": {"method": "GET", "encoding": "form"}}})


def test_error_rules_match_status_and_json_path_before_the_code_table():
    profile = profile_from_data({**BASE, "error_rules": [
        {"class": "reconnect", "status": [400], "path": "error.code", "equals": [190]},
        {"class": "rate_limited", "path": "error.code", "equals": [4, 17]},
        {"class": "reconnect", "path": "error", "equals": ["invalid_request"], "steps": ["refresh"]},
    ]})
    meta_190 = {"error": {"code": 190, "type": "OAuthException"}}
    assert profile.classify_answer(meta_190, 400, "refresh", "190") == ("190", "terminal")
    assert profile.classify_answer(meta_190, 401, "refresh", "190") == ("190", "rejected")  # status must match
    assert profile.classify_answer({"error": {"code": 4}}, 400, "refresh", "4") == ("rate_limit_exceeded",
                                                                                      "transient")
    x_spent = {"error": "invalid_request"}
    assert profile.classify_answer(x_spent, 400, "refresh", "invalid_request")[1] == "terminal"
    assert profile.classify_answer(x_spent, 400, "code_exchange", "invalid_request")[1] == "rejected"
    assert profile.classify_answer(meta_190, 503, "refresh", "190")[1] == "transient"  # 5xx stays transient


def test_an_app_status_setting_chooses_its_hard_cap_and_nothing_else():
    data = {**BASE, "timing": {"app_status_caps": {"testing": 604800}}}
    profile = profile_from_data(data)
    assert profile.timing.effective_cap is None
    from dataclasses import replace
    assert replace(profile.timing, app_status="testing").effective_cap == 604800


def test_new_settings_reach_the_profile_and_are_checked_at_cold_start(monkeypatch):
    import oauth_keeper.domain.providers as providers

    data = {**BASE, "refresh_strategy": "extend", "timing": {"app_status_caps": {"testing": 604800}},
            "requests": {"refresh": {"url": "https://g.test/r", "method": "GET", "encoding": "query"}},
            "chain": [{"url": "https://g.test/x", "method": "GET", "encoding": "query"}]}
    monkeypatch.setattr(providers, "_profile_file", lambda name: data if name == "acme" else None)
    overrides = {"acme": {"app_status": "testing", "refresh_url": "https://sim.test/r",
                          "chain_url": "https://sim.test/x"}}
    profile = providers.profile_for("acme", ("acme",), overrides)
    assert profile.timing.effective_cap == 604800
    assert profile.request("refresh").url == "https://sim.test/r" and profile.chain[0].url == "https://sim.test/x"
    with pytest.raises(ValueError, match="app_status must be one of"):
        providers.profile_for("acme", ("acme",), {"acme": {"app_status": "beta"}})
    with pytest.raises(ConfigurationError, match="ACME_REFRESH_URL must be https://"):
        Settings.from_env({**ENV, "PROVIDERS": "acme", "ACME_REFRESH_URL": "http://sim.test/r"})


def test_an_uncertain_fact_is_a_deployment_choice_only_where_the_profile_offers_it():
    """LinkedIn issues refresh tokens only to approved partners: the deployment says which it is."""
    linkedin = Settings.from_env({**ENV, "PROVIDERS": "linkedin", "LINKEDIN_REFRESH_STRATEGY": "none"})
    profile = profile_for("linkedin", linkedin.providers, linkedin.provider_overrides)
    assert profile.refresh_strategy == "none" and not profile.issues_refresh_tokens
    with pytest.raises(ConfigurationError, match="refresh_strategy must be one of"):
        Settings.from_env({**ENV, "PROVIDERS": "tiktok", "TIKTOK_REFRESH_STRATEGY": "standard"})


@pytest.mark.parametrize("name", ["instagram", "facebook_pages", "youtube", "linkedin", "x_twitter", "pinterest",
                                  "threads"])
def test_each_network_is_enabled_by_configuration_alone(name):
    configured = Settings.from_env({**ENV, "PROVIDERS": f"tiktok,{name}"})
    profile = profile_for(name, configured.providers, configured.provider_overrides)
    assert profile.name == name and profile.default_scopes and not profile.insecure_endpoints()
