"""How big a matrix run is: sizes, rows, epochs, repeats and privacy parameters.

Three presets: :meth:`MatrixConfig.full` (``pets bench``, under 30 minutes on 2
cores), :meth:`MatrixConfig.quick` (``pets bench --quick``, under 2 minutes) and
:meth:`MatrixConfig.tiny` (the tests: every technique, the least work).

>>> MatrixConfig.quick().dot_sizes
(64, 256)
>>> MatrixConfig.full().replace(repeats=3).repeats
3
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["MatrixConfig"]


@dataclass(frozen=True)
class MatrixConfig:
    """Every knob of one matrix run; the same work is given to every technique."""

    #: preset name, written into the report
    name: str = "full"
    #: lengths ``n`` of the dot products ``x . w`` (one private vector, plain weights)
    dot_sizes: tuple[int, ...] = (64, 256, 1024)
    #: widths ``n`` of the products ``X (matmul_rows x n) @ W (n x matmul_out)``
    matmul_sizes: tuple[int, ...] = (64, 256, 1024)
    matmul_rows: int = 16
    matmul_out: int = 16
    #: test samples each inference workload runs (encrypt, evaluate, decrypt)
    inference_rows: int = 32
    #: epochs that train the plaintext (and DP-SGD) models the inference workloads run
    model_epochs: int = 10
    #: the training workload: digits rows, epochs, batch size and SGD step size
    train_rows: int = 1257
    train_epochs: int = 3
    train_batch: int = 64
    train_lr: float = 0.5
    #: timed runs per cell (after one untimed warm-up), fewer once a cell has used
    #: ``cell_seconds``; the median, min and max are reported
    repeats: int = 5
    cell_seconds: float = 20.0
    #: DP: epsilon of the inference-model cells and of output perturbation; the training
    #: workload runs DP-SGD at each of ``dp_epsilons``; delta for all of them
    dp_epsilon: float = 1.0
    dp_epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    dp_delta: float = 1e-5
    #: MPC: the party counts (each is one run of real processes plus a dealer)
    mpc_parties: tuple[int, ...] = (2, 3)
    mpc_timeout: float = 300.0
    #: techniques to leave out (by key), e.g. ``("federated",)``
    skip: tuple[str, ...] = ()
    #: federated: clients, and each client's total epsilon for the DP modes
    federated_clients: int = 3
    federated_epsilon: float = 8.0
    seed: int = 0

    @classmethod
    def full(cls) -> MatrixConfig:
        """``pets bench``: every size, five repeats, five epsilons (under 30 minutes)."""
        return cls()

    @classmethod
    def quick(cls) -> MatrixConfig:
        """``pets bench --quick``: small sizes, three repeats (under 3 minutes on 2 cores).

        Training still takes 24 SGD steps (512 digits, 3 epochs: plaintext reaches about
        0.77, far from chance) and three federated rounds, so that the median round
        leaves out the first, which starts the simulation engine.
        """
        return cls(
            name="quick", dot_sizes=(64, 256), matmul_sizes=(64,), inference_rows=8,
            model_epochs=5, train_rows=512, train_epochs=3, repeats=3, cell_seconds=2.0,
            dp_epsilons=(1.0, 8.0), mpc_timeout=120.0,
        )

    @classmethod
    def tiny(cls) -> MatrixConfig:
        """The least work that still fills every cell (tests)."""
        return cls(
            name="tiny", dot_sizes=(16,), matmul_sizes=(16,), matmul_rows=2, matmul_out=2,
            inference_rows=2, model_epochs=1, train_rows=128, train_epochs=1, repeats=1,
            cell_seconds=0.5, dp_epsilons=(1.0,), mpc_parties=(2,), mpc_timeout=120.0,
        )

    def replace(self, **changes: Any) -> MatrixConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
