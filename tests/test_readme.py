"""Every command the README shows exists as written: make targets, CLI subcommands and options.

The commands that do real work (ingest examples, the demo, the worker) are run by their own
tests; this one proves the README names nothing the code has dropped or renamed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from orchestration.cli import _build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("*/README.md"))]
_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _shell_lines(path: Path) -> list[str]:
    """Command lines of the ```bash blocks, without comments and continuation breaks."""
    lines: list[str] = []
    in_block = False
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip().startswith("```"):
            in_block = raw.strip() in {"```bash", "```sh", "```shell", "```console"}
            continue
        if not in_block:
            continue
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.extend(part.strip() for part in line.split("&&") if part.strip())
    return lines


def _words(line: str) -> list[str]:
    words = shlex.split(line.replace("$(", "(").replace("...", "x"))
    while words and _ENV_ASSIGNMENT.match(words[0]):
        words.pop(0)
    return words


def _candleflow_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in _shell_lines(doc):
            words = _words(line)
            if words and Path(words[0]).name == "candleflow":
                found.append((f"{doc.relative_to(ROOT)}: {line}", words[1:]))
    return found


def _make_targets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _shell_lines(doc):
            words = _words(line)
            if words[:1] == ["make"]:
                found.extend((f"{doc.relative_to(ROOT)}: {line}", t) for t in words[1:])
    return found


def test_readme_when_read_then_it_shows_candleflow_commands_and_make_targets():
    assert len(_candleflow_commands()) >= 5
    assert {"demo", "test"} <= {target for _, target in _make_targets()}


@pytest.mark.parametrize(("where", "argv"), _candleflow_commands(), ids=lambda v: str(v)[:60])
def test_readme_command_when_parsed_then_the_cli_accepts_it(where, argv):
    try:
        _build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"the CLI refuses a README command ({where}): exit {exc.code}")


@pytest.mark.parametrize(("where", "target"), _make_targets(), ids=lambda v: str(v)[:60])
def test_readme_make_target_when_looked_up_then_the_makefile_defines_it(where, target):
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), where
