"""run_parties names the two usual mistakes before it starts any process (real scripts, run apart).

A nested ``fn`` or lambda, and a script that calls ``run_parties`` outside
``if __name__ == "__main__":``, used to end in one multiprocessing traceback
per process; now the script stops with one ParameterError saying what to do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pets
from pets.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]

SCRIPTS = {
    "unguarded": (
        """
        import pets

        def work(party):
            return party.rank

        print(pets.run_parties(work, parties=2))
        """,
        r"run_parties is called at the top level of .*unguarded\.py \(line 7\), outside "
        r'if __name__ == "__main__": .* Fix: put the code that calls run_parties under',
    ),
    "unguarded_through_main": (
        """
        import pets

        def work(party):
            return party.rank

        def main():
            return pets.run_parties(work, parties=2)

        main()
        """,
        r"top level of .*unguarded_through_main\.py \(line 10\)",
    ),
    "nested": (
        """
        import pets

        def main():
            def work(party):
                return party.rank
            return pets.run_parties(work, parties=2)

        if __name__ == "__main__":
            main()
        """,
        r"run_parties gets 'work', defined inside another function: .* Fix: define it at "
        r"module level",
    ),
}


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_mistaken_script_stops_with_one_pets_error(name: str, tmp_path: Path) -> None:
    source, message = SCRIPTS[name]
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    finished = _run(f"{name}.py", cwd=tmp_path)
    assert finished.returncode == 1
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("pets.errors.ParameterError: ")
    assert re.search(message, last), last
    assert "multiprocessing" not in finished.stderr
    assert finished.stderr.count("Traceback") == 1


def test_fn_from_python_dash_c_is_named(tmp_path: Path) -> None:
    code = "import pets\ndef work(party):\n    return 1\npets.run_parties(work, parties=2)"
    finished = _run("-c", code, cwd=tmp_path)
    assert finished.returncode == 1
    assert "defined in an interactive session (or python -c), which party processes cannot " \
        "import. Fix: put it in a .py file" in finished.stderr
    assert "multiprocessing" not in finished.stderr


def test_a_guarded_script_runs(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(textwrap.dedent("""
        import pets

        def work(party):
            return party.rank

        if __name__ == "__main__":
            print(pets.run_parties(work, parties=2, timeout=60))
        """))
    finished = _run("good.py", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[0, 1]"


def test_a_lambda_is_refused_in_process() -> None:
    with pytest.raises(ParameterError, match=r"run_parties gets a lambda: .* Fix: define it"):
        pets.run_parties(lambda party: party.rank, parties=2)


class _Worker:
    def run(self, party: pets.Party) -> int:
        return party.rank


def test_a_bound_method_of_a_module_level_class_passes_the_check() -> None:
    from pets.launchable import check_launchable

    check_launchable(_Worker().run)  # pickle carries it as (the object, "run")
