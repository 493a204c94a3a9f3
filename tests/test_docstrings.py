"""The ``>>>`` examples in the core modules' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pets",
    "pets.registry",
    "pets.tensor",
    "pets.polynomial",
    "pets.measure",
    "pets.network",
    "pets.backends.base",
    "pets.backends.plain",
    "pets.backends.ckks",
    "pets.backends.ckks.params",
    "pets.compiler",
    "pets.compiler.model",
    "pets.compiler.exact_model",
    "pets.compiler.training",
    "pets.compiler.optimisers",
    "pets.dp.sgd",
    "pets.backends.mpc.snapshot",
    "pets.functions",
    "pets.backends.mpc",
    "pets.backends.mpc.engine",
    "pets.backends.mpc.messages",
    "pets.cli",
    # the HE compiler's and CKKS modules
    "pets.slots",
    "pets.serialization",
    "pets.compiler.saving",
    "pets.compiler.sources",
    "pets.compiler.layers",
    "pets.compiler.approximate",
    "pets.compiler.parallel",
    # the encrypted-inference service
    "pets_protocols.service",
    "pets_protocols.service.config",
    "pets_protocols.service.errors",
    "pets_protocols.service.schemas",
    "pets_protocols.service.sessions",
    "pets_protocols.service.flight",
    "pets_protocols.service.client",
    "pets_protocols.service.command",
    # BFV for two parties (provider "he", the hybrid backend)
    "pets.bfv.randomness",
    "pets.bfv.scheme",
    "pets.bfv.ole",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0, f"{name} has no examples"
    assert failures == 0
