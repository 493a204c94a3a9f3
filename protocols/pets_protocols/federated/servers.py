"""The ServerApps :func:`~.api.train` runs, each on a :class:`~.meter.MeteredGrid`.

* :func:`message_server_app`: a Message-API strategy (Flower's ``FedAvg``,
  ``FedMedian``, ``FedTrimmedAvg``, ``FedProx``..., or pets' ``SecureFedAvg``)
  started for the rounds, its ``evaluate_fn`` closing each round's record;
* :func:`secagg_server_app`: Flower's ``DefaultWorkflow`` with ``SecAggPlusWorkflow``
  as its fit workflow, configured (shares, threshold, clipping range), not rewritten,
  around :class:`UpdateFedAvg`, which adds the unmasked mean update to the model
  after checking it against the clients' norm bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common import (
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server.client_proxy import ClientProxy
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from pets_protocols.federated.meter import MeteredGrid

__all__ = [
    "RoundHook",
    "Run",
    "UpdateFedAvg",
    "message_server_app",
    "secagg_server_app",
    "secagg_shares",
]

RoundHook = Callable[[int, ArrayRecord], dict[str, Any]]
"""Measures the global model after a round (accuracy, loss), from its record."""


@dataclass
class Run:
    """What a ServerApp leaves for the caller: the meter, the last model, the error if any."""

    meter: MeteredGrid | None = None
    final: ArrayRecord | None = None
    errors: list[BaseException] = field(default_factory=list)


def _closing(run: Run, hook: RoundHook) -> Callable[[int, ArrayRecord], MetricRecord | None]:
    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        assert run.meter is not None
        run.final = arrays
        measures = hook(server_round, arrays)
        if server_round == 0:
            run.meter.close_round(0)  # the start: resets the clock and the counts
            run.meter.records.pop()
        else:
            run.meter.close_round(server_round, **measures)
        return None

    return evaluate


def message_server_app(
    strategy: Strategy, *, initial: ArrayRecord, rounds: int, hook: RoundHook, run: Run,
    train_config: dict[str, Any], timeout: float,
    check: Callable[[Message], str | None] | None = None,
) -> ServerApp:
    """A ServerApp running ``strategy`` for ``rounds`` rounds; ``check`` may refuse a reply."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run.meter = MeteredGrid(grid, check=check)
        try:
            strategy.start(grid=run.meter, initial_arrays=initial, num_rounds=rounds,
                           timeout=timeout, train_config=ConfigRecord(train_config),
                           evaluate_fn=_closing(run, hook))
        except BaseException as exc:  # re-raised in the caller's thread after Flower stops
            run.errors.append(exc)

    return app


# ---- SecAgg+ ------------------------------------------------------------------------


def secagg_shares(clients: int) -> tuple[int, int]:
    """``(num_shares, reconstruction_threshold)`` for ``clients`` clients a round.

    SecAgg+'s sparse graph: each client shares its secrets with ``k`` neighbours (itself
    included), ``k`` odd and about ``log2(n)``; the threshold is two thirds of ``k`` (at
    least 2). The server needs ``threshold`` of a client's neighbours to unmask it, and a
    round survives up to ``k - threshold`` dropouts in each neighbourhood.

    >>> secagg_shares(3), secagg_shares(10), secagg_shares(100)
    ((3, 2), (5, 3), (9, 6))
    """
    shares = min(clients, 2 * math.ceil(math.log2(max(clients, 2)) / 2) + 1)
    return shares, max(2, round(2 * shares / 3))


class UpdateFedAvg:
    """The legacy strategy SecAgg+ drives: the mean of the (unmasked) bounded updates is
    added to the model, unless its norm exceeds what ``bound``-bounded updates can sum to
    (plus six standard deviations of the DP noise, ``noise_std`` per parameter and client,
    when there is some); then the round is refused and the model kept."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from flwr.server.strategy import FedAvg as LegacyFedAvg

        class _UpdateFedAvg(LegacyFedAvg):
            def __init__(self, *, initial: NDArrays, bound: float, noise_std: float,
                         meter: Callable[[], MeteredGrid | None], clients: int,
                         evaluate: Callable[[int, NDArrays], None]) -> None:
                super().__init__(
                    fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients,
                    min_evaluate_clients=0, min_available_clients=clients,
                    initial_parameters=ndarrays_to_parameters(initial),
                    evaluate_fn=lambda r, p, c: evaluate(r, p),  # type: ignore[arg-type,return-value]
                    accept_failures=True,
                )
                self.current = initial
                self.aggregated: set[int] = set()
                self.bound, self.noise_std, self.meter = bound, noise_std, meter
                self.size = sum(int(a.size) for a in initial)

            def aggregate_fit(
                self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                failures: list[tuple[ClientProxy, FitRes] | BaseException],
            ) -> tuple[Parameters | None, dict[str, Scalar]]:
                meter = self.meter()
                self.aggregated.add(server_round)
                if not results:
                    return ndarrays_to_parameters(self.current), {}
                mean = parameters_to_ndarrays(results[0][1].parameters)
                norm = float(np.sqrt(sum(float(np.sum(np.square(a))) for a in mean)))
                # the sum of n updates of norm <= bound has norm <= n * bound: the mean, bound
                limit = self.bound + self.noise_std * (math.sqrt(self.size) + 6) / math.sqrt(
                    len(results))
                if norm > limit and meter is not None:
                    meter.note(f"the aggregate's norm {norm:.3g} exceeds what {len(results)} "
                               f"updates bounded by {self.bound:g} can reach ({limit:.3g}): "
                               "some client skipped the bound; round refused, model kept")
                    return ndarrays_to_parameters(self.current), {}
                self.current = [(c + m.reshape(c.shape)).astype(c.dtype)
                                for c, m in zip(self.current, mean, strict=True)]
                return ndarrays_to_parameters(self.current), {}

        return _UpdateFedAvg(*args, **kwargs)


def _masked_vector_check(shapes: list[tuple[int, ...]]) -> Callable[[Message], str | None]:
    """Refuse a masked vector whose arrays do not have the model's shapes (plus SecAgg+'s
    weight factor): it would break the unmasking of every other client's update."""
    expected = [(1,), *shapes]

    def check(reply: Message) -> str | None:
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is None or Key.MASKED_PARAMETERS not in configs:
            return None
        from flwr.common import bytes_to_ndarray

        try:
            masked: Any = configs[Key.MASKED_PARAMETERS]
            arrays = [bytes_to_ndarray(b) for b in masked]
        except Exception as exc:  # not an array at all
            return f"sent a masked vector that does not load ({type(exc).__name__})"
        got = [tuple(a.shape) for a in arrays]
        if got != expected:
            return (f"sent a masked vector of shapes {got}, not the model's {expected}; "
                    "left out of the round (its masks are removed as for a dropout)")
        return None

    return check


def secagg_server_app(
    *, initial: NDArrays, rounds: int, clients: int, bound: float, noise_std: float,
    clipping_range: float, hook: Callable[[int, NDArrays], dict[str, Any]], run: Run,
    timeout: float,
) -> ServerApp:
    """A ServerApp running SecAgg+ rounds (Flower's workflow) over bounded updates."""
    from flwr.server import ServerConfig
    from flwr.server.compat import LegacyContext
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    app = ServerApp()
    shares, threshold = secagg_shares(clients)
    shapes = [tuple(a.shape) for a in initial]

    def evaluate(server_round: int, ndarrays: NDArrays) -> None:
        assert run.meter is not None
        record = ArrayRecord(list(ndarrays))
        run.final = record
        measures = hook(server_round, ndarrays)
        if server_round > 0 and server_round not in strategy.aggregated:
            run.meter.note("SecAgg+ stopped this round: too few clients answered a stage in time "
                           "for the threshold; nothing was aggregated and the model was kept")
        run.meter.close_round(server_round, **measures)
        if server_round == 0:
            run.meter.records.pop()

    strategy = UpdateFedAvg(initial=initial, bound=bound, noise_std=noise_std,
                            meter=lambda: run.meter, clients=clients, evaluate=evaluate)

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run.meter = MeteredGrid(grid, check=_masked_vector_check(shapes))
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds),
                               strategy=strategy)
        workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
            num_shares=shares, reconstruction_threshold=threshold, max_weight=1.0,
            clipping_range=clipping_range, timeout=timeout,
        ))
        try:
            workflow(run.meter, legacy)
        except BaseException as exc:
            run.errors.append(exc)

    return app
