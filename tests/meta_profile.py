"""`meta_test`: a provider whose deauthorize and data-deletion callbacks are Meta's `signed_request`, on TikTok's
wire otherwise (its connects run against a second simulated TikTok, with its own app secret), so these tests run
without the real Meta profiles."""

from __future__ import annotations

import json
from typing import Any

from oauth_keeper.domain import providers

DEAUTHORIZATION = {"format": "signed_request", "account_field": "user_id", "time_field": "issued_at",
                   "algorithm": "HMAC-SHA256", "data_deletion": True}


def meta_test_data() -> dict[str, Any]:
    tiktok = json.loads((providers._PROFILES / "tiktok.json").read_text(encoding="utf-8"))  # noqa: SLF001
    return {**tiktok, "name": "meta_test", "display_name": "Meta test app", "webhook": None,
            "deauthorization": DEAUTHORIZATION}


def use_meta_test_profile(monkeypatch: Any) -> None:
    """Make `meta_test` a profile file as far as `profile_for` can tell."""
    original = providers._profile_file  # noqa: SLF001
    data = meta_test_data()
    monkeypatch.setattr(providers, "_profile_file", lambda name: data if name == "meta_test" else original(name))
