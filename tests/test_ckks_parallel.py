"""Every core: a compiled model's independent samples in worker processes (real processes)."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch
from torch import nn

import pets
from pets.compiler.parallel import _evaluate, result


@pytest.fixture(scope="module")
def model() -> pets.PrivateModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), pets.nn.Square(), nn.Linear(5, 3)).eval()
    compiled = pets.compile(net, backend=pets.backend("ckks"), example_input=torch.randn(32, 6))
    yield compiled
    compiled.close()


@pytest.mark.parametrize("layout", ["per_sample", "batched"])
def test_workers_give_the_same_results_as_one_process(model: pets.PrivateModel,
                                                      layout: str) -> None:
    rows = 5 if layout == "per_sample" else 2 * model.backend.params.slots + 3
    x = np.random.default_rng(1).uniform(-1, 1, (rows, 6))
    encrypted = model.encrypt(x, layout=layout)
    alone = model.decrypt(model(encrypted, workers=1))
    together = model.decrypt(model(encrypted, workers=2))
    assert together.shape == (rows, 3)
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together, model.simulate(x), atol=1e-3)


def test_a_dead_worker_is_a_worker_error(model: pets.PrivateModel) -> None:
    encrypted = model.encrypt(np.zeros((2, 6)), layout="per_sample")
    model(encrypted, workers=2)
    pool = model.__dict__["_workers_pool"]
    with pytest.raises(BrokenProcessPool):  # workers=2: this process and one other, killed
        pool._executor.submit(os._exit, 70).result()
    with pytest.raises(pets.WorkerError, match="a worker process died while evaluating"):
        model(encrypted, workers=2)
    np.testing.assert_allclose(model.decrypt(model(encrypted, workers=2)),
                               model.simulate(np.zeros((2, 6))), atol=1e-3)  # a fresh pool
    model.close()


def test_a_failing_worker_is_a_worker_error_naming_the_cause(model: pets.PrivateModel) -> None:
    encrypted = model.encrypt(np.zeros((2, 6)), layout="per_sample")
    model(encrypted, workers=2)
    pool = model.__dict__["_workers_pool"]
    with pytest.raises(pets.WorkerError, match=r"a worker process failed while evaluating the "
                       r"model: SerializationError: "):
        result(pool._executor.submit(_evaluate, b"not a tensor"))
    model.close()
