"""Inputs that numpy, Python or an engine used to refuse with their own errors: each a PetsError.

Issue #18's "errors that are not pets errors": ragged, string and complex lists to
``encrypt`` (numpy ValueError/TypeError), values too large for an encoding
(OverflowError, or a silent wrap-around under MPC), and a saved model whose
``precision`` is not a number (TypeError deep in the CKKS parameter search).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_payloads import raw_pack, split

import pets
import pets.dp
from pets.errors import (
    DPConfigurationError,
    ParameterError,
    SerializationError,
    ShapeMismatchError,
    UnsupportedOperationError,
    ValueRangeError,
)


def quiet(name: str, **options: object) -> pets.Backend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pets.backend(name, **options)


@pytest.mark.parametrize("name", ["plain", "mpc"])
def test_a_ragged_list_is_a_shape_error(name: str) -> None:
    with pytest.raises(ShapeMismatchError, match=r"encrypt got nested lists of different "
                                                  r"lengths \(a ragged array\); give every row"):
        quiet(name).encrypt([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("data", [["a", "b"], [[1, 2], [3, "x"]], [object()], {"a": 1}])
def test_what_is_not_numbers_is_refused_with_the_fix(data: object) -> None:
    with pytest.raises(UnsupportedOperationError,
                       match=r"encrypt needs numbers .*convert the data to numbers first"):
        quiet("plain").encrypt(data)


def test_complex_values_are_refused_and_stay_a_type_error() -> None:
    with pytest.raises(UnsupportedOperationError, match="needs real numbers, got complex"):
        quiet("plain").encrypt([1 + 2j])
    assert issubclass(UnsupportedOperationError, TypeError)


def test_a_ragged_list_to_laplace_is_a_dp_error() -> None:
    with pytest.raises(DPConfigurationError, match="x must be numeric, got list that numpy"):
        pets.dp.laplace([[1.0, 2.0], [3.0]], epsilon=1.0, sensitivity=1.0)


def test_ckks_refuses_1e308_as_data_and_as_max_value() -> None:
    with pytest.raises(ValueRangeError, match=r"\|values\| up to 1e\+308 exceed"):
        quiet("ckks").encrypt([[1e308]])
    with pytest.raises(ValueRangeError, match=r"values up to 1e\+308 need 1026 integer bits"):
        quiet("ckks", max_value=1e308).encrypt([[1.0]])


def test_mpc_refuses_values_its_fixed_point_ring_would_wrap() -> None:
    mpc = quiet("mpc")
    with pytest.raises(ValueRangeError, match=r"values up to 1e\+308 exceed 7\.04e\+13, the "
                                              r"largest the MPC fixed-point encoding holds"):
        mpc.encrypt([[1e308]])
    assert mpc.decrypt(mpc.encrypt([[1e13]]))[0, 0] == pytest.approx(1e13)  # below: exact


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch.manual_seed(0)
    model = pets.compile(torch.nn.Sequential(torch.nn.Linear(4, 3)), backend=quiet("ckks"),
                         example_input=np.random.default_rng(0).random((8, 4)))
    path = tmp_path_factory.mktemp("model") / "model.pets"
    model.save(path)
    return Path(path).read_bytes()


def with_precision(data: bytes, precision: object) -> bytes:
    """The saved model with its requirements' precision replaced (checksum recomputed)."""
    magic, version, header, blobs = split(data)
    header["meta"]["requirements"]["extension"]["precision"] = precision
    return raw_pack(magic, version, json.dumps(header).encode(), blobs)


@pytest.mark.parametrize("precision", ["x", [1], True, -1])
def test_a_saved_model_whose_precision_is_not_a_number_is_refused(
    saved_model: bytes, precision: object
) -> None:
    with pytest.raises(SerializationError,
                       match=r"requirements: precision must be a finite number >= 0"):
        pets.load_model(with_precision(saved_model, precision), backend=quiet("ckks"))


def test_a_saved_model_asking_for_precision_zero_says_none_reaches_it(saved_model: bytes) -> None:
    with pytest.raises(ParameterError, match="no 128-bit-secure CKKS parameters reach precision 0"):
        pets.load_model(with_precision(saved_model, 0), backend=quiet("ckks"))
