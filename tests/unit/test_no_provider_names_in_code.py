"""No provider-specific branch in the deployed Python code: provider ids appear only in the profiles.

Comments and docstrings may name a network to explain a rule; code may not compare against one."""

import io
import json
import tokenize
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "shared" / "oauth_keeper" / "domain" / "profiles"
IDS = {json.loads(p.read_text())["name"] for p in PROFILES.glob("*.json") if p.name != "profile.schema.json"}
# The deployed default of PROVIDERS (settings.py) and the example in its error message (validation.py): a stack
# deployed without the setting keeps TikTok, as it always had.
# What names a provider besides its id: its brand, its hosts, its own grant types and error codes. A branch on
# `"graph.facebook.com" in url` or `grant_type == "fb_exchange_token"` is as provider-specific as one on its id.
ALIASES = ("facebook", "twitter", "google", "x.com", "fb_exchange", "ig_exchange", "ig_refresh", "th_exchange",
           "th_refresh", "oauthexception", "revoked_access_token", "restli")
ALLOWED = {("shared/oauth_keeper/settings.py", "tiktok"), ("shared/oauth_keeper/domain/validation.py", "tiktok")}


def code_tokens(path: Path):
    """The names and string literals of a module, without comments and docstrings."""
    return source_tokens(path.read_text(encoding="utf-8"))


def source_tokens(source: str):
    """The names and string literals (f-strings' literal parts too: FSTRING_MIDDLE since Python 3.12) of `source`,
    without comments and docstrings, lowercased."""
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        docstring = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                  tokenize.DEDENT, tokenize.NL)
        if token.type in (tokenize.NAME, tokenize.STRING, tokenize.FSTRING_MIDDLE) and not docstring:
            yield token.string.lower()
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type


def test_the_profiles_name_the_providers():
    assert {"tiktok", "instagram", "facebook_pages", "youtube", "linkedin", "x_twitter", "pinterest",
            "threads"} <= IDS


def provider_names(relative: str, texts) -> list[tuple[str, str, str]]:
    """(file, provider id or alias, the token) for each provider name in `texts` not ALLOWED in that file."""
    return [(relative, name, text[:60]) for text in texts for name in (*(IDS - {"generic"}), *ALIASES)
            if name in text and (relative, name) not in ALLOWED]


def test_no_provider_id_in_the_code_of_shared_or_functions():
    found = []
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        found += provider_names(str(path.relative_to(ROOT)), code_tokens(path))
    assert found == []


@pytest.mark.parametrize("branch", [
    'if provider == "instagram":\n    pass\n',
    'if provider == f"x_twitter{suffix}":\n    pass\n',  # an f-string: FSTRING_MIDDLE, not STRING, on 3.12+
    'if "graph.facebook.com" in url:\n    pass\n',
    'params = {"grant_type": "fb_exchange_token"}\n',
    'strategy = Strategy.YOUTUBE\n',
])
def test_the_check_finds_a_provider_specific_branch(branch):
    assert provider_names("shared/oauth_keeper/x.py", source_tokens(branch)) != []


def test_the_check_leaves_comments_and_docstrings_alone():
    source = '"""Meta\'s Instagram and X (twitter.com) explained."""\nvalue = 1  # as Google does\n'
    assert provider_names("shared/oauth_keeper/x.py", source_tokens(source)) == []
