"""Subcommands come from the ``pets.commands`` entry-point group, not from imports in pets.cli."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _install_fake_distribution(folder: Path, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution on sys.path that registers commands, as a third-party package would."""
    info = folder / "pets_hello-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pets-hello\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pets.commands]\n{entry_points}")
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))


HELLO = """
    from pets.cli import Command

    def configure(parser):
        parser.add_argument("--name", default="world", help="who to greet")

    def run(args):
        print(f"hello {args.name}")
        return 0

    HELLO = Command("hello", "say hello", configure, run)
    NOT_A_COMMAND = 42
"""


def _pets(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pets.cli import main; "
            "raise SystemExit(main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, str(folder), *argv],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_command_registered_by_an_outside_package_runs(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path, "hello = pets_hello_cmd:HELLO\n",
                               {"pets_hello_cmd": HELLO})
    done = _pets(tmp_path, "hello", "--name", "pets")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello pets"


def test_a_registered_command_that_cannot_load_says_why_when_used(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path, "broken = pets_no_such_module:COMMAND\n", {})
    listed = _pets(tmp_path, "--help")
    assert listed.returncode == 0 and "broken" in listed.stdout
    done = _pets(tmp_path, "broken")
    assert done.returncode == 2
    assert ("pets: the command 'broken' is registered but cannot load: "
            "ModuleNotFoundError: No module named 'pets_no_such_module'") in done.stderr


def test_an_entry_point_that_is_not_a_command_is_refused_when_used(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path, "answer = pets_hello_cmd:NOT_A_COMMAND\n",
                               {"pets_hello_cmd": HELLO})
    done = _pets(tmp_path, "answer")
    assert done.returncode == 2
    assert ("TypeError: pets_hello_cmd:NOT_A_COMMAND is a int, not a pets.cli.Command"
            in done.stderr)


@pytest.mark.parametrize("name", ["demo", "bench", "assess", "serve", "infer"])
def test_the_applications_register_their_commands(name: str) -> None:
    from pets.cli import build_parser

    assert build_parser().parse_args([name]).command == name


def test_the_library_source_names_no_application() -> None:
    """Not even a lazy import: the applications reach the CLI only through entry points."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(pets_protocols|pets_benchmarks|pets_tour)\b",
                         re.MULTILINE)
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "pets").rglob("*.py")
                 if pattern.search(path.read_text())]
    assert offenders == []
