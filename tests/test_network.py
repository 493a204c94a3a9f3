"""pets.network(): an emulated link (RTT/2 per message plus size over bandwidth) in our transports.

Delays are checked through what the transports charge to
``Measurement.extra["network_seconds"]`` (an exact sum, not a timing); the
agreement of emulated wall times with the model is a measurement, reported in
docs/mpc.md, not asserted here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pets
from pets.errors import ParameterError
from pets.network import delay_exchange, delay_request

RTT_MS, MBIT_S = 4.0, 50.0


@pytest.fixture(autouse=True)
def _no_profile_after() -> Any:
    yield
    pets.network(None)


def test_profiles_by_name_and_by_numbers() -> None:
    assert str(pets.network("wan")) == "wan: 40 ms RTT, 100 Mbit/s"
    assert pets.network((4, 50)) == pets.network("4,50") == pets.Network(4.0, 50.0)
    assert pets.network_profile() == pets.Network(4.0, 50.0)
    pets.network(None)
    assert pets.network_profile() is None


def test_a_with_block_restores_the_profile_in_force_before() -> None:
    with pets.network("lan"):
        with pets.network("wan"):
            assert pets.network_profile() == pets.network("wan")
        assert pets.network_profile() == pets.network("lan")
    assert pets.network_profile() is None


@pytest.mark.parametrize(
    ("profile", "message"),
    [("moon", r"unknown network 'moon': use lan, wan or RTT,BANDWIDTH"),
     ("40,-1", r"bandwidth must be a finite number >= 1e-09, got -1.0"),
     ((float("nan"), 10), r"round-trip time must be a finite number >= 0, got nan")],
)
def test_bad_profiles_say_how_to_write_one(profile: Any, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        pets.network(profile)
    assert pets.network_profile() is None


def test_delays_are_half_an_rtt_per_message_plus_size_over_bandwidth() -> None:
    with pets.network((RTT_MS, MBIT_S)), pets.measure() as cost:
        exchange = delay_exchange(1000, 3000)
        request = delay_request(1000, 3000)
    assert exchange == pytest.approx(RTT_MS / 2000 + 3000 * 8 / (MBIT_S * 1e6))
    assert request == pytest.approx(RTT_MS / 1000 + 4000 * 8 / (MBIT_S * 1e6))
    assert cost.extra["network_seconds"] == pytest.approx(exchange + request)
    assert delay_exchange(1000, 3000) == 0.0  # no profile: no delay


def _multiply(party: pets.Party) -> dict[str, Any]:
    be = party.backend
    x = be.encrypt(np.ones(1000) if party.rank == 0 else None, src=0)
    y = be.encrypt(np.ones(1000) if party.rank == 1 else None, src=1)
    with pets.measure() as cost:
        be.decrypt(x * y)
    return {"sent": cost.bytes_sent, "received": cost.bytes_received, "rounds": cost.rounds,
            "network": cost.extra.get("network_seconds", 0.0),
            "profile": pets.network_profile()}


def test_mpc_parties_inherit_the_profile_and_each_round_is_delayed() -> None:
    with pets.network((RTT_MS, MBIT_S)):
        results = pets.run_parties(_multiply, parties=2, timeout=60)
    for party in results:
        assert party["profile"] == pets.Network(RTT_MS, MBIT_S)
        assert party["received"] == party["sent"] > 8 * 1000  # symmetric: share exchanges
        # every exchange is symmetric here, so its larger direction is what this party sent
        expected = party["rounds"] * RTT_MS / 2000 + party["sent"] * 8 / (MBIT_S * 1e6)
        assert party["network"] == pytest.approx(expected, rel=1e-9)
