"""Property tests of pets' loaders in process: plain and mpc objects, budgets, requirements.

CKKS payloads reach SEAL's C++ parsers, which could take the test process down
with them: those run in child processes (``tests/test_fuzz_subprocess.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_payloads import mutate_budget, mutate_envelope, mutate_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pets
import pets.dp

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("PETS_FUZZ_EXAMPLES", "100")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)

finite = st.floats(allow_nan=False, allow_infinity=False)
arrays = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=6),
    elements=finite,
)


@pytest.fixture(scope="module")
def mpc() -> pets.Backend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pets.backend("mpc")


# ---- plain and mpc tensors and backends ----------------------------------------------------


@FUZZ
@given(arrays)
def test_plain_tensors_round_trip_exactly_at_any_magnitude(values: np.ndarray) -> None:
    be = pets.backend("plain")
    loaded = pets.load_tensor(be.encrypt(values).to_bytes(), be)
    assert loaded.shape == values.shape
    np.testing.assert_array_equal(be.decrypt(loaded), values)


@FUZZ
@given(arrays.filter(lambda a: np.all(np.abs(a) < 1e4)))
def test_mpc_tensors_round_trip_within_tolerance(mpc: pets.Backend, values: np.ndarray) -> None:
    loaded = pets.load_tensor(mpc.encrypt(values).to_bytes(), mpc)
    np.testing.assert_allclose(mpc.decrypt(loaded), values, atol=mpc.tolerance)


@pytest.fixture(scope="module")
def tensor_bytes(mpc: pets.Backend) -> dict[str, tuple[pets.Backend, bytes]]:
    """One tensor per backend, encrypted once: mutations must start from the same bytes."""
    values = np.linspace(-1, 1, 6).reshape(2, 3)
    plain = pets.backend("plain")
    return {name: (be, be.encrypt(values).to_bytes()) for name, be in [("plain", plain),
                                                                        ("mpc", mpc)]}


@FUZZ
@given(st.sampled_from(["plain", "mpc"]), st.randoms(use_true_random=False))
def test_forged_tensor_bytes_load_consistently_or_are_refused(
    tensor_bytes: dict[str, tuple[pets.Backend, bytes]], name: str, rng: random.Random
) -> None:
    be, base = tensor_bytes[name]
    forged = mutate_envelope(base, rng)
    try:
        tensor = pets.load_tensor(forged, be)
    except pets.PetsError:
        return
    revealed = be.decrypt(tensor)  # what loads must decrypt to its announced shape
    assert revealed.shape == tensor.shape


@pytest.fixture(scope="module")
def backend_bytes(mpc: pets.Backend) -> dict[str, bytes]:
    return {"plain": pets.backend("plain").to_bytes(), "mpc": mpc.to_bytes()}


@FUZZ
@given(st.sampled_from(["plain", "mpc"]), st.randoms(use_true_random=False))
def test_forged_backend_bytes_load_a_working_backend_or_are_refused(
    backend_bytes: dict[str, bytes], name: str, rng: random.Random
) -> None:
    forged = mutate_envelope(backend_bytes[name], rng)
    try:
        backend = pets.load_backend(forged)
    except pets.PetsError:
        return
    assert backend.name == name
    encrypted = backend.encrypt([1.5])
    if backend.has_secret_key:
        np.testing.assert_allclose(backend.decrypt(encrypted), [1.5], atol=backend.tolerance)


# ---- requirements (a model's description, as a client receives it) -------------------------


requirements_like = st.fixed_dictionaries(
    {},
    optional={
        "depth": st.integers(min_value=-5, max_value=2**40),
        "matmul_shapes": st.lists(st.lists(st.integers(-2, 2**34), max_size=3), max_size=4),
        "first_product": st.none() | st.lists(st.integers(-2, 2**34), max_size=3),
        "max_abs": finite | st.integers(-(2**64), 2**64) | st.text(max_size=3),
        "max_rows": st.integers(min_value=-5, max_value=2**40),
        "functions": st.lists(st.text(max_size=8) | st.integers(), max_size=3),
    },
)


@FUZZ
@given(requirements_like)
def test_requirements_from_any_description_are_built_or_refused(data: dict[str, Any]) -> None:
    try:
        requirements = pets.Requirements.from_dict(data)
    except pets.SerializationError:
        return
    assert pets.Requirements.from_dict(requirements.to_dict()) == requirements


def test_requirements_with_a_max_abs_beyond_float_range_are_refused() -> None:
    with pytest.raises(pets.SerializationError):
        pets.Requirements.from_dict({"max_abs": 10**400})


# ---- privacy budgets ----------------------------------------------------------------------------

spend = st.tuples(
    st.floats(min_value=0.0, max_value=0.4),
    st.floats(min_value=0.0, max_value=2e-6),
    st.none() | st.text(max_size=10),
)


@FUZZ
@given(st.lists(spend, max_size=12), st.sampled_from(["basic", "rdp", "prv"]))
def test_a_budget_never_records_more_than_its_limit_and_reloads_exactly(
    tmp_path_factory: pytest.TempPathFactory, spends: list[Any], composition: str
) -> None:
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5, composition=composition)
    for epsilon, delta, label in spends:
        with contextlib.suppress(pets.BudgetExceededError):
            budget.spend(epsilon, delta, label=label)
        assert budget.spent[0] <= 1.0 and budget.spent[1] <= 1e-5
    if composition == "basic":
        assert budget.spent[0] == math.fsum(entry.epsilon for entry in budget.ledger)
    path = tmp_path_factory.mktemp("budget") / "budget.json"
    budget.save(path)
    loaded = pets.dp.Budget.load(path)
    assert loaded.ledger == budget.ledger and loaded.spent == budget.spent


@pytest.fixture(scope="module")
def saved_budget(tmp_path_factory: pytest.TempPathFactory) -> str:
    budget = pets.dp.Budget(epsilon=5.0, delta=1e-5, composition="rdp")
    budget.spend(0.5, label="count")
    budget.spend_mechanism(pets.dp.GaussianMechanism(1.0, 1e-6, 1.0))
    budget.spend_gaussian(1.1, delta=1e-5, steps=100, sampling_rate=0.01)
    path = tmp_path_factory.mktemp("saved") / "budget.json"
    budget.save(path)
    return path.read_text()


@FUZZ
@given(st.randoms(use_true_random=False))
def test_a_mutated_budget_file_loads_within_its_limits_or_is_refused(
    saved_budget: str, tmp_path_factory: pytest.TempPathFactory, rng: random.Random
) -> None:
    path = tmp_path_factory.mktemp("mutated") / "budget.json"
    path.write_bytes(mutate_budget(saved_budget, rng))
    try:
        budget = pets.dp.Budget.load(path)
    except pets.BudgetFileError:
        return
    spent_epsilon, spent_delta = budget.spent
    assert 0 <= spent_epsilon <= budget.epsilon and 0 <= spent_delta <= budget.delta
    assert all(entry.epsilon >= 0 and 0 <= entry.delta <= 1 for entry in budget.ledger)


@FUZZ
@given(json_value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
))
def test_any_json_in_a_checksummed_budget_file_is_refused_or_valid(
    tmp_path_factory: pytest.TempPathFactory, json_value: Any
) -> None:
    """Even with a correct checksum (a forger's file), odd JSON never crashes the loader."""
    import hashlib

    from pets.dp._budget_file import canonical

    content = mutate_json({"epsilon": 1.0, "delta": 0.0, "composition": "basic",
                           "ledger": [json_value]}, random.Random(repr(json_value)))
    try:
        digest = hashlib.sha256(canonical(content).encode()).hexdigest()
    except ValueError:  # NaN or infinity: the file cannot even be written canonically
        digest = "0"
    path: Path = tmp_path_factory.mktemp("json") / "budget.json"
    document = {"format": "pets.dp.Budget", "version": 1, "sha256": digest, "content": content}
    path.write_text(json.dumps(document))
    try:
        budget = pets.dp.Budget.load(path)
    except pets.BudgetFileError:
        return
    assert 0 <= budget.spent[0] <= budget.epsilon


# ---- known loader failures in CKKS (reproductions; the subprocess campaign finds them) ---------


def _forged_ckks_tensor(ckks: pets.Backend, **meta: Any) -> bytes:
    from pets.serialization import pack, unpack

    envelope = unpack(ckks.encrypt(np.ones((2, 3)), layout="batched").to_bytes(), kind="tensor")
    envelope.meta.update(meta)
    return pack(envelope)


def test_a_ckks_tensor_announcing_absurd_rows_is_refused(ckks: pets.Backend) -> None:
    with pytest.raises(pets.SerializationError):
        pets.load_tensor(_forged_ckks_tensor(ckks, rows=1e300), ckks)


def test_a_ckks_tensor_with_an_absurd_bound_is_refused(ckks: pets.Backend) -> None:
    with pytest.raises(pets.SerializationError):
        pets.load_tensor(_forged_ckks_tensor(ckks, bound=10**400), ckks)
