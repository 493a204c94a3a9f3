"""The backend of tests/outside_backend.py, registered from outside pets/, runs what pets runs:
a compiled CNN (exact lowering) and a saved and loaded model, within its fixed-point error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from outside_backend import FixedPointBackend
from torch import nn

import pets

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: fixed-point rounding (2**-17 per step) through a few layers of small weights
ATOL = 2e-3


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 3),
        nn.Softmax(dim=1),
    ).eval().double()


def test_it_is_registered_by_name_from_outside() -> None:
    assert "fixedpoint" in pets.available_backends()
    backend = pets.backend("fixedpoint")
    assert isinstance(backend, FixedPointBackend) and backend.lowering == "exact"


def test_a_compiled_cnn_matches_torch() -> None:
    net, x = _cnn(), torch.randn(4, 1, 6, 6, dtype=torch.float64)
    model = pets.compile(net, backend="fixedpoint", example_input=x)
    np.testing.assert_allclose(model.predict(x), net(x).detach().numpy(), atol=ATOL)


def test_a_saved_model_loads_and_runs_the_same() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), pets.nn.Square(), nn.Linear(6, 2)).eval()
    x = torch.randn(8, 4)
    backend = pets.backend("fixedpoint")
    model = pets.compile(net, backend=backend, example_input=x, approximate=True)
    loaded = pets.load_model(model_bytes(model), backend=backend)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=ATOL)
    np.testing.assert_allclose(loaded.predict(x), net(x).detach().numpy(), atol=ATOL)


def test_values_beyond_its_range_are_refused_with_what_to_do() -> None:
    with pytest.raises(pets.ValueRangeError, match=re.escape(
        "fixed-point values must stay below 1.07e+09 in size; scale the data down"
    )):
        pets.backend("fixedpoint").encrypt([2.0**40])


def model_bytes(model: pets.PrivateModel) -> bytes:
    from pets.compiler.saving import model_to_bytes

    return model_to_bytes(model)
