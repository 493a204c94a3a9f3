"""Joint training under MPC against raw CrypTen, and where a training step's time goes.

The workload is issue #17's: three parties hold a vertical split of
scikit-learn's breast-cancer features (10 columns each; party 0 also holds
the labels) and train ``Linear(30, 2)`` for 5 epochs, batch 150, lr 0.5.

* :func:`compare_with_crypten` times a whole ``pets.run_parties`` call for pets'
  ``fit`` and another for the same SGD written directly on CrypTen
  (``crypten.nn.Linear``, ``CrossEntropyLoss(skip_forward=True)``, its
  autograd; same initial weights and batch order): process start-up, sharing
  and training included on both sides.
* :func:`profile_step` splits pets' training into rounds x the measured
  per-round latency, bytes over the measured loopback bandwidth, the dealer's
  traffic, and what is left (local compute).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pets_protocols.joint_training import cancer_split

__all__ = [
    "Comparison", "Profile", "adam_target", "cnn_target", "compare_with_crypten", "dp_target",
    "profile_step",
]

SETTINGS: dict[str, Any] = {"epochs": 5, "lr": 0.5, "batch_size": 150, "seed": 3}


def _initial() -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    return {k: v.clone() for k, v in torch.nn.Linear(30, 2).state_dict().items()}


def _columns(rank: int, parties: int) -> np.ndarray:
    return np.array_split(np.arange(30), parties)[rank]


def _batches(count: int, settings: dict[str, Any]) -> list[list[np.ndarray]]:
    """The public batch order fit uses (a permutation per epoch from ``seed``)."""
    rng = np.random.default_rng(settings["seed"])
    size = settings["batch_size"]
    epochs = []
    for _ in range(settings["epochs"]):
        order = rng.permutation(count)
        epochs.append([np.sort(order[i : i + size]) for i in range(0, count, size)])
    return epochs


def _pets_party(party: Any, settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    import pets

    be, rank = party.backend, party.rank
    x_train, y_train, x_test, y_test = cancer_split()
    mine = _columns(rank, party.parties)
    linear = torch.nn.Linear(30, 2)
    linear.load_state_dict(_initial())
    model = pets.compile(linear, backend=be, example_input=torch.zeros(2, 30))
    with pets.measure("pets fit") as cost:
        x = pets.concat([be.encrypt(x_train[:, _columns(r, party.parties)] if r == rank else None,
                                    src=r) for r in range(party.parties)], axis=1)
        y = be.encrypt(np.eye(2)[y_train] if rank == 0 else None, src=0)
        start = time.perf_counter()
        model.fit(x, y, **settings)
        fit_seconds = time.perf_counter() - start
    del mine
    trained = model.to_torch(to=0)
    accuracy = None
    if trained is not None:
        with torch.no_grad():
            logits = trained(torch.tensor(x_test, dtype=torch.float32)).numpy()
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
    return {"seconds": cost.seconds, "fit_seconds": fit_seconds, "cpu": cost.cpu_seconds,
            "bytes": cost.bytes_sent, "rounds": cost.rounds,
            "offline_bytes": cost.extra.get("offline_bytes", 0.0),
            "offline_rounds": cost.extra.get("offline_rounds", 0.0), "accuracy": accuracy}


def _crypten_party(party: Any, settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    import pets
    from pets.backends.mpc import load_crypten

    crypten = load_crypten()
    rank = party.rank
    x_train, y_train, x_test, y_test = cancer_split()
    with pets.measure("crypten") as cost:
        parts = []
        for r in range(party.parties):
            block = x_train[:, _columns(r, party.parties)]
            parts.append(crypten.cryptensor(torch.tensor(block if r == rank else
                                                         np.zeros_like(block)), src=r))
        x = crypten.cat(parts, dim=1)
        onehot = np.eye(2)[y_train]
        y = crypten.cryptensor(torch.tensor(onehot if rank == 0 else np.zeros_like(onehot)),
                               src=0)
        model = crypten.nn.Linear(30, 2)
        initial = _initial()
        model.weight.data = initial["weight"].clone()
        model.bias.data = initial["bias"].clone()
        model.encrypt(src=0)
        model.train()
        loss_fn = crypten.nn.CrossEntropyLoss(skip_forward=True)
        for epoch in _batches(len(x_train), settings):
            for index in epoch:
                rows = torch.tensor(index)
                loss = loss_fn(model(x[rows]), y[rows])
                model.zero_grad()
                loss.backward()
                model.update_parameters(settings["lr"])
    model.decrypt()
    with torch.no_grad():
        weight = model.weight.data if not crypten.is_encrypted_tensor(model.weight) else None
    accuracy = None
    if weight is not None and rank == 0:
        logits = x_test @ weight.numpy().T + model.bias.data.numpy()
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
    return {"seconds": cost.seconds, "bytes": cost.bytes_sent, "rounds": cost.rounds,
            "accuracy": accuracy}


def _latency_party(party: Any, repeats: int, megabytes: int) -> dict[str, float]:
    """Per-round latency (openings of one number) and loopback bandwidth (a large opening)."""
    import pets

    be = party.backend
    small = be.encrypt(np.zeros(1) if party.rank == 0 else None, src=0)
    be.decrypt(small)
    start = time.perf_counter()
    for _ in range(repeats):
        be.decrypt(small)
    latency = (time.perf_counter() - start) / repeats
    count = megabytes * 2**20 // 8
    big = be.encrypt(np.zeros(count) if party.rank == 0 else None, src=0)
    with pets.measure() as cost:
        be.decrypt(big)
    return {"latency": latency, "bandwidth": cost.bytes_sent / max(cost.seconds - latency, 1e-9)}


@dataclass
class Comparison:
    """One run of each side, whole ``run_parties`` calls (start-up included)."""

    pets_seconds: float
    crypten_seconds: float
    pets: dict[str, Any]
    crypten: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.pets_seconds / self.crypten_seconds

    def __str__(self) -> str:
        return (
            f"3-party vertical breast-cancer training (Linear 30->2, 5 epochs, batch 150):\n"
            f"  pets    {self.pets_seconds:6.2f} s (sharing and training "
            f"{self.pets['seconds']:.2f} s, fit {self.pets['fit_seconds']:.2f} s, "
            f"{self.pets['rounds']} rounds, {self.pets['bytes'] / 2**10:.0f} KiB), "
            f"accuracy {self.pets['accuracy']}\n"
            f"  CrypTen {self.crypten_seconds:6.2f} s (sharing and training "
            f"{self.crypten['seconds']:.2f} s, {self.crypten['rounds']} rounds, "
            f"{self.crypten['bytes'] / 2**10:.0f} KiB), accuracy {self.crypten['accuracy']}\n"
            f"  pets / CrypTen wall time: {self.ratio:.3f}"
        )


def compare_with_crypten(*, parties: int = 3, settings: dict[str, Any] | None = None,
                         timeout: float = 600.0) -> Comparison:
    """pets' fit and raw CrypTen on the same training, each a whole multi-party run."""
    import pets

    chosen = dict(SETTINGS, **(settings or {}))
    start = time.perf_counter()
    ours = pets.run_parties(_pets_party, parties=parties, timeout=timeout, args=(chosen,))
    middle = time.perf_counter()
    theirs = pets.run_parties(_crypten_party, parties=parties, timeout=timeout, args=(chosen,))
    end = time.perf_counter()
    return Comparison(middle - start, end - middle, ours[0], theirs[0])


@dataclass
class Profile:
    """Where pets' training time goes (party 0's view)."""

    fit_seconds: float
    rounds: int
    latency: float
    bytes_sent: float
    bandwidth: float
    offline_rounds: float
    cpu_seconds: float

    def __str__(self) -> str:
        wire = self.rounds * self.latency
        transfer = self.bytes_sent / self.bandwidth
        dealer = self.offline_rounds * self.latency
        rest = self.fit_seconds - wire - transfer - dealer
        return (
            f"fit {self.fit_seconds:.3f} s = rounds {self.rounds} x {1e3 * self.latency:.3f} ms "
            f"= {wire:.3f} s; bytes {self.bytes_sent / 2**10:.0f} KiB / "
            f"{self.bandwidth / 2**20:.0f} MiB/s = {transfer:.3f} s; dealer "
            f"{self.offline_rounds:.0f} requests x latency = {dealer:.3f} s; local compute and "
            f"the rest {rest:.3f} s (CPU {self.cpu_seconds:.3f} s)"
        )


def profile_step(*, parties: int = 3, settings: dict[str, Any] | None = None) -> Profile:
    """Rounds, bytes and dealer requests of pets' training, with latency and bandwidth."""
    import pets

    chosen = dict(SETTINGS, **(settings or {}))
    link = pets.run_parties(_latency_party, parties=parties, args=(200, 8))[0]
    ours = pets.run_parties(_pets_party, parties=parties, timeout=600, args=(chosen,))[0]
    return Profile(ours["fit_seconds"], ours["rounds"], link["latency"], ours["bytes"],
                   link["bandwidth"], ours["offline_rounds"], ours["cpu"])


# ---- accuracy targets: the same training in the clear (pets' plain backend) beside MPC ----------


def _cnn() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(36, 10))


CNN_SETTINGS: dict[str, Any] = {"epochs": 3, "lr": 1.0, "batch_size": 32, "seed": 1,
                                "logit_interval": (-16.0, 16.0)}


def _digit_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from pets_protocols.workloads import digits

    data = digits()
    return (data.x_train.reshape(-1, 1, 8, 8), data.y_train, data.x_test.reshape(-1, 1, 8, 8),
            data.y_test)


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor(x, dtype=torch.float32)).numpy()
    return float((logits.argmax(axis=1) == y).mean())


def _shared_rows(party: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """Rows split among the parties, each sharing its own; joined in order (horizontal)."""
    import pets

    be, rank = party.backend, party.rank
    rows = np.array_split(np.arange(len(x)), party.parties)
    x_shared, y_shared = (pets.concat([be.encrypt(data[r] if i == rank else None, src=i)
                                       for i, r in enumerate(rows)], axis=0) for data in (x, y))
    return x_shared, y_shared


def _cnn_party(party: Any, settings: dict[str, Any]) -> float | None:
    """Rows split 3 ways (each party shares its own), the CNN trained jointly."""
    import torch

    import pets

    be = party.backend
    x_train, y_train, x_test, y_test = _digit_images()
    x, y = _shared_rows(party, x_train, np.eye(10)[y_train])
    model = pets.compile(_cnn(), backend=be, example_input=torch.zeros(2, 1, 8, 8))
    model.fit(x, y, **settings)
    trained = model.to_torch(to=0)
    return None if trained is None else _accuracy(trained, x_test, y_test)


def _plain_fit(net: Any, x: np.ndarray, onehot: np.ndarray, settings: dict[str, Any]) -> Any:
    import torch

    import pets

    be = pets.backend("plain")
    model = pets.compile(net, backend=be, example_input=torch.zeros(2, *x.shape[1:]))
    model.fit(be.encrypt(x), be.encrypt(onehot), **settings)
    return model.to_torch()


def cnn_target(*, parties: int = 3) -> dict[str, float]:
    """Conv2d -> ReLU -> AvgPool -> Linear on 8x8 digits: MPC against the same SGD in the clear."""
    import pets

    x_train, y_train, x_test, y_test = _digit_images()
    start = time.perf_counter()
    mpc = pets.run_parties(_cnn_party, parties=parties, timeout=1200,
                           args=(dict(CNN_SETTINGS),))[0]
    seconds = time.perf_counter() - start
    plain = _accuracy(_plain_fit(_cnn(), x_train, np.eye(10)[y_train], CNN_SETTINGS),
                      x_test, y_test)
    return {"mpc": float(mpc), "plain": plain, "seconds": seconds}


ADAM_SETTINGS: dict[str, Any] = {"epochs": 5, "lr": 0.05, "batch_size": 150, "seed": 3,
                                 "optimizer": "adam"}


def adam_target(*, parties: int = 3) -> dict[str, float]:
    """Adam on the vertical breast-cancer split under MPC against plain Adam (same start)."""
    import torch

    import pets

    x_train, y_train, x_test, y_test = cancer_split()
    mpc = pets.run_parties(_pets_party, parties=parties, timeout=1200,
                           args=(dict(ADAM_SETTINGS),))[0]["accuracy"]
    linear = torch.nn.Linear(30, 2)
    linear.load_state_dict(_initial())
    plain = _accuracy(_plain_fit(linear, x_train, np.eye(2)[y_train], ADAM_SETTINGS),
                      x_test, y_test)
    return {"mpc": float(mpc), "plain": plain}


# ---- DP-SGD under MPC beside Opacus on the pooled rows ------------------------------------------

DP_SETTINGS: dict[str, Any] = {"epochs": 5, "lr": 1.0, "batch_size": 64, "seed": 5}
DP_DELTA, DP_NORM, DP_ACCOUNTANT = 1e-5, 1.0, "rdp"


def _mlp() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _dp_party(party: Any, epsilons: tuple[float, ...]) -> list[float | None]:
    """Rows split 3 ways; for each epsilon the MLP trained with DP-SGD on the shares."""
    import torch

    import pets
    import pets.dp

    be = party.backend
    x_train, y_train, x_test, y_test = cancer_split()
    x, y = _shared_rows(party, x_train, np.eye(2)[y_train])
    accuracies: list[float | None] = []
    for epsilon in epsilons:
        model = pets.compile(_mlp(), backend=be, example_input=torch.zeros(2, 30))
        settings = pets.dp.SGD(epsilon=epsilon, delta=DP_DELTA, max_grad_norm=DP_NORM,
                               accountant=DP_ACCOUNTANT)
        model.fit(x, y, dp=settings, **DP_SETTINGS)
        trained = model.to_torch(to=0)
        accuracies.append(None if trained is None else _accuracy(trained, x_test, y_test))
    return accuracies


def _opacus_accuracy(epsilon: float, seed: int = 0) -> float:
    """The same model, epochs, batch size, lr and clipping with pets.dp.make_private (Opacus)."""
    import warnings

    import torch

    import pets.dp

    x_train, y_train, x_test, y_test = cancer_split()
    torch.manual_seed(seed)
    net = _mlp()
    data = torch.utils.data.TensorDataset(torch.tensor(x_train, dtype=torch.float32),
                                          torch.tensor(y_train))
    loader = torch.utils.data.DataLoader(data, batch_size=DP_SETTINGS["batch_size"])
    optimiser = torch.optim.SGD(net.parameters(), lr=DP_SETTINGS["lr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private = pets.dp.make_private(module=net, optimizer=optimiser, data_loader=loader,
                                       target_epsilon=epsilon,
                                       target_delta=DP_DELTA, epochs=DP_SETTINGS["epochs"],
                                       max_grad_norm=DP_NORM, accountant=DP_ACCOUNTANT)
        for _ in range(DP_SETTINGS["epochs"]):
            for xb, yb in private.data_loader:
                if not len(xb):
                    continue
                private.optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(private.module(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]
                private.optimizer.step()
    return _accuracy(private.module, x_test, y_test)


def dp_target(*, parties: int = 3, epsilons: tuple[float, ...] = (1.0, 4.0, 8.0),
              opacus_runs: int = 3) -> dict[float, dict[str, float]]:
    """Test accuracy of DP-SGD under MPC and of Opacus on the pooled rows, per epsilon
    (Opacus: the mean of ``opacus_runs`` seeds; both are noisy)."""
    import pets

    mpc = pets.run_parties(_dp_party, parties=parties, timeout=1800, args=(epsilons,))[0]
    return {eps: {"mpc": float(acc), "opacus": float(np.mean(
        [_opacus_accuracy(eps, seed) for seed in range(opacus_runs)]))}
        for eps, acc in zip(epsilons, mpc, strict=True)}


if __name__ == "__main__":
    print(profile_step())
    print(compare_with_crypten())
    print("CNN on digits:", cnn_target())
    print("Adam on breast cancer:", adam_target())
    print("DP-SGD, 3 parties, against Opacus on the pooled rows:", dp_target())
