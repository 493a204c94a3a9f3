"""pets.dp loads its engines lazily and names the install command when one is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pets.dp

HEAVY = ("torch", "opacus", "opendp", "dp_accounting")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_import_pets_dp_imports_no_engine() -> None:
    result = run_python(
        f"""
        import sys
        import pets
        before = {{m for m in {HEAVY!r} if m in sys.modules}}
        import pets.dp
        after = {{m for m in {HEAVY!r} if m in sys.modules}}
        print(sorted(after - before), sorted(before))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0].startswith("[] "), result.stdout


def test_missing_opendp_names_the_install_command() -> None:
    result = run_python(
        """
        import sys
        sys.modules["opendp"] = None  # as if OpenDP were not installed
        import pets.dp
        from pets.errors import BackendNotInstalledError
        try:
            pets.dp.laplace([1.0], epsilon=1.0, sensitivity=1.0)
        except BackendNotInstalledError as exc:
            print(type(exc).__name__, "|", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("BackendNotInstalledError | ")
    assert "pip install 'pets[dp]'" in result.stdout


def test_every_name_in_all_exists() -> None:
    for name in pets.dp.__all__:
        assert hasattr(pets.dp, name), name
    assert sorted(pets.dp.__all__) == list(pets.dp.__all__)


def test_pets_dp_is_reachable_from_pets() -> None:
    import pets

    assert pets.dp is pets.dp  # lazy attribute of the top-level package
    assert pets.dp.Budget is pets.dp.budget.Budget


@pytest.mark.parametrize(
    "name", ["laplace", "gaussian", "discrete_laplace", "discrete_gaussian", "randomized_response"]
)
def test_functional_api_has_a_mechanism_of_the_same_name(name: str) -> None:
    assert name in pets.dp.registered_mechanisms()
