"""MPC overhead of pets against the same work written directly against CrypTen.

    pytest benchmarks/test_bench_mpc.py --benchmark-group-by=group

In one process (CrypTen's single-process mode, which pets' ``"mpc"`` backend uses
outside ``pets.run_parties``): the arithmetic and protocols of secret sharing,
without the network, so the groups compare the libraries' own cost. Compare within
a group:

* ``mpc-mlp-inference-64``: the digits ReLU MLP (64-32-10) on 64 shared samples,
  ``pets.compile`` against ``cryptensor`` ``matmul`` / ``relu`` by hand;
* ``mpc-private-matmul-64``: a 64x64 private @ private product;
* ``mpc-relu-4096``: ReLU (a comparison) of 4096 shared values.

``pets bench`` runs the same kind of work between real party processes (bytes and
rounds on the wire); ``pets bench --only mpc`` compares them with CrypTen there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import pets
from pets.backends.mpc import load_crypten

SAMPLES = 64


@dataclass
class Setup:
    backend: Any
    crypten: Any
    model: Any
    weights: list[tuple[torch.Tensor, torch.Tensor]]
    x: np.ndarray


@pytest.fixture(scope="module")
def mpc() -> Setup:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x = np.random.default_rng(0).uniform(0, 1, (SAMPLES, 64))
    with warnings.catch_warnings():  # one process: pets warns that nothing is secret
        warnings.simplefilter("ignore", pets.InsecureProviderWarning)
        backend = pets.backend("mpc")  # starts CrypTen's single-process engine
    model = pets.compile(net.eval(), backend=backend, example_input=torch.tensor(x))
    weights = [(m.weight.detach().T.contiguous(), m.bias.detach())
               for m in net if isinstance(m, torch.nn.Linear)]
    return Setup(backend, load_crypten(), model, weights, x)


def crypten_mlp(crypten: Any, x: np.ndarray, weights: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> np.ndarray:
    """The MLP as a CrypTen user writes it: share, matmul, add, ReLU, reveal."""
    h = crypten.cryptensor(torch.tensor(x, dtype=torch.float32))
    for i, (w, b) in enumerate(weights):
        h = h.matmul(w) + b
        if i < len(weights) - 1:
            h = h.relu()
    return np.asarray(h.get_plain_text().numpy())


def test_both_compute_the_same_outputs(mpc: Setup) -> None:
    ours = mpc.model.predict(mpc.x)
    theirs = crypten_mlp(mpc.crypten, mpc.x, mpc.weights)
    assert np.abs(ours - theirs).max() < 1e-2  # both 16-bit fixed point


@pytest.mark.benchmark(group="mpc-mlp-inference-64")
def test_pets_mlp_inference(benchmark: Any, mpc: Setup) -> None:
    benchmark.pedantic(mpc.model.predict, args=(mpc.x,), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-mlp-inference-64")
def test_crypten_mlp_inference(benchmark: Any, mpc: Setup) -> None:
    benchmark.pedantic(crypten_mlp, args=(mpc.crypten, mpc.x, mpc.weights), rounds=5,
                       warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-private-matmul-64")
def test_pets_private_matmul(benchmark: Any, mpc: Setup) -> None:
    be = mpc.backend
    a, b = be.encrypt(mpc.x), be.encrypt(mpc.x.T)
    benchmark.pedantic(lambda: a @ b, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-private-matmul-64")
def test_crypten_private_matmul(benchmark: Any, mpc: Setup) -> None:
    a = mpc.crypten.cryptensor(torch.tensor(mpc.x, dtype=torch.float32))
    b = mpc.crypten.cryptensor(torch.tensor(mpc.x.T.copy(), dtype=torch.float32))
    benchmark.pedantic(lambda: a.matmul(b), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-relu-4096")
def test_pets_relu(benchmark: Any, mpc: Setup) -> None:
    x = mpc.backend.encrypt(np.linspace(-1, 1, 4096))
    benchmark.pedantic(x.relu, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-relu-4096")
def test_crypten_relu(benchmark: Any, mpc: Setup) -> None:
    x = mpc.crypten.cryptensor(torch.linspace(-1, 1, 4096))
    benchmark.pedantic(x.relu, rounds=5, warmup_rounds=1)
