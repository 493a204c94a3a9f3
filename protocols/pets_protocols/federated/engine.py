"""Flower's simulation engine, started from Python, with its logs kept out of the way.

``flwr run`` is Flower's current entry point for an App *package*: it loads the
ServerApp and ClientApp by import path on a SuperLink. :func:`~.api.train` takes
a model and data that live in the caller's memory, so it starts the same
simulation runtime from Python (``flwr.simulation.run_simulation``, whose notice
that ``flwr run`` is preferred is the one line this module silences for that
reason). Unless ``verbose``, Flower's INFO lines, Ray's start-up banner, its
workers' output and Ray's FutureWarnings stay out of the terminal; errors still
show, and every failure reaches the caller as a pets error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

import pets

__all__ = ["quiet_logs", "simulate_apps"]

_NOISY = ("flwr", "ray", "pets_protocols.federated", "absl")


@contextlib.contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """Raise the engine's loggers to ERROR (unless ``verbose``) for the block."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def simulate_apps(server: ServerApp, client: ClientApp, *, supernodes: int,
                  verbose: bool = False) -> None:
    """Run ``server`` against ``supernodes`` virtual SuperNodes running ``client`` (Ray)."""
    from flwr.simulation import run_simulation

    cpus = max(1, min(supernodes, os.cpu_count() or 1))
    init_args: dict[str, object] = {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False}
    if not verbose:
        init_args.update(log_to_driver=False, logging_level=logging.ERROR,
                         configure_logging=True)
    previous = os.environ.get("RAY_DEDUP_LOGS")
    with quiet_logs(verbose):
        try:
            run_simulation(
                server_app=server, client_app=client, num_supernodes=supernodes,
                backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                "init_args": init_args},  # type: ignore[dict-item]
                verbose_logging=False,
            )
        except RuntimeError as exc:  # Flower's "Simulation Runtime crashed" and the like
            raise pets.PartyError(
                f"Flower's simulation engine stopped: {exc} (e.g. Ray could not start its "
                "workers on an overloaded machine). Fix: run again; verbose=True shows its log"
            ) from exc
        finally:
            if previous is not None:
                os.environ["RAY_DEDUP_LOGS"] = previous
