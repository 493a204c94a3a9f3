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

Before it is timed, each function checks its result against plaintext (numpy or
torch on the same inputs) within :data:`TOLERANCE`, the error of 16-bit fixed point on
these sizes; a run that misses fails instead of being timed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from pets_benchmarks.checks import assert_close

import pets
from pets.backends.mpc import load_crypten

SAMPLES = 64
#: largest difference from plaintext allowed: CrypTen's 16-bit fixed point (2^-16 per
#: value, summed over 64-long products and two layers; ReLU exact)
TOLERANCE = 1e-2


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


def plain_mlp(mpc: Setup) -> np.ndarray:
    h = torch.tensor(mpc.x, dtype=torch.float32)
    for i, (w, b) in enumerate(mpc.weights):
        h = h @ w + b
        if i < len(mpc.weights) - 1:
            h = torch.relu(h)
    return h.numpy()


def check(result: Any, reference: np.ndarray, what: str) -> None:
    """``result`` (numpy, or a private tensor to reveal) within TOLERANCE of ``reference``."""
    if hasattr(result, "backend"):
        result = result.backend.decrypt(result)
    if hasattr(result, "get_plain_text"):
        result = result.get_plain_text().numpy()
    assert_close(result, reference, TOLERANCE, what)


def test_both_compute_the_same_outputs(mpc: Setup) -> None:
    ours = mpc.model.predict(mpc.x)
    theirs = crypten_mlp(mpc.crypten, mpc.x, mpc.weights)
    assert np.abs(ours - theirs).max() < TOLERANCE  # both 16-bit fixed point


@pytest.mark.benchmark(group="mpc-mlp-inference-64")
def test_pets_mlp_inference(benchmark: Any, mpc: Setup) -> None:
    check(mpc.model.predict(mpc.x), plain_mlp(mpc), "pets MLP")
    benchmark.pedantic(mpc.model.predict, args=(mpc.x,), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-mlp-inference-64")
def test_crypten_mlp_inference(benchmark: Any, mpc: Setup) -> None:
    check(crypten_mlp(mpc.crypten, mpc.x, mpc.weights), plain_mlp(mpc), "CrypTen MLP")
    benchmark.pedantic(crypten_mlp, args=(mpc.crypten, mpc.x, mpc.weights), rounds=5,
                       warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-private-matmul-64")
def test_pets_private_matmul(benchmark: Any, mpc: Setup) -> None:
    be = mpc.backend
    a, b = be.encrypt(mpc.x), be.encrypt(mpc.x.T)
    check(a @ b, mpc.x @ mpc.x.T, "pets private matmul")
    benchmark.pedantic(lambda: a @ b, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-private-matmul-64")
def test_crypten_private_matmul(benchmark: Any, mpc: Setup) -> None:
    a = mpc.crypten.cryptensor(torch.tensor(mpc.x, dtype=torch.float32))
    b = mpc.crypten.cryptensor(torch.tensor(mpc.x.T.copy(), dtype=torch.float32))
    check(a.matmul(b), mpc.x @ mpc.x.T, "CrypTen private matmul")
    benchmark.pedantic(lambda: a.matmul(b), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-relu-4096")
def test_pets_relu(benchmark: Any, mpc: Setup) -> None:
    x = mpc.backend.encrypt(np.linspace(-1, 1, 4096))
    check(x.relu(), np.maximum(np.linspace(-1, 1, 4096), 0), "pets ReLU")
    benchmark.pedantic(x.relu, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="mpc-relu-4096")
def test_crypten_relu(benchmark: Any, mpc: Setup) -> None:
    x = mpc.crypten.cryptensor(torch.linspace(-1, 1, 4096))
    check(x.relu(), np.maximum(np.linspace(-1, 1, 4096), 0), "CrypTen ReLU")
    benchmark.pedantic(x.relu, rounds=5, warmup_rounds=1)
