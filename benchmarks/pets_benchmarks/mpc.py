"""What MPC costs: inference and training under 2 and 3 real parties, against CrypTen.

Every figure comes from one run of real party processes (``pets.run_parties``,
a TTP dealer), with pets and the same work written directly against CrypTen
interleaved in the same processes, so their ratio is fair:

* inference of a digits ReLU MLP (64-32-10, plain weights, private inputs):
  pets' compiled model against ``cryptensor`` ``matmul``/``relu`` by hand;
* a training step of a 30->2 softmax classifier on 150 breast-cancer samples:
  ``PrivateModel.fit`` against CrypTen's ``crypten.nn`` with its autograd, three
  ways (:data:`CRYPTEN_TRAINING`): ``CrossEntropyLoss`` as it comes (it computes the
  loss value), with ``skip_forward=True`` (no loss value, as pets' ``fit``), and
  with ``skip_forward=True`` and fewer exp/reciprocal iterations
  (:data:`TUNED_ITERATIONS`). Every side starts from the same weights and steps
  through the same batches (one seeded shuffle); a plaintext numpy SGD over the
  same batches is the accuracy reference. Rounds and bytes per step, and the
  accuracy each reaches after the same epochs;
* a training step of the digits MLP (batch 64), time and rounds per step.

Bytes and rounds are per party, counted by the pets communicator (the bytes
handed to the wire; the dealer's traffic apart, as offline bytes). The parties
share one machine; the LAN and WAN columns add what those rounds and bytes cost
over a 0.2 ms / 1 Gbit/s and a 40 ms / 100 Mbit/s link (:mod:`pets_benchmarks.linked`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pets_benchmarks.linked import LINKS, over_link
from pets_benchmarks.report import Table

__all__ = ["CRYPTEN_TRAINING", "TUNED_ITERATIONS", "MPCReport", "run_mpc"]

#: CrypTen's approximation settings for the tuned baseline (its defaults: exp 8
#: iterations, reciprocal 10 Newton steps); the softmax inputs here are logits
#: minus their maximum, in about [-16, 0], where these keep the same accuracy
TUNED_ITERATIONS = {"functions.exp_iterations": 6, "functions.reciprocal_nr_iters": 6}

#: the CrypTen training baselines: row label -> (skip_forward, config overrides, what
#: differs from pets' ``fit`` besides the engine)
CRYPTEN_TRAINING: dict[str, tuple[bool, dict[str, int], str]] = {
    "CrypTen nn + autograd (defaults)": (
        False, {}, "computes the loss value (log of the softmax), which fit skips; CrypTen's "
                   "exp and reciprocal iterations"),
    "CrypTen, skip_forward=True": (
        True, {}, "no loss value, as fit; CrypTen's default exp (8) and reciprocal (10) "
                  "iterations; its softmax takes the max by comparisons"),
    "CrypTen, skip_forward=True, tuned": (
        True, TUNED_ITERATIONS, "no loss value; exp 6 and reciprocal 6 iterations; its "
                                "softmax takes the max by comparisons"),
}

#: what the training comparison holds equal on every side
#: the softmax training's step size, batch and shuffle seed (every side)
LR, BATCH, SEED = 0.5, 150, 3

#: what differs between pets' inference and the CrypTen-by-hand baseline
INFERENCE_DIFFERS = ("the same matmul, add and relu calls on cryptensors, written by hand: "
                     "no compile step, no pets layer")

SAME = ("same initial weights, same seeded shuffle (seed 3), same batches of 150, lr 0.5, "
        "same epochs")


@dataclass
class MPCReport:
    """Tables of one run and the ratios the README quotes."""

    table: Table
    training: Table
    ratios: dict[str, float] = field(default_factory=dict)
    #: what the training comparison holds equal on every side
    same: str = ""

    def __str__(self) -> str:
        lines = [str(self.table), "", str(self.training), f"every training row: {self.same}", ""]
        lines += [f"{name}: {value:.3g}" for name, value in self.ratios.items()]
        return "\n".join(lines)


def _digits_mlp(seed: int = 0) -> tuple[dict[str, np.ndarray], float]:
    """A 64-32-10 ReLU MLP trained in the clear; its weights and plaintext test accuracy."""
    import torch

    from pets_benchmarks.workloads import digits

    torch.manual_seed(seed)
    data = digits()
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(30):
        for batch in torch.randperm(len(x)).split(64):  # type: ignore[no-untyped-call]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    with torch.no_grad():
        logits = net(torch.tensor(data.x_test, dtype=torch.float32)).numpy()
    accuracy = float((logits.argmax(axis=1) == data.y_test).mean())
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}, accuracy


def _mlp(state: dict[str, np.ndarray]) -> Any:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    net.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    return net.eval()


def _cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return (x - x.mean(axis=0)) / x.std(axis=0), y


def _timed(fn: Callable[[], Any]) -> tuple[Any, Any]:
    import pets

    with pets.measure() as cost:
        result = fn()
    return result, cost


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _crypten_training(crypten: Any, initial: dict[str, Any], cx: Any, cy: Any,
                      labels: np.ndarray, *, epochs: int, skip_forward: bool
                      ) -> tuple[float, float, float, float]:
    """CrypTen's own training loop on the shared data: (seconds, bytes, rounds) per step
    and the accuracy reached; the batches are fit's (``default_rng(3)``, sorted)."""
    import torch

    model = crypten.nn.Linear(30, 2)
    model.weight.data = initial["weight"].clone()  # same start as pets
    model.bias.data = initial["bias"].clone()
    model.encrypt(src=0)
    model.train()
    loss_fn = crypten.nn.CrossEntropyLoss(skip_forward=skip_forward)
    count = len(labels)

    def train() -> int:
        steps = 0
        for index in _batches(count, epochs):
            chosen = torch.tensor(index)
            loss = loss_fn(model(cx[chosen]), cy[chosen])
            model.zero_grad()
            loss.backward()
            model.update_parameters(LR)
            steps += 1
        return steps

    steps, cost = _timed(train)
    model.eval()
    predicted = model(cx).get_plain_text().numpy()
    return (cost.seconds / steps, cost.bytes_sent / steps, cost.rounds / steps,
            float((predicted.argmax(axis=1) == labels).mean()))


def _batches(count: int, epochs: int) -> Iterator[np.ndarray]:
    """The batches ``PrivateModel.fit(..., batch_size=BATCH, seed=SEED)`` steps through."""
    rng = np.random.default_rng(SEED)
    for _ in range(epochs):
        order = rng.permutation(count)
        for first in range(0, count, BATCH):
            yield np.sort(order[first : first + BATCH])


def _plain_training(features: np.ndarray, onehot: np.ndarray, initial: dict[str, Any],
                    epochs: int) -> float:
    """The same SGD in float64 numpy (same start, batches and step): its accuracy."""
    weight = initial["weight"].double().numpy().T.copy()
    bias = initial["bias"].double().numpy().copy()
    for index in _batches(len(features), epochs):
        xb, yb = features[index], onehot[index]
        logits = xb @ weight + bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        grad = (exp / exp.sum(axis=1, keepdims=True) - yb) / len(index)
        weight -= LR * xb.T @ grad
        bias -= LR * grad.sum(axis=0)
    predicted = (features @ weight + bias).argmax(axis=1)
    return float((predicted == onehot.argmax(axis=1)).mean())


def _party(party: Any, state: dict[str, np.ndarray], samples: int, repeats: int,
           epochs: int) -> dict[str, Any]:
    """Runs in every party process: pets and CrypTen interleaved on the same work."""
    import torch

    import pets
    from pets.backends.mpc import load_crypten
    from pets_benchmarks.workloads import digits

    crypten = load_crypten()
    be = party.backend
    rank = party.rank
    data = digits()
    x = data.x_test[:samples]
    net = _mlp(state)
    model = pets.compile(net, backend=be, example_input=torch.tensor(data.x_train[:64]))
    weights = [(state["0.weight"].T, state["0.bias"]), (state["2.weight"].T, state["2.bias"])]
    out: dict[str, Any] = {"pets": [], "crypten": []}

    def pets_inference() -> np.ndarray:
        shared = model.encrypt(x if rank == 0 else None, src=0)
        return np.asarray(model.decrypt(model(shared)))

    def crypten_inference() -> np.ndarray:
        h = crypten.cryptensor(torch.tensor(x if rank == 0 else np.zeros_like(x)), src=0)
        for i, (w, b) in enumerate(weights):
            h = h.matmul(torch.tensor(w)) + torch.tensor(b)
            if i == 0:
                h = h.relu()
        return np.asarray(h.get_plain_text().numpy())

    pets_inference()  # warm-up (first calls pay for imports and caches)
    for _ in range(repeats):
        for name, fn in (("pets", pets_inference), ("crypten", crypten_inference)):
            logits, cost = _timed(fn)
            out[name].append((cost.seconds, cost.bytes_sent, cost.rounds,
                              float((logits.argmax(axis=1) == data.y_test[:samples]).mean())))

    # a training step of a 30->2 softmax classifier on 150 samples, and equal epochs
    features, labels = _cancer()
    onehot = np.eye(2)[labels]
    torch.manual_seed(0)
    linear = torch.nn.Linear(30, 2)
    initial = {k: v.clone() for k, v in linear.state_dict().items()}
    shared_x = be.encrypt(features if rank == 0 else None, src=0)
    shared_y = be.encrypt(onehot if rank == 0 else None, src=0)
    classifier = pets.compile(linear, backend=be, example_input=torch.zeros(2, 30))
    history, cost = _timed(lambda: classifier.fit(shared_x, shared_y, epochs=epochs, lr=LR,
                                                  batch_size=BATCH, seed=SEED))
    revealed = classifier.decrypt(classifier(shared_x))
    out["pets_step"] = (cost.seconds / history.steps, cost.bytes_sent / history.steps,
                        cost.rounds / history.steps,
                        float((revealed.argmax(axis=1) == labels).mean()))
    out["plain_accuracy"] = _plain_training(features, onehot, initial, epochs)

    cx = crypten.cryptensor(torch.tensor(features if rank == 0 else np.zeros_like(features)),
                            src=0)
    cy = crypten.cryptensor(torch.tensor(onehot if rank == 0 else np.zeros_like(onehot)), src=0)
    for name, (skip_forward, overrides, _) in CRYPTEN_TRAINING.items():
        with crypten.cfg.temp_override(overrides) if overrides else _nothing():
            out[name] = _crypten_training(crypten, initial, cx, cy, labels, epochs=epochs,
                                          skip_forward=skip_forward)

    # a training step of the digits MLP (batch 64), pets only: rounds and time
    mlp = pets.compile(_mlp(state), backend=be, example_input=torch.zeros(2, 64))
    batch_x = be.encrypt(data.x_train[:64] if rank == 0 else None, src=0)
    batch_y = be.encrypt(np.eye(10)[data.y_train[:64]] if rank == 0 else None, src=0)
    history, cost = _timed(lambda: mlp.fit(batch_x, batch_y, epochs=1, lr=0.1, batch_size=64))
    out["mlp_step"] = (cost.seconds, cost.bytes_sent, cost.rounds)
    return out


def run_mpc(*, parties: Sequence[int] = (2, 3), samples: int = 64, repeats: int = 3,
            epochs: int = 3, quick: bool = False,
            progress: Callable[[str], None] | None = None) -> MPCReport:
    """Run the MPC rows for each party count (``quick``: 2 parties, fewer repeats)."""
    import pets

    say = progress or (lambda message: None)
    if quick:
        parties, samples, repeats, epochs = (2,), 32, 2, 1
    state, plain_accuracy = _digits_mlp()
    table = Table(["technique", "parties", "ms/sample", "LAN ms/sample", "WAN ms/sample",
                   "KiB/sample", "rounds", "accuracy", "x CrypTen time", "differs from pets"])
    training = Table(["training step", "parties", "ms/step", "LAN ms/step", "WAN ms/step",
                      "KiB/step", "rounds/step", f"accuracy ({epochs} epochs)",
                      "differs from pets"])
    start = time.perf_counter()
    from pets_benchmarks.workloads import digits

    x = digits().x_test[:samples]
    plain_ms = _plain_ms(state, x)
    table.add("plaintext (torch)", 1, plain_ms, plain_ms, plain_ms, 0.0, 0, plain_accuracy,
              float("nan"), "float32 in one process, no secrecy")
    ratios: dict[str, float] = {}
    for count in parties:
        say(f"MPC: {count} parties (+ dealer), inference and training, pets beside CrypTen")
        results = pets.run_parties(_party, parties=count, timeout=600,
                                   args=(state, samples, repeats, epochs))
        first = results[0]
        medians = {}
        for name in ("pets", "crypten"):
            runs = first[name]
            seconds = statistics.median(r[0] for r in runs)
            medians[name] = seconds
            table.add(f"{name} MPC inference", count, 1e3 * seconds / samples,
                      *(1e3 * over_link(seconds, rounds=runs[0][2], sent_bytes=runs[0][1],
                                        profile=link) / samples for link in LINKS),
                      runs[0][1] / samples / 1024, runs[0][2], runs[0][3],
                      seconds / statistics.median(r[0] for r in first["crypten"]),
                      "-" if name == "pets" else INFERENCE_DIFFERS)
        ratios[f"pets / CrypTen inference time, {count} parties"] = (
            medians["pets"] / medians["crypten"])
        training.add("pets fit (30->2, 150 samples)", count, *_step(first["pets_step"]), "-")
        for name, (_, _, differs) in CRYPTEN_TRAINING.items():
            training.add(name, count, *_step(first[name]), differs)
            ratios[f"pets / {name}: rounds per training step, {count} parties"] = (
                first["pets_step"][2] / first[name][2])
            ratios[f"pets / {name}: time per training step, {count} parties"] = (
                first["pets_step"][0] / first[name][0])
        training.add("plaintext numpy SGD (30->2)", 1, *[float("nan")] * 5,
                     first["plain_accuracy"], "float64 in one process, no secrecy")
        seconds, sent, rounds = first["mlp_step"]
        training.add("pets fit (digits MLP 64-32-10, batch 64)", count,
                     *_step((seconds, sent, rounds, float("nan"))), "-")
    say(f"MPC rows done in {time.perf_counter() - start:.0f} s")
    return MPCReport(table, training, ratios, same=SAME)


def _step(values: tuple[float, float, float, float]) -> tuple[float, ...]:
    """(ms, LAN ms, WAN ms, KiB, rounds, accuracy) per step from (seconds, bytes, rounds,
    accuracy); LAN and WAN by :func:`~pets_benchmarks.linked.over_link`."""
    seconds, sent, rounds, accuracy = values
    linked = [1e3 * over_link(seconds, rounds=rounds, sent_bytes=sent, profile=link)
              for link in LINKS]
    return 1e3 * seconds, *linked, sent / 1024, rounds, accuracy


def _plain_ms(state: dict[str, np.ndarray], x: np.ndarray) -> float:
    import torch

    net = _mlp(state)
    tensor = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        net(tensor)
        start = time.perf_counter()
        net(tensor)
    return 1e3 * (time.perf_counter() - start) / len(x)
