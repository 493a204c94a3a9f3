"""Emulated network links: run a multi-party computation or a service client as over a LAN or WAN.

The development machine's kernel has no netem, so the emulation lives in pets' own
transports. Under a profile, every message a party waits for is delayed by
half the round-trip time (RTT/2) plus its size over the bandwidth:

* the MPC communicator (one exchange: every party sends and receives at once,
  over a full-duplex link) waits ``RTT/2 + max(sent, received) / bandwidth``;
  offline traffic (the dealer's, or triples made under HE) is preprocessing
  and is not delayed;
* the service's HTTP client (a request, then its answer) waits
  ``RTT + (sent + received) / bandwidth``.

Every delay is added to ``Measurement.extra["network_seconds"]`` of the
active :func:`pets.measure` blocks, so a report can set the emulated time
beside the model ``rounds x RTT/2 + bytes / bandwidth + compute``.

The profile is set for this process *and* the processes it starts (through
the ``PETS_NETWORK`` environment variable, which :func:`pets.run_parties`'
parties and dealer inherit). Use it as a context manager or set it until
further notice:

>>> import pets
>>> with pets.network("wan") as link:
...     (link.rtt_ms, link.mbit_s, pets.network_profile() == link)
(40.0, 100.0, True)
>>> pets.network_profile() is None
True
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from types import TracebackType

from pets.errors import ParameterError
from pets.measure import record_extra

__all__ = ["ENVIRONMENT_VARIABLE", "PROFILES", "Network", "network", "network_profile"]

#: carries the profile into the processes this one starts: "RTT_MS,MBIT_S"
ENVIRONMENT_VARIABLE = "PETS_NETWORK"


@dataclass(frozen=True)
class Network:
    """A link of ``rtt_ms`` round-trip time (milliseconds) and ``mbit_s`` bandwidth (Mbit/s)."""

    rtt_ms: float
    mbit_s: float
    name: str = ""
    #: the encoded profile in force before this one was set (restored on ``with`` exit)
    _previous: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for what, value, low in (("round-trip time", self.rtt_ms, 0.0),
                                 ("bandwidth", self.mbit_s, 1e-9)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
                raise ParameterError(
                    f"a network's {what} must be a finite number >= {low:g}, got {value!r}; "
                    "give RTT in milliseconds and bandwidth in Mbit/s, e.g. (40, 100)"
                )

    def __str__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        return f"{label}{self.rtt_ms:g} ms RTT, {self.mbit_s:g} Mbit/s"

    def exchange_seconds(self, sent: int, received: int, *, waited: bool = True) -> float:
        """Delay of one exchange: ``RTT/2`` if a message was waited for, plus the larger
        direction's bytes over the bandwidth (the link is full duplex)."""
        latency = self.rtt_ms / 2000.0 if waited else 0.0
        return latency + max(sent, received) * 8 / (self.mbit_s * 1e6)

    def request_seconds(self, sent: int, received: int) -> float:
        """Delay of a request and its answer: a whole RTT plus both bodies over the bandwidth."""
        return self.rtt_ms / 1000.0 + (sent + received) * 8 / (self.mbit_s * 1e6)

    # --- as a context manager: the profile in force before is restored on exit ---------

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        _set(self._previous)


#: the usual settings of the papers: a data-centre LAN and a cross-region WAN
PROFILES: dict[str, Network] = {
    "lan": Network(0.2, 1000.0, "lan"),
    "wan": Network(40.0, 100.0, "wan"),
}

def _parse(text: str) -> Network:
    if text in PROFILES:
        return PROFILES[text]
    try:
        rtt, bandwidth = (float(part) for part in text.split(","))
    except ValueError:
        raise ParameterError(
            f"unknown network {text!r}: use {', '.join(sorted(PROFILES))} or RTT,BANDWIDTH "
            "(milliseconds, Mbit/s), e.g. 40,100"
        ) from None
    return Network(rtt, bandwidth)


def _set(encoded: str | None) -> None:
    if encoded is None:
        os.environ.pop(ENVIRONMENT_VARIABLE, None)
    else:
        os.environ[ENVIRONMENT_VARIABLE] = encoded


def network(profile: str | tuple[float, float] | Network | None) -> Network | None:
    """Emulate ``profile`` ("lan", "wan", ``(rtt_ms, mbit_s)``, "RTT,BANDWIDTH") from now on.

    Returns the :class:`Network`; used in a ``with`` block it is undone on exit.
    ``None`` (or ``"none"``) stops the emulation.
    """
    previous = os.environ.get(ENVIRONMENT_VARIABLE)
    if profile is None or profile == "none":
        _set(None)
        return None
    if isinstance(profile, Network):
        link = profile
    elif isinstance(profile, str):
        link = _parse(profile)
    elif isinstance(profile, tuple) and len(profile) == 2:
        link = Network(*profile)
    else:
        raise ParameterError(
            f"network({profile!r}): give 'lan', 'wan', (rtt_ms, mbit_s) or 'RTT,BANDWIDTH'"
        )
    _set(f"{link.rtt_ms!r},{link.mbit_s!r},{link.name}")
    return replace(link, _previous=previous)


def network_profile() -> Network | None:
    """The network being emulated in this process, or ``None``."""
    encoded = os.environ.get(ENVIRONMENT_VARIABLE)
    if not encoded:
        return None
    rtt, bandwidth, *name = encoded.split(",")
    try:
        return Network(float(rtt), float(bandwidth), name[0] if name else "")
    except ValueError:
        raise ParameterError(
            f"{ENVIRONMENT_VARIABLE}={encoded!r} is not RTT_MS,MBIT_S; unset it or use "
            "pets.network(...)"
        ) from None


def _wait(seconds: float) -> float:
    if seconds > 0:
        time.sleep(seconds)
        record_extra("network_seconds", seconds)
    return seconds


def delay_exchange(sent: int, received: int, *, waited: bool = True) -> float:
    """Sleep as one exchange over the emulated link would take; 0 when none is set."""
    link = network_profile()
    return 0.0 if link is None else _wait(link.exchange_seconds(sent, received, waited=waited))


def delay_request(sent: int, received: int) -> float:
    """Sleep as a request and its answer over the emulated link would take; 0 when none."""
    link = network_profile()
    return 0.0 if link is None else _wait(link.request_seconds(sent, received))
