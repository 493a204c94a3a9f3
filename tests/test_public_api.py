"""The public API contract: every name in ``__all__`` resolves, every backend is tested."""

from __future__ import annotations

import pets
from tests.conftest import CONFORMANCE_BACKENDS, MULTI_PARTY_CONFORMANCE


def test_every_public_name_resolves() -> None:
    missing = [name for name in pets.__all__ if not hasattr(pets, name)]
    assert missing == []


def test_public_names_are_unique() -> None:
    assert len(set(pets.__all__)) == len(pets.__all__)


def test_every_registered_backend_runs_the_conformance_suite() -> None:
    covered = {options.get("name", spec) for spec, options in CONFORMANCE_BACKENDS.items()}
    assert covered | set(MULTI_PARTY_CONFORMANCE) == set(pets.available_backends())


def test_every_error_is_a_pets_error() -> None:
    errors = [getattr(pets, name) for name in pets.__all__ if name.endswith("Error")]
    assert errors and all(issubclass(e, pets.PetsError) for e in errors)


def test_contract_names_from_the_design() -> None:
    for name in ("backend", "PrivateTensor", "compile", "PrivateModel", "load_backend",
                 "load_tensor", "measure", "dp"):
        assert name in pets.__all__
    for name in ("laplace", "gaussian", "Budget", "make_private", "audit", "release"):
        assert hasattr(pets.dp, name)
