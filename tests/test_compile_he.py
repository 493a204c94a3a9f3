"""pets.compile for HE: bad inputs, parameters sized from the model, saved models."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import pets


def test_a_lambda_instead_of_a_module_names_the_fix() -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        "compile takes a torch.nn.Module or a torch.export.ExportedProgram, got a lambda; "
        "wrap the function in a module"
    )):
        pets.compile(lambda x: x * 2, backend="ckks", example_input=np.ones((2, 3)))


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_an_empty_example_input_names_the_fix(shape: tuple[int, int]) -> None:
    with pytest.raises(pets.CompileError, match=re.escape(
        f"example_input is empty (shape {shape}); pass a batch of typical inputs"
    )):
        pets.compile(torch.nn.Linear(3, 2), backend="ckks", example_input=np.zeros(shape))
