"""Every ```python block of README.md and docs/*.md runs.

Each file's blocks run in order in one fresh namespace (state carries from block to
block, as a reader types them), in a subprocess whose working directory is a
temporary folder (files a block writes land there). A failure names the file, the
block and its first line. Shell commands belong in ```console blocks, output in
```text: those are not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: documents whose blocks take longer than the ~20 s a default test may (CKKS keys, DP-SGD)
SLOW = {"README.md", "docs/he.md"}

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

RUNNER = """
import sys, traceback
blocks = {blocks!r}
namespace = {{"__name__": "__main__"}}
for number, (line, code) in enumerate(blocks, start=1):
    try:
        exec(compile(code, f"{name} block {{number}} (line {{line}})", "exec"), namespace)
    except BaseException:
        print(f"FAILED: {name} block {{number}} of {{len(blocks)}}, starting at line {{line}}",
              file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
print(f"ran {{len(blocks)}} blocks")
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every ```python block, in order."""
    return [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for match in _FENCE.finditer(text)
    ]


def _cases() -> list[object]:
    cases = []
    for path in DOCUMENTS:
        name = path.relative_to(ROOT).as_posix()
        marks = [pytest.mark.slow] if name in SLOW else []
        cases.append(pytest.param(path, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("document", _cases())
def test_every_python_block_runs(document: Path, tmp_path: Path) -> None:
    name = document.relative_to(ROOT).as_posix()
    blocks = python_blocks(document.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{name} has no python blocks")
    script = RUNNER.format(blocks=blocks, name=name)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**_environment(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{name}: a python block failed\n{result.stderr[-4000:]}"
    assert f"ran {len(blocks)} blocks" in result.stdout


def _environment() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_blocks_are_found_with_their_line_numbers() -> None:
    text = "intro\n```python\nx = 1\n```\n\n```console\n$ pets\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = x\n")]


# ---- the command line's own documentation ---------------------------------------------------


def _parsers() -> list[tuple[str, object]]:
    import argparse

    from pets.cli import build_parser

    parser = build_parser()
    found: list[tuple[str, object]] = [("pets", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"pets {name}", sub) for name, sub in action.choices.items()]
    return found


def test_every_command_line_option_says_what_it_does() -> None:
    import argparse

    missing = [
        f"{command} {action.option_strings or action.dest}"
        for command, parser in _parsers()
        for action in parser._actions  # type: ignore[attr-defined]
        if action.help is None
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]
    assert not missing, f"options without help text: {missing}"


def test_command_line_help_is_plain_text() -> None:
    for command, parser in _parsers():
        text = parser.format_help()  # type: ignore[attr-defined]
        assert "``" not in text and ":class:" not in text, f"{command} --help: {text}"
        assert parser.description, f"{command} --help has no description"  # type: ignore[attr-defined]


def test_pets_version_prints_the_package_version() -> None:
    import pets

    result = subprocess.run([sys.executable, "-m", "pets", "--version"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT, check=True)
    assert result.stdout.strip() == f"pets {pets.__version__}"


def test_the_guides_examples_need_no_bench_package() -> None:
    """README and the guides teach the library: their examples import pets, torch, numpy,
    scikit-learn (and pets_protocols for the protocols), never the bench engine, except
    the pages that document the bench engine itself."""
    about_the_bench = {"docs/bench.md", "docs/assess.md"}
    offenders = [
        f"{path.relative_to(ROOT).as_posix()} line {line}"
        for path in DOCUMENTS if path.relative_to(ROOT).as_posix() not in about_the_bench
        for line, code in python_blocks(path.read_text())
        if re.search(r"^\s*(from|import)\s+pets_benchmarks\b", code, re.MULTILINE)
    ]
    assert offenders == []
