"""Start and stop CrypTen's MPC engine in this process, from an explicit configuration.

CrypTen keeps its set-up in globals read from the environment (``RENDEZVOUS``,
``WORLD_SIZE``, ``RANK``) and a global ``cfg``. pets passes an :class:`MPCConfig`
instead: :func:`start` sets exactly what CrypTen needs from it (provider,
fixed-point precision, the communicator, the shared random generators) and
:func:`stop` puts everything back. One configuration per process at a time;
:func:`current` tells the ``"mpc"`` backend where it runs.

>>> config = start_single_process(precision_bits=16)
>>> (config.parties, config.rank, config.provider, current() == config)
(1, 0, 'local', True)
>>> stop(); current() is None
True
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pets.backends.mpc._crypten import load_crypten
from pets.errors import InsecureProviderWarning, ParameterError, PartyError

__all__ = ["PROVIDERS", "RUN_SECRET_VARIABLE", "MPCConfig", "communicator", "current",
           "new_run_secret", "run_secret", "start", "start_single_process", "stop"]

_log = logging.getLogger(__name__)

#: Who makes the Beaver triples, and what each choice trusts.
PROVIDERS = {
    "ttp": "a trusted third party (the dealer, its own process) that must not collude with any "
           "party",
    "tfp": "party 0 makes every triple, so party 0 can read every secret (trusted first party)",
    "local": "one process holds every share: no secrecy, for quick use and tests",
    "he": "the two parties make the triples themselves under BFV encryption (no dealer, "
          "exactly two parties, semi-honest)",
}


@dataclass(frozen=True, kw_only=True)
class MPCConfig:
    """Where this process sits in an MPC run, and how the run computes.

    ``rank`` is ``0 .. parties-1`` for a party and ``parties`` for the dealer
    (provider ``"ttp"`` only). ``timeout`` bounds joining and every wait for a
    peer, in seconds. ``secret`` is the run's secret, the same in every process of
    the run (at least 16 characters; :func:`new_run_secret` makes one): each
    process proves it knows it at the rendezvous, and strangers are refused.

    >>> MPCConfig(parties=2, rank=1, provider="ttp", port=29500, secret="s" * 32).world_size
    3
    >>> MPCConfig(parties=2, rank=3, provider="tfp", port=29500, secret="s" * 32)
    Traceback (most recent call last):
    ...
    pets.errors.ParameterError: rank 3 is out of range for 2 parties: parties are ranks 0 to 1 ...
    """

    parties: int
    rank: int
    provider: str
    precision_bits: int = 16
    device: str = "cpu"
    timeout: float = 60.0
    address: str = "127.0.0.1"
    port: int = field(default=0)
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ParameterError(f"unknown triple provider {self.provider!r}; choose one of: "
                                 f"{', '.join(PROVIDERS)}")
        if not isinstance(self.parties, int) or self.parties < 1:
            raise ParameterError(f"parties must be a positive whole number, got {self.parties!r}")
        if (self.parties == 1) != (self.provider == "local"):
            raise ParameterError(
                "one party computes alone only with provider 'local' (start_single_process), "
                f"and a run of {self.parties} parties needs provider 'ttp', 'tfp' or 'he'"
                if self.parties > 1 else
                f"a run of one party has no one to share with; use start_single_process() or "
                f"at least 2 parties with provider {self.provider!r}"
            )
        if self.provider == "he" and self.parties != 2:
            raise ParameterError(f"provider 'he' makes triples between exactly two parties, "
                                 f"not {self.parties}; use provider 'ttp' for more")
        top = self.parties if self.provider == "ttp" else self.parties - 1
        if not isinstance(self.rank, int) or not 0 <= self.rank <= top:
            dealer = (f" and the dealer (provider 'ttp') is rank {self.parties}"
                      if self.provider == "ttp" else " (provider 'tfp' has no dealer)")
            raise ParameterError(
                f"rank {self.rank} is out of range for {self.parties} parties: parties are "
                f"ranks 0 to {self.parties - 1}{dealer}"
            )
        if not 1 <= self.precision_bits <= 32:
            raise ParameterError(f"precision_bits must be 1 to 32 (fixed-point bits in a 64-bit "
                                 f"ring; 16 is CrypTen's default), got {self.precision_bits}")
        if not self.timeout > 0:
            raise ParameterError(f"timeout must be positive seconds, got {self.timeout}")
        if self.parties > 1 and not 1 <= self.port <= 65535:
            raise ParameterError(f"port must be 1 to 65535 for a run of several parties, got "
                                 f"{self.port}")
        if self.parties > 1 and not (isinstance(self.secret, str)
                                     and len(self.secret) >= MIN_SECRET_CHARACTERS):
            raise ParameterError(
                f"a run of {self.parties} parties needs a run secret of at least "
                f"{MIN_SECRET_CHARACTERS} characters, the same in every party and the dealer, "
                f"so that strangers cannot join: run_parties makes one; with pets party, pass "
                f"--secret-file FILE or set {RUN_SECRET_VARIABLE} (make one with: python -c "
                f"'import secrets; print(secrets.token_hex(32))')"
            )
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ParameterError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got "
                                 f"{self.device!r}")

    @property
    def dealer_rank(self) -> int | None:
        """The dealer's rank (``parties``) with provider ``"ttp"``, else ``None``."""
        return self.parties if self.provider == "ttp" else None

    @property
    def is_dealer(self) -> bool:
        return self.rank == self.dealer_rank

    @property
    def world_size(self) -> int:
        """Processes in the run: the parties, plus the dealer with provider ``"ttp"``."""
        return self.parties + (1 if self.provider == "ttp" else 0)

    @property
    def single_process(self) -> bool:
        return self.parties == 1


#: Environment variable ``pets party`` reads the run secret from (or ``--secret-file``).
RUN_SECRET_VARIABLE = "PETS_RUN_SECRET"
MIN_SECRET_CHARACTERS = 16


def new_run_secret() -> str:
    """A fresh random run secret (256 bits, hex)."""
    return secrets.token_hex(32)


def run_secret(path: str | None = None) -> str:
    """The run secret in the file ``path``, else in ``$PETS_RUN_SECRET``, else ``""``."""
    if path is None:
        return os.environ.get(RUN_SECRET_VARIABLE, "").strip()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"cannot read the run secret from {path}: {exc}; pass the file "
                             f"every party of the run shares") from exc


@dataclass
class _Running:
    config: MPCConfig
    communicator: Any
    saved_cfg: dict[str, Any]
    saved_class: Any
    store: Any = None
    replaced: Any = None  # CrypTen's provider that provider "he" stands in for


_LOCK = threading.RLock()
_RUNNING: _Running | None = None


def current() -> MPCConfig | None:
    """The configuration this process runs MPC under, or ``None`` before :func:`start`."""
    return None if _RUNNING is None else _RUNNING.config


def communicator() -> Any:
    """This process's :class:`~pets.backends.mpc.communicator.PartyCommunicator`."""
    if _RUNNING is None:
        raise PartyError("MPC is not started in this process; use pets.run_parties, "
                         "pets party, or start_single_process()")
    return _RUNNING.communicator


def start_single_process(precision_bits: int = 16, device: str = "cpu") -> MPCConfig:
    """CrypTen's one-process mode: every share in this process, no dealer, no sockets.

    For quick use and tests: it computes what real parties would, but keeps no
    secret from anyone. Returns the configuration (provider ``"local"``).
    """
    config = MPCConfig(parties=1, rank=0, provider="local", precision_bits=precision_bits,
                       device=device)
    start(config)
    return config


def start(config: MPCConfig) -> None:
    """Join the run ``config`` describes and make CrypTen compute through it.

    Connects to the other parties (all of them must start within
    ``config.timeout``), sets CrypTen's provider and precision, seeds the
    generators the parties share, and connects a party to the dealer. Starting
    again with the same configuration does nothing; with another one it is an
    error (:func:`stop` first). The dealer process calls
    :func:`pets.backends.mpc.dealer.serve` instead.
    """
    global _RUNNING
    with _LOCK:
        if _RUNNING is not None:
            if _RUNNING.config == config:
                return
            raise ParameterError(
                f"MPC already runs in this process as {_RUNNING.config}; stop() it before "
                f"starting as {config}"
            )
        crypten = load_crypten()
        _check_device(config.device)
        if config.provider == "tfp":
            warnings.warn(insecure_provider_message(), InsecureProviderWarning, stacklevel=2)
        running = _install(crypten, config)
        _RUNNING = running
        try:
            if not config.is_dealer:
                crypten._setup_prng()  # the parties' shared seeds, as crypten.init does
                if config.provider == "ttp":
                    crypten.mpc.provider.ttp_provider.TTPClient._init()
        except RuntimeError as exc:  # gloo: a peer went away while seeds were exchanged
            stop(clean=False)
            raise PartyError(f"rank {config.rank} lost its peers while setting up: {exc}") from exc
        except BaseException:
            stop(clean=False)
            raise
        _log.info("MPC started: %s", config)


def insecure_provider_message() -> str:
    return ("provider 'tfp' (trusted first party): party 0 generates every Beaver triple, so "
            "party 0 can read every secret value of the run; use it only where party 0 may "
            "see all data, and the default provider 'ttp' (a separate dealer) otherwise")


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ParameterError(f"device {device!r} asked for, but torch sees no CUDA GPU; "
                                 f"use device='cpu'")


def _install(crypten: Any, config: MPCConfig) -> _Running:
    """Process group, communicator and CrypTen settings for ``config``."""
    import crypten.communicator as crypten_comm
    import torch.distributed as dist

    from pets.backends.mpc.channel import Channel
    from pets.backends.mpc.communicator import PartyCommunicator
    from pets.backends.mpc.rendezvous import meet

    store, nonce = None, ""
    if not config.single_process:
        if dist.is_initialized():
            raise ParameterError("torch.distributed is already initialised in this process; "
                                 "run each MPC party in a process of its own")
        store, nonce = meet(config)
        try:
            prefixed = dist.PrefixStore("pets/pg", store)  # type: ignore[attr-defined]
            dist.init_process_group("gloo", store=prefixed,
                                    rank=config.rank, world_size=config.world_size,
                                    timeout=timedelta(seconds=config.timeout))
        except RuntimeError as exc:
            raise PartyError(f"rank {config.rank} could not connect to its peers: {exc}") from exc
    cfg = crypten.cfg
    saved = {"mpc.provider": cfg.mpc.provider, "encoder.precision_bits": cfg.encoder.precision_bits}
    cfg.mpc.provider = {"ttp": "TTP", "he": "HE"}.get(config.provider, "TFP")
    cfg.encoder.precision_bits = config.precision_bits
    comm = PartyCommunicator(
        rank=config.rank, parties=config.parties, dealer=config.dealer_rank,
        timeout=config.timeout,
        channel=None if config.single_process else Channel(secret=config.secret, nonce=nonce,
                                                           rank=config.rank),
    )
    # CrypTen's crypten.communicator.get() returns DistributedCommunicator.instance; the
    # module-level name is swapped for ours while running and restored by stop().
    saved_class = crypten_comm.DistributedCommunicator
    crypten_comm.DistributedCommunicator = PartyCommunicator
    crypten_comm.__dict__["__use_threads"] = False
    PartyCommunicator.instance = comm
    running = _Running(config, comm, saved, saved_class, store)
    if config.provider == "he":  # dealer-free triples (pets.backends.mpc.he_triples)
        from pets.backends.mpc import he_triples

        running.replaced = he_triples.install(comm)
    return running


def stop(*, clean: bool = True) -> None:
    """Leave the run and restore CrypTen's settings; does nothing when not started.

    With ``clean`` (a normal end) the parties first wait for each other, and
    party 0 tells the dealer to finish; after an error nothing is sent.
    """
    global _RUNNING
    with _LOCK:
        running = _RUNNING
        if running is None:
            return
        config, comm = running.config, running.communicator
        try:
            if clean and not config.single_process and not config.is_dealer:
                comm.barrier()
                if config.rank == 0 and config.dealer_rank is not None:
                    from pets.backends.mpc.communicator import DEALER_LINK

                    comm.send_obj("terminate", config.dealer_rank, DEALER_LINK)
        finally:
            _RUNNING = None
            _uninstall(running)


def _uninstall(running: _Running) -> None:
    import crypten
    import crypten.communicator as crypten_comm
    import torch.distributed as dist

    from pets.backends.mpc.communicator import PartyCommunicator

    if running.config.provider == "ttp" and not running.config.is_dealer:
        crypten.mpc.provider.ttp_provider.TTPClient.uninit()
    if running.config.provider == "he":
        from pets.backends.mpc import he_triples

        he_triples.uninstall(running.replaced)
    PartyCommunicator.instance = None
    crypten_comm.DistributedCommunicator = running.saved_class
    for key, value in running.saved_cfg.items():
        section, name = key.split(".")
        setattr(getattr(crypten.cfg, section), name, value)
    if dist.is_initialized():
        dist.destroy_process_group()
