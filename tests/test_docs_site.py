"""The documentation site builds with warnings as errors, and its API reference is complete.

``mkdocs build --strict`` (``mkdocs.yml``: the guides in ``docs/`` and an API
reference generated from the docstrings by mkdocstrings) fails on a broken link,
a missing page, a docstring that does not render or a Sphinx role that names
nothing; ``make test`` runs it through this file. The rest checks the griffe
extension that turns pets' docstrings (prose with reST literals, roles, tables
and ``>>>`` examples) into Markdown, ``docs/api/griffe_pets.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "docs" / "api" / "griffe_pets.py"


def _mkdocs(config: Path, site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner
    )


def _require_mkdocs() -> None:
    """Skip where the docs extra is not installed, except in CI (``make test`` installs it)."""
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is not installed: make setup installs the [docs] extra")
        pytest.skip("install the docs extra: pip install -e '.[docs]'")


def _extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("griffe_pets", EXTENSION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the site -----------------------------------------------------------------------------


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    _require_mkdocs()
    result = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site", ROOT)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    compile_page = (tmp_path / "site" / "api" / "compile" / "index.html").read_text()
    assert 'id="pets.compiler.compile"' in compile_page
    assert "&gt;&gt;&gt;" in compile_page and "<blockquote" not in compile_page  # >>> as code


def test_a_reference_to_nothing_fails_the_strict_build(tmp_path: Path) -> None:
    _require_mkdocs()
    package = tmp_path / "mypkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""A package. See :func:`helper`, :mod:`.sub.leaf` and :func:`missing_helper`."""\n\n'
        "def helper() -> None:\n"
        '    """Help (:func:`~mypkg.sub.leaf.twig`, :class:`pathlib.Path`)."""\n'
    )
    (package / "sub" / "__init__.py").write_text('"""Leaves: :mod:`.leaf`."""\n')
    (package / "sub" / "leaf.py").write_text(
        '"""A leaf: :func:`twig`, :func:`.twig`."""\n\n'
        "def twig() -> None:\n"
        '    """A twig of :mod:`mypkg.sub`."""\n'
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("::: mypkg\n")
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent(f"""\
        site_name: check
        plugins:
          - mkdocstrings:
              handlers:
                python:
                  paths: [.]
                  options:
                    docstring_style: null
                    extensions: ["{EXTENSION.as_posix()}:PetsDocstrings"]
        """))
    result = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site", tmp_path)
    assert result.returncode != 0
    warnings = [line for line in result.stderr.splitlines() if "names nothing" in line]
    assert len(warnings) == 1, result.stderr
    assert "mypkg: the reference 'missing_helper' names nothing in the package" in warnings[0]


def test_every_public_name_is_in_the_api_overview() -> None:
    import pets

    overview = (ROOT / "docs" / "api" / "index.md").read_text(encoding="utf-8")
    missing = [
        name for name in pets.__all__
        if f"`pets.{name}`" not in overview and f"[`{name}`]" not in overview
    ]
    assert not missing, f"docs/api/index.md does not list {missing}"


def test_every_compiler_name_is_on_the_compile_page() -> None:
    import pets.compiler

    page = (ROOT / "docs" / "api" / "compile.md").read_text(encoding="utf-8")
    missing = [name for name in pets.compiler.__all__ if f"`{name}`" not in page
               and f"::: pets.compiler.{name}\n" not in page]
    assert not missing, f"docs/api/compile.md does not show {missing}"


# ---- the docstring dialect, as Markdown ---------------------------------------------------


def test_doctest_examples_become_fenced_code() -> None:
    text = "Adds.\n\n>>> 1 + 1\n2\n>>> for i in range(2):\n...     print(i)\n0\n1\n\nAfter."
    markdown = _extension().markdown_from_rest(text)
    assert markdown.split("\n")[2:11] == [
        "```pycon", ">>> 1 + 1", "2", ">>> for i in range(2):", "...     print(i)", "0", "1",
        "```", "",
    ]
    assert markdown.endswith("After.")


def test_simple_tables_become_markdown_tables() -> None:
    text = textwrap.dedent("""\
        Intro:

        =========  ==============
        name       what
        =========  ==============
        ``add``    native + native,
                   same shape
        ``neg``    -native
        =========  ==============

        After.""")
    lines = _extension().markdown_from_rest(text).split("\n")
    assert lines[3:7] == [
        "| name | what |", "| --- | --- |",
        "| ``add`` | native + native, same shape |", "| ``neg`` | -native |",
    ]


def test_literal_blocks_become_fenced_text() -> None:
    text = "The tree::\n\n    PetsError\n    ├── BackendError\n\nAfter."
    assert _extension().markdown_from_rest(text).split("\n") == [
        "The tree:", "", "```text", "PetsError", "├── BackendError", "```", "", "After.",
    ]


def test_roles_become_optional_cross_references() -> None:
    paths = {"Budget": "pets.dp.budget.Budget", "torch.nn.Module": ""}
    markdown = _extension().markdown_from_rest(
        "See :class:`~Budget`, :class:`the budget <Budget>` and :class:`torch.nn.Module`.",
        paths.get,
    )
    reference = '<autoref identifier="pets.dp.budget.Budget" optional><code>{}</code></autoref>'
    assert markdown == (
        f"See {reference.format('Budget')}, {reference.format('the budget')} and "
        "<code>torch.nn.Module</code>."
    )
