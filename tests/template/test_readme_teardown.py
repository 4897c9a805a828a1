"""The README's "Deleting the stack" names exactly what `sam delete` keeps: the resources template.yaml retains."""

from __future__ import annotations

import re

import pytest

from local.cfn import ROOT, template

pytestmark = pytest.mark.unit


def teardown_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("### Deleting the stack\n", 1)[1].split("\n## ", 1)[0]


def test_the_kept_table_lists_every_retained_resource_and_nothing_else():
    resources = template()["Resources"]
    retained = {name for name, res in resources.items() if res.get("DeletionPolicy") == "Retain"}
    rows = [line for line in teardown_section().splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`(\w+)`", row.split(" | ")[0]) if name in resources}
    assert listed == retained


def test_what_is_kept_only_when_replaced_is_said():
    resources = template()["Resources"].values()
    if any(r.get("UpdateReplacePolicy") == "Retain" and r.get("DeletionPolicy") != "Retain" for r in resources):
        assert "`UpdateReplacePolicy: Retain`" in teardown_section()
