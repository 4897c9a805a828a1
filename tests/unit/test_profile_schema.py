"""The profile format's JSON Schema: every shipped profile passes it, and the loader refuses what it refuses."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from oauth_keeper.domain.providers import profile_from_data

pytestmark = pytest.mark.unit
PROFILES = Path(__file__).parents[2] / "shared" / "oauth_keeper" / "domain" / "profiles"
SCHEMA = json.loads((PROFILES / "profile.schema.json").read_text())
SHIPPED = sorted(p for p in PROFILES.glob("*.json") if p.name != "profile.schema.json")
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# Values of every JSON type, put where each key's value was: most are wrong somewhere.
WRONG = [None, 0, -1, 1.5, True, "", "x", "GET", [], ["x"], [1], {}, {"x": "y"}, {"x": 1}]


def shipped(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_passes_the_schema_and_loads(path):
    data = shipped(path)
    VALIDATOR.validate(data)
    assert profile_from_data(data).name == path.stem


def mutations(data: dict):
    """The profile with one value replaced (at the top level and one level down, list items included) or one
    unknown key added, each with where it happened."""
    for key in [*data, "unknown_key"]:
        for wrong in WRONG:
            changed = copy.deepcopy(data)
            changed[key] = wrong
            yield f"{key}={wrong!r}", changed
        inner = data.get(key)
        items = inner.items() if isinstance(inner, dict) else enumerate(inner) if isinstance(inner, list) else ()
        for sub, value in list(items):
            for wrong in WRONG:
                changed = copy.deepcopy(data)
                changed[key][sub] = wrong
                yield f"{key}.{sub}={wrong!r}", changed
            if isinstance(value, dict):
                for leaf in [*value, "unknown_key"]:
                    for wrong in WRONG:
                        changed = copy.deepcopy(data)
                        changed[key][sub][leaf] = wrong
                        yield f"{key}.{sub}.{leaf}={wrong!r}", changed


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_the_loader_refuses_every_profile_the_schema_refuses(path):
    """The layer does not ship jsonschema (ADR 0002): the loader's own checks must be at least as strict."""
    passed = []
    refused = 0
    for where, data in mutations(shipped(path)):
        if VALIDATOR.is_valid(data):
            continue
        refused += 1
        try:
            profile_from_data(data)
        except ValueError:
            continue
        passed.append(where)
    assert refused > 100  # the mutations do reach the schema's rules
    assert passed == [], f"the schema refuses these, the loader took them: {passed[:20]}"
