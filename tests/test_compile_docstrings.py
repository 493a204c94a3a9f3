"""The ``>>>`` examples of the HE compiler's and the CKKS backend's modules run as shown."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pets.slots",
    "pets.compiler.saving",
    "pets.compiler.sources",
    "pets.compiler.layers",
    "pets.compiler.approximate",
    "pets.compiler.parallel",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0, f"{name} has no examples"
    assert failures == 0
