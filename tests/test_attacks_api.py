"""pets.attacks as a namespace: lazy torch, every name resolves, examples run, membership wired."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


MODULES = ["pets.attacks", "pets.attacks.reconstruction", "pets.attacks.inversion",
           "pets.attacks.properties", "pets.attacks.membership", "pets.dp.auditing.rmia"]


def test_importing_pets_and_the_attacks_imports_no_torch() -> None:
    code = """
        import sys
        import pets
        pets.attacks, pets.record, pets.verify_record
        import pets.attacks
        print(sorted(m for m in ("torch", "opacus", "sklearn") if m in sys.modules))
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_name_in_all_resolves_and_is_sorted() -> None:
    assert all(hasattr(pets.attacks, name) for name in pets.attacks.__all__)
    assert list(pets.attacks.__all__) == sorted(pets.attacks.__all__)
    for name in ("attacks", "record", "verify_record"):
        assert name in pets.__all__


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def overfit(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    from pets_benchmarks.audit import train_overfit

    return train_overfit(x, y, epochs=200)  # type: ignore[no-any-return]


def test_membership_inference_runs_loss_lira_and_rmia_given_shadow_data() -> None:
    from pets_benchmarks.audit import split_digits

    split = split_digits(100, test=0)
    report = pets.attacks.membership_inference(
        overfit(*split.members), split.members, split.non_members, reference=split.reference,
        train_fn=overfit, num_shadows=2,
    )
    assert list(report.results) == ["loss", "lira", "rmia"]
    assert report.auc > 0.6
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["attack"] == "membership_inference" and set(data["results"]) == set(report.results)


def test_membership_inference_without_shadow_data_runs_the_loss_attack() -> None:
    data = (np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32), np.arange(20) % 2)
    report = pets.attacks.membership_inference(torch.nn.Linear(2, 2), data, data)
    assert list(report.results) == ["loss"]

