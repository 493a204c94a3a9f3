"""How :func:`pets.run_parties` starts an MPC run: one process per party, and a dealer.

This is the MPC backend's :class:`~pets.parties.PartyRuntime` (``MPCBackend.party_runtime``):
it checks the provider, makes each process's :class:`~.engine.MPCConfig`, and in
each process joins the run, runs the party's body and leaves it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from pets.backends.mpc.engine import (
    MPCConfig,
    _check_device,
    insecure_provider_message,
    new_run_secret,
)
from pets.errors import InsecureProviderWarning, ParameterError

__all__ = ["MPCRuntime"]


class MPCRuntime:
    """Parties that join CrypTen's run through :mod:`.engine`; provider ``"ttp"`` adds a dealer."""

    #: the provider when the caller names none
    default_provider = "ttp"

    def check_provider(self, parties: int, provider: str | None) -> str:
        """The provider to use (this backend's rules), or a :class:`ParameterError`."""
        provider = provider or self.default_provider
        if provider not in ("ttp", "tfp", "he"):
            raise ParameterError(f"provider must be 'ttp' (a dealer process), 'tfp' (party 0 "
                                 f"makes the triples) or 'he' (two parties make them under "
                                 f"encryption), got {provider!r}")
        return provider

    def configs(self, *, parties: int, provider: str | None, precision: int, device: str,
                timeout: float, address: str, port: int) -> list[MPCConfig]:
        """One configuration per process: the parties, then the dealer (``"ttp"``)."""
        provider = self.check_provider(parties, provider)
        _check_device(device)  # before any process starts: each would refuse it alone
        if provider == "tfp":
            warnings.warn(insecure_provider_message(), InsecureProviderWarning, stacklevel=3)
        secret = new_run_secret()  # every process of this run proves it knows it at the rendezvous
        return [
            MPCConfig(parties=parties, rank=rank, provider=provider, precision_bits=precision,
                      device=device, timeout=timeout, address=address, port=port, secret=secret)
            for rank in range(parties + (1 if provider == "ttp" else 0))
        ]

    def run(self, config: MPCConfig, body: Callable[[], Any]) -> Any:
        """In one process: serve as the dealer, or join, run ``body`` and leave."""
        from pets.backends.mpc import engine

        try:
            if config.is_dealer:
                from pets.backends.mpc.dealer import serve

                return serve(config)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureProviderWarning)  # the caller warned
                engine.start(config)
            result = body()
            engine.stop()
            return result
        except BaseException:
            engine.stop(clean=False)
            raise
