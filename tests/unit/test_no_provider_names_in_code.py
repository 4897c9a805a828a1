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
ALLOWED = {("shared/oauth_keeper/settings.py", "tiktok"), ("shared/oauth_keeper/domain/validation.py", "tiktok")}


def code_tokens(path: Path):
    """The names and string literals of a module, without comments and docstrings."""
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        docstring = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                  tokenize.DEDENT, tokenize.NL)
        if token.type in (tokenize.NAME, tokenize.STRING) and not docstring:
            yield token.string.lower()
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type


def test_the_profiles_name_the_providers():
    assert {"tiktok", "instagram", "facebook_pages", "youtube", "linkedin", "x_twitter", "pinterest",
            "threads"} <= IDS


def test_no_provider_id_in_the_code_of_shared_or_functions():
    found = []
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        relative = str(path.relative_to(ROOT))
        for text in code_tokens(path):
            for provider in IDS - {"generic"}:
                if provider in text and (relative, provider) not in ALLOWED:
                    found.append((relative, provider, text[:60]))
    assert found == []
