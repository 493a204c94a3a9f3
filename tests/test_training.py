"""PrivateModel.fit: SGD on private tensors, checked against torch's own SGD.

On the plain backend the same steps as ``torch.optim.SGD`` give the same
weights to 1e-6 (float64 against float32 torch); under MPC in one process
the fixed-point weights stay within ``MPC_WEIGHT_ATOL`` of plain's.
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pets

MPC_WEIGHT_ATOL = 3e-2


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(48, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y


def _net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))


def _torch_sgd(net: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
               batch: int, seed: int, loss: str) -> nn.Module:
    """What fit computes, by torch: the same public batch order, mean losses."""
    net = copy.deepcopy(net).double()
    optimiser = torch.optim.SGD(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    xt = torch.tensor(x)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for first in range(0, len(x), batch):
            index = np.sort(order[first : first + batch])
            optimiser.zero_grad()
            out = net(xt[index])
            if loss == "cross_entropy":
                value = nn.functional.cross_entropy(out, torch.tensor(y[index]))
            else:
                value = nn.functional.mse_loss(out, torch.tensor(np.eye(2)[y[index]]))
            value.backward()
            optimiser.step()
    return net


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_plain_fit_takes_the_same_steps_as_torch_sgd(loss: str) -> None:
    x, y = _data()
    net = _net()
    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, 5))
    history = model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=3, lr=0.3,
                        batch_size=16, seed=7, loss=loss, logit_interval=(-20.0, 20.0))
    assert (history.epochs, history.steps) == (3, 9)
    expected = _torch_sgd(net, x, y, epochs=3, lr=0.3, batch=16, seed=7, loss=loss)
    trained = model.to_torch()
    assert trained is not None
    for (name, got), want in zip(trained.state_dict().items(),
                                 expected.state_dict().values(), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6, err_msg=name)


def test_mpc_fit_follows_plain_fit_within_fixed_point_error() -> None:
    x, y = _data()
    weights = {}
    for name in ("plain", "mpc"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pets.InsecureProviderWarning)
            be = pets.backend(name)
        model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
        model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=5, lr=0.5, batch_size=16,
                  seed=3)
        trained = model.to_torch()
        assert trained is not None
        weights[name] = [p.detach().numpy() for p in trained.parameters()]
        accuracy = (model.predict(x).argmax(axis=1) == y).mean()
        assert accuracy > 0.85, name
    for got, want in zip(weights["mpc"], weights["plain"], strict=True):
        np.testing.assert_allclose(got, want, atol=MPC_WEIGHT_ATOL)


def test_revealed_mse_loss_falls() -> None:
    x, y = _data()
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    history = model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=4, lr=0.2,
                        batch_size=8, loss="mse", reveal_loss=True, seed=1)
    assert len(history.losses) == 4 and history.losses[-1] < history.losses[0]


def test_targets_must_have_the_output_shape() -> None:
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "y must have the model's output shape (N, *(2,)) (one-hot labels), got (4,)"
    )):
        model.fit(be.encrypt(np.zeros((4, 5))), be.encrypt(np.zeros(4)), epochs=1)


def test_a_backend_without_training_is_refused() -> None:
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    model.backend = pets.backend("ckks")  # a model moved to a backend that cannot train
    with pytest.raises(pets.CompileError, match=re.escape(
        "the ckks backend cannot train; use 'mpc' or 'plain'"
    )):
        model.fit(be.encrypt(np.zeros((4, 5))), be.encrypt(np.zeros((4, 2))), epochs=1)


def test_revealed_cross_entropy_is_torchs_mean_loss_of_the_epoch() -> None:
    x, y = _data()
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    history = model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=1, lr=1e-9,
                        batch_size=48, reveal_loss=True, shuffle=False, seed=1)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(_net().double()(torch.tensor(x)),
                                               torch.tensor(y)).item()
    assert history.losses[0] == pytest.approx(expected, abs=1e-3)


def test_progress_callback_and_early_stopping() -> None:
    x, y = _data()
    be = pets.backend("plain")
    model = pets.compile(_net(), backend=be, example_input=torch.zeros(2, 5))
    lines: list[str] = []
    seen: list[int] = []
    validation = (be.encrypt(x[:8]), be.encrypt(np.eye(2)[y[:8]]))
    history = model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=30, lr=1e-6,
                        batch_size=16, seed=1, progress=lines.append,
                        callback=lambda h: seen.append(h.epochs), validation=validation,
                        patience=2)
    assert history.stopped == "early stopping" and history.epochs == 3  # lr too small to gain
    assert seen == [1, 2, 3] and len(lines) == 3
    assert re.fullmatch(r"epoch 1/30: [0-9.]+ s, validation accuracy [0-9.]+", lines[0])
    stopped = model.fit(be.encrypt(x), be.encrypt(np.eye(2)[y]), epochs=5, callback=lambda h: True)
    assert (stopped.epochs, stopped.stopped) == (1, "callback")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_cuda_parties_are_refused_clearly_without_a_gpu() -> None:
    with pytest.raises(pets.ParameterError, match=re.escape(
        "device 'cuda' asked for, but torch sees no CUDA GPU; use device='cpu'"
    )):
        pets.run_parties(_net, parties=3, device="cuda")
