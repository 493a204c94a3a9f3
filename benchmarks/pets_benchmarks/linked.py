"""LAN and WAN figures for work measured between processes on one machine.

The parties of a bench run share one machine, so their links cost almost nothing.
Over a real link every round adds half a round trip and every byte its share of the
bandwidth; :func:`over_link` adds both to the measured time, with the link model of
:mod:`pets.network` (``RTT/2`` per exchange plus the busiest party's bytes over the
bandwidth) and its profiles: LAN 0.2 ms and 1 Gbit/s, WAN 40 ms and 100 Mbit/s.
``pets.network("wan")`` emulates the same link inside the transport (its tests check
that the two agree); these figures are the model applied to the run's own rounds and
bytes, so every row gets them without a second run.

>>> round(over_link(0.5, rounds=100, sent_bytes=1_000_000, profile="wan"), 3)
2.58
"""

from __future__ import annotations

__all__ = ["LINKS", "over_link"]

#: the profiles every MPC row reports
LINKS = ("lan", "wan")


def over_link(seconds: float, *, rounds: float, sent_bytes: float, profile: str) -> float:
    """``seconds`` measured on one machine, plus ``rounds`` half round trips and
    ``sent_bytes`` (the busiest party's) over the bandwidth of ``profile``."""
    from pets.network import PROFILES

    link = PROFILES[profile]
    return seconds + rounds * link.rtt_ms / 2000.0 + sent_bytes * 8 / (link.mbit_s * 1e6)
