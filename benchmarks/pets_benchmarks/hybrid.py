"""What two parties alone pay: the hybrid against pure MPC (dealer, provider "he") and CKKS.

Run as ``python -m pets_benchmarks.hybrid [--batch N] [--models a,b]``. Three
models, each trained here on the digits that ship with scikit-learn:

* ``mlp``: the digits MLP (64-32-10, ReLU);
* ``tutorial``: TenSEAL's tutorial CNN (conv 7x7 stride 3, square, FC, square,
  FC) on the digits upsampled to 28x28;
* ``cnn``: a ReLU + max-pool CNN on the 8x8 digits (conv 3x3, 4 channels).

Every method gets the same test digits. MPC runs (hybrid, dealer, provider
"he") keep the weights with party 1 (``weights_from=1``); CKKS is one key
holder and a server with the weights in the clear, ReLU replaced by a
polynomial. Reported per method: predictions equal to torch's (count), test
accuracy, online and offline bytes (both parties, both directions), rounds
(online / offline, party 0), time of encrypt + inference + decrypt, its
offline part, and a WAN estimate (40 ms RTT, 100 Mbit/s) modelled as the
measured time plus every round's half RTT plus every byte over the bandwidth
(the parties' own offline traffic included: provider "he" has no dealer to
hide it behind).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pets_benchmarks.report import Table

__all__ = ["MODELS", "main", "run_hybrid"]

WAN_RTT_S = 0.040
WAN_BYTES_PER_S = 100e6 / 8


def _mlp() -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _tutorial() -> Any:
    from torch import nn

    import pets.nn

    return nn.Sequential(nn.Conv2d(1, 4, kernel_size=7, stride=3), pets.nn.Square(),
                         nn.Flatten(), nn.Linear(256, 64), pets.nn.Square(), nn.Linear(64, 10))


def _cnn() -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 10))


#: name -> (architecture, input shape of one sample, data set name)
MODELS: dict[str, tuple[Callable[[], Any], tuple[int, ...], str]] = {
    "mlp": (_mlp, (64,), "digits"),
    "tutorial": (_tutorial, (1, 28, 28), "digits_28"),
    "cnn": (_cnn, (1, 8, 8), "digits"),
}


def _data(name: str) -> Any:
    from pets_benchmarks import workloads

    return getattr(workloads, name)()


def _trained(name: str, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """The model trained in the clear, and the test images and labels."""
    import torch

    make, shape, dataset = MODELS[name]
    data = _data(dataset)
    torch.manual_seed(seed)
    net = make()
    x = torch.tensor(data.x_train, dtype=torch.float32).reshape(-1, *shape)
    y = torch.tensor(data.y_train)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01 if name != "tutorial" else 0.003)
    for _ in range(10):
        for batch in torch.randperm(len(x)).split(64):  # type: ignore[no-untyped-call]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    return net.eval(), data.x_test.reshape(-1, *shape), data.y_test


def _party(party: Any, name: str, state: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
    """One party: compile (the owner with its weights, the client the bare architecture),
    encrypt, infer, reveal to the client; the costs of the last three."""
    import torch

    import pets

    net = MODELS[name][0]()
    if party.rank == 1:
        net.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    net.eval()
    model = pets.compile(net, backend=party.backend,
                         example_input=torch.tensor(images[:1], dtype=torch.float32),
                         weights_from=1)
    with pets.measure() as cost:
        x = model.encrypt(images if party.rank == 0 else None, src=0)
        logits = model.decrypt(model(x), to=0)
    return {"logits": logits, "seconds": cost.seconds, "bytes": cost.bytes_sent,
            "rounds": cost.rounds, "offline_bytes": cost.extra.get("offline_bytes", 0.0),
            "offline_rounds": cost.extra.get("offline_rounds", 0.0),
            "offline_seconds": cost.extra.get("offline_seconds", 0.0)}


def _parties(name: str, net: Any, images: np.ndarray, **how: Any) -> dict[str, Any]:
    import pets

    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    client, owner = pets.run_parties(_party, parties=2, timeout=1800, args=(name, state, images),
                                     **how)
    return {"logits": client["logits"], "seconds": client["seconds"],
            "bytes": client["bytes"] + owner["bytes"], "rounds": client["rounds"],
            "offline_bytes": client["offline_bytes"] + owner["offline_bytes"],
            "offline_rounds": client["offline_rounds"],
            "offline_seconds": max(client["offline_seconds"], owner["offline_seconds"])}


def _ckks(name: str, net: Any, images: np.ndarray) -> dict[str, Any] | str:
    import torch

    import pets

    backend = pets.backend("ckks")
    try:
        model = pets.compile(net, backend=backend,
                             example_input=torch.tensor(images, dtype=torch.float32))
    except pets.PetsError as exc:
        return f"not under CKKS: {type(exc).__name__}"
    start = time.perf_counter()
    x = model.encrypt(images)
    out = model(x)
    logits = backend.decrypt(out)
    seconds = time.perf_counter() - start
    sent = len(x.to_bytes()) + len(out.to_bytes())
    return {"logits": np.asarray(logits).reshape(len(images), -1), "seconds": seconds,
            "bytes": sent, "rounds": 1, "offline_bytes": 0, "offline_rounds": 0,
            "offline_seconds": 0.0}


METHODS: dict[str, Callable[[str, Any, np.ndarray], dict[str, Any] | str]] = {
    "hybrid": lambda n, net, x: _parties(n, net, x, backend="hybrid"),
    "mpc-he": lambda n, net, x: _parties(n, net, x, provider="he"),
    "mpc-dealer": lambda n, net, x: _parties(n, net, x, provider="ttp"),
    "ckks": _ckks,
}


def run_hybrid(*, batch: int = 16, models: tuple[str, ...] = tuple(MODELS),
               methods: tuple[str, ...] = tuple(METHODS)) -> Table:
    """One row per model and method on the first ``batch`` test digits."""
    import torch

    table = Table(["model", "method", "batch", "= torch", "accuracy", "online MB",
                   "offline MB", "rounds on/off", "time s", "offline s", "s / inference",
                   "WAN s (model)"])
    for name in models:
        net, images, labels = _trained(name)
        images, labels = images[:batch], labels[:batch]
        with torch.no_grad():
            expected = net(torch.tensor(images, dtype=torch.float32)).numpy().argmax(1)
        for method in methods:
            got = METHODS[method](name, net, images)
            if isinstance(got, str):
                table.add(name, method, batch, got, "", "", "", "", "", "", "", "")
                continue
            predictions = np.asarray(got["logits"]).argmax(1)
            total_bytes = got["bytes"] + got["offline_bytes"]
            rounds = got["rounds"] + got["offline_rounds"]
            wan = got["seconds"] + rounds * WAN_RTT_S / 2 + total_bytes / WAN_BYTES_PER_S
            table.add(name, method, batch, f"{int((predictions == expected).sum())}/{batch}",
                      f"{float((predictions == labels).mean()):.3f}",
                      f"{got['bytes'] / 1e6:.2f}", f"{got['offline_bytes'] / 1e6:.1f}",
                      f"{got['rounds']}/{int(got['offline_rounds'])}", f"{got['seconds']:.1f}",
                      f"{got['offline_seconds']:.1f}", f"{got['seconds'] / batch:.2f}",
                      f"{wan:.1f}")
            print(table.rows[-1], flush=True)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    options = parser.parse_args(argv)
    table = run_hybrid(batch=options.batch, models=tuple(options.models.split(",")),
                       methods=tuple(options.methods.split(",")))
    print(table)


if __name__ == "__main__":
    main()
