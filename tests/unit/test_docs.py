"""The design docs stay true to the code: every file they name exists, and the import contract they quote is the
one `make test` runs."""

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
# Where a path written without its top folder is looked up (the docs say so at the top of architecture.md).
BASES = (ROOT, ROOT / "shared", ROOT / "shared" / "oauth_keeper", ROOT / "shared" / "oauth_keeper" / "domain")
FILE = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|json|yaml|toml|md|html|sh|mjs))`")
SEARCHED = [p for p in ROOT.rglob("*") if p.is_file() and not {".venv", ".git", "node_modules"} & set(p.parts)]


def test_the_docs_exist():
    assert ROOT / "docs" / "architecture.md" in DOCS
    assert len([p for p in DOCS if p.parent.name == "decisions"]) >= 9


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_doc_names_exists(doc):
    names = set(FILE.findall(doc.read_text(encoding="utf-8")))
    missing = []
    for name in names:
        where_named = [base / name for base in BASES] if "/" in name else [p for p in SEARCHED if p.name == name]
        if not any(p.exists() for p in where_named):
            missing.append(name)
    assert not missing, f"{doc.relative_to(ROOT)} names files that do not exist: {sorted(missing)}"


def test_the_import_contract_quoted_in_the_architecture_is_the_one_that_runs():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(\[tool\.importlinter\].*?)```", text, re.S)
    assert block, "docs/architecture.md quotes the import contract in a ```toml block"
    quoted = tomllib.loads(block.group(1))["tool"]["importlinter"]
    running = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert quoted == running


def test_the_layer_package_itself_imports_nothing():
    """The contract's layers hold every submodule; the package's own `__init__` is outside them, so it stays
    empty of imports (one that imported boto3 would load it in every handler, unseen by the contract)."""
    import ast

    init = ROOT / "shared" / "oauth_keeper" / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
