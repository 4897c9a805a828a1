"""The README's code blocks that target the local stack run, as written, against a local stack this test starts.

Convention (README, "Local stack"): a fenced block directly preceded by the line `<!-- local-stack -->` targets
`make dev`'s stack. This test starts the same stack on free ports (`local.dev.start_dev_stack`, as the browser
tests do) and runs the marked blocks in README order, as a reader following the README in one terminal would:

- `bash` (or `sh`, `shell`) blocks through `bash` with `set -eo pipefail`, `python` blocks through the project's
  python (the interpreter running the tests: `uv run`'s) with the Python client importable from
  `clients/python/src` (what the README's `uv run --with ./clients/python` gives), each from the repository root;
- `make dev`'s documented addresses (127.0.0.1:3000 for the API and dashboard, 127.0.0.1:3001 for the simulated
  TikTok) are replaced with the test stack's;
- what a bash block exports (and where it `cd`s) carries over to the blocks after it; nothing else does. The
  blocks start without the test process's AWS_* variables, AWS config files or PYTHONPATH: what they need, the
  README must say;
- a block that only sets the environment (every line `export NAME=value`, or a comment) runs before the others:
  the examples say "with the local signing identity exported" and point to where the README exports it, as a
  reader would have done first.

A block fails the test when it exits non-zero or runs over BLOCK_TIMEOUT. A marker that is not directly followed by
an opening fence, a block that is never closed, a language other than those above, or a block that bash or python
cannot parse fails it too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLIENT_SRC = ROOT / "clients" / "python" / "src"  # the package oauth-keeper-client as its source tree
MARKER = "<!-- local-stack -->"
LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
DEFAULT_API, DEFAULT_TIKTOK = "127.0.0.1:3000", "127.0.0.1:3001"  # `make dev`'s ports (local/dev.py)
BLOCK_TIMEOUT = 180  # seconds; a block that waits on the stack longer is broken


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence in the README
    language: str  # bash | python
    code: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def marked_blocks(text: str) -> tuple[list[Block], list[str]]:
    """(the blocks marked `<!-- local-stack -->` in `text`, in order; a description of each marker or block that
    cannot be parsed)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    fence = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
    i = 0
    in_block: str | None = None  # the fence of the block being skipped, so a marker inside one is not read
    while i < len(lines):
        line = lines[i]
        opened = fence.match(line)
        if in_block is not None:
            if line.strip() == in_block:
                in_block = None
            i += 1
            continue
        if opened and line.strip() != MARKER:
            in_block = opened.group(1)
            i += 1
            continue
        if line.strip() != MARKER:
            i += 1
            continue
        start = i + 1
        opened = fence.match(lines[start]) if start < len(lines) else None
        if opened is None:
            problems.append(f"README.md:{i + 1}: {MARKER} is not directly followed by an opening ``` fence")
            i += 1
            continue
        language = LANGUAGES.get(opened.group(2).lower())
        end = next((j for j in range(start + 1, len(lines)) if lines[j].strip() == opened.group(1)), None)
        if end is None:
            problems.append(f"README.md:{start + 1}: the marked block is never closed")
            break
        if language is None:
            problems.append(f"README.md:{start + 1}: a marked block must be bash or python, not "
                            f"{opened.group(2) or 'unlabelled'!r}")
        else:
            blocks.append(Block(start + 1, language, "\n".join(lines[start + 1:end]) + "\n"))
        i = end + 1
    for block in blocks:
        problems += _syntax_problems(block)
    return blocks, problems


def _syntax_problems(block: Block) -> list[str]:
    if block.language == "python":
        try:
            compile(block.code, str(block), "exec")
        except SyntaxError as exc:
            return [f"{block}: python cannot parse it: {exc}"]
        return []
    check = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30, check=False)
    return [f"{block}: bash cannot parse it: {check.stderr.strip()}"] if check.returncode else []


# `export NAME=value` with a plain value (no `$`, quote or backtick: nothing that depends on other blocks), or a comment
EXPORT_LINE = re.compile(r"\s*(#.*)?|\s*export [A-Za-z_][A-Za-z0-9_]*=[^\s$`'\"]*\s*(#.*)?")


def walk_order(blocks: list[Block]) -> list[Block]:
    """The blocks that only export variables first (each group in README order), then the rest."""
    def setup(block: Block) -> bool:
        return block.language == "bash" and all(EXPORT_LINE.fullmatch(line) for line in block.code.splitlines())

    return [b for b in blocks if setup(b)] + [b for b in blocks if not setup(b)]


BLOCKS, PROBLEMS = marked_blocks(README.read_text())


def test_the_readme_marks_its_local_stack_blocks_and_every_mark_parses():
    assert not PROBLEMS, "\n".join(PROBLEMS)
    assert BLOCKS, f"no README block is marked {MARKER}: the walk would prove nothing"


@pytest.mark.parametrize(("text", "problem"), [
    (f"{MARKER}\n\n```bash\necho hi\n```\n", "is not directly followed by an opening ``` fence"),
    (f"{MARKER}\n```bash\necho hi\n", "is never closed"),
    (f"{MARKER}\n```json\n{{}}\n```\n", "must be bash or python, not 'json'"),
    (f"{MARKER}\n```\necho hi\n```\n", "must be bash or python, not 'unlabelled'"),
    (f"{MARKER}\n```python\ndef broken(:\n```\n", "python cannot parse it"),
    (f"{MARKER}\n```bash\nif true; then echo\n```\n", "bash cannot parse it"),
])
def test_a_marked_block_that_cannot_be_parsed_is_a_failure(text, problem):
    _, problems = marked_blocks(text)
    assert len(problems) == 1 and problem in problems[0]


def test_only_a_marked_block_is_picked_and_a_marker_inside_another_block_is_text():
    text = (f"```bash\nmake demo\n```\n\n{MARKER}\n```python\nprint('walked')\n```\n"
            f"```markdown\n{MARKER}\n```bash\nnot a block of its own\n```\n")
    blocks, problems = marked_blocks(text)
    assert problems == [] and [(b.line, b.language, b.code) for b in blocks] == [(6, "python", "print('walked')\n")]


# -- the walk ----------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """One reader's terminal: its environment and working directory, as the blocks so far left them."""
    env: dict[str, str]
    cwd: Path
    api: str  # host:port of the test stack's gateway and dashboard
    tiktok: str  # host:port of its simulated TikTok

    def as_written_here(self, code: str) -> str:
        for default, here in ((DEFAULT_API, self.api), (DEFAULT_TIKTOK, self.tiktok)):
            code = re.sub(re.escape(default) + r"(?!\d)", here, code)  # 127.0.0.1:3000, not 127.0.0.1:30001
        return code


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    # A reader's terminal, not the test process's: no AWS_* (start_dev_stack sets its own), no AWS config files.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "POWERTOOLS_", "PYTEST_")) and k != "PYTHONPATH"}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    from local.dev import start_dev_stack

    with start_dev_stack(port=0, tiktok_port=0) as stack:
        host = stack.base_url.removeprefix("http://")
        yield Session(env=env, cwd=ROOT, api=host, tiktok=stack.tiktok.base_url.removeprefix("http://"))


def run_block(session: Session, block: Block) -> subprocess.CompletedProcess:
    """Run one block in `session`; a bash block that succeeds leaves its environment and directory to the next."""
    code = session.as_written_here(block.code)
    if block.language == "python":
        env = {**session.env, "PYTHONPATH": str(CLIENT_SRC)}
        return subprocess.run([sys.executable, "-"], input=code, cwd=session.cwd, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False)
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch)
        script = f"set -eo pipefail\n{code}\nenv -0 > {state / 'env'}\npwd > {state / 'cwd'}\n"
        run = subprocess.run(["bash", "-c", script], cwd=session.cwd, env=session.env, capture_output=True,
                             text=True, timeout=BLOCK_TIMEOUT, check=False)
        if run.returncode == 0 and (state / "cwd").exists():  # not there when the block called `exit 0`
            pairs = (item.split("=", 1) for item in (state / "env").read_text().split("\0") if "=" in item)
            session.env = {k: v for k, v in pairs if not k.startswith("BASH_FUNC_") and k not in ("_", "SHLVL")}
            session.cwd = Path((state / "cwd").read_text().strip())
    return run


def test_blocks_share_a_terminal_exports_and_directory_carry_over_and_make_devs_address_is_the_stacks():
    session = Session(env={"PATH": os.environ["PATH"]}, cwd=ROOT, api="127.0.0.1:41000", tiktok="127.0.0.1:41001")
    first = run_block(session, Block(1, "bash", "export WALK_TOKEN=abc\ncd local\n"))
    second = run_block(session, Block(5, "python", (
        "import os, pathlib\n"
        "assert os.environ['WALK_TOKEN'] == 'abc', os.environ\n"
        "assert pathlib.Path.cwd().name == 'local'\n"
        "assert 'http://127.0.0.1:3000/dev/' == 'http://127.0.0.1:41000/dev/'\n"
        "assert '127.0.0.1:3001' == '127.0.0.1:41001'\n"
        "assert '127.0.0.1:30001' != '127.0.0.1:410001'\n")))
    failing = run_block(session, Block(9, "bash", "false\necho never\n"))

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert failing.returncode == 1 and "never" not in failing.stdout


def test_blocks_that_only_export_run_first_and_the_rest_keep_the_readmes_order():
    blocks = [Block(1, "python", "print(1)\n"), Block(5, "bash", "curl -fsS x\n"),
              Block(9, "bash", "# the identity\nexport A=1\n\nexport B=two  # why\n"),
              Block(14, "bash", "export C=$A\n")]
    assert [b.line for b in walk_order(blocks)] == [9, 1, 5, 14]  # `$A` is not a plain value: run in its place


@pytest.mark.parametrize("block", walk_order(BLOCKS), ids=str)
def test_the_marked_readme_block_runs_against_the_local_stack(session, block):
    run = run_block(session, block)
    assert run.returncode == 0, (f"{block} exited {run.returncode}\n--- block ---\n"
                                 f"{session.as_written_here(block.code)}--- stdout ---\n{run.stdout[-4000:]}\n"
                                 f"--- stderr ---\n{run.stderr[-4000:]}")
