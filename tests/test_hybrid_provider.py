"""Provider "he": two parties make Beaver triples under BFV, with no dealer process.

Checked with real party processes: every kind of triple CrypTen asks for is
exact in the ring ``2^64``, and its random values and every share are uniform
(byte histograms: a chi-square beyond chance fails); the conformance cases, ReLU
and a max-pool model with the owner's weights shared are held to the plain
reference and torch within the mpc backend's stated tolerance, as the dealer's
runs are; offline traffic is counted apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from test_conformance import CASES
from torch import nn

import pets

TOLERANCE = 2e-3  # the mpc backend's stated tolerance (fixed point, 16 bits)
CHI_SQUARE_LIMIT = 400.0  # 255 degrees of freedom: mean 255, sd 23; 400 is p < 1e-12


def _chi_square(values: np.ndarray) -> float:
    counts = np.bincount(values.astype(np.int64).view(np.uint8).reshape(-1), minlength=256)
    expected = counts.sum() / 256
    return float(((counts - expected) ** 2 / expected).sum())


def _triples(party: pets.Party) -> dict[str, Any]:
    import crypten

    provider = crypten.mpc.get_default_provider()
    n = 4096
    out: dict[str, Any] = {}
    a, b, c = provider.generate_additive_triple((n,), (n,), "mul")
    out["mul"] = [t.reveal().numpy() for t in (a, b, c)]
    out["own_c_share"] = c.share.numpy()
    a, b, c = provider.generate_additive_triple((3, 5), (5, 2), "matmul")
    out["matmul"] = [t.reveal().numpy() for t in (a, b, c)]
    a, b, c = provider.generate_additive_triple((2, 2, 5, 5), (3, 2, 3, 3), "conv2d",
                                                stride=2, padding=1)
    out["conv2d"] = [t.reveal().numpy() for t in (a, b, c)]
    r, r2 = provider.square((n,))
    out["square"] = [t.reveal().numpy() for t in (r, r2)]
    a, b, c = provider.generate_binary_triple((256,), (256,))
    out["binary"] = [t.reveal().numpy() for t in (a, b, c)]
    out["own_binary_share"] = c.share.numpy()
    ra, rb = provider.B2A_rng((512,))
    out["b2a"] = [ra.reveal().numpy(), rb.reveal().numpy()]
    return out


def _run(party: pets.Party) -> dict[str, Any]:
    made = {f"triple_{name}": value for name, value in _triples(party).items()}
    return {**made, **_conformance(party)}


@pytest.fixture(scope="module")
def triples() -> list[dict[str, Any]]:
    """One run of two parties (process start-up costs seconds): triples, then the cases."""
    return pets.run_parties(_run, parties=2, provider="he", timeout=300)


def test_arithmetic_triples_are_exact_modulo_2_64(triples: list[dict[str, Any]]) -> None:
    a, b, c = triples[0]["triple_mul"]
    np.testing.assert_array_equal(c, a * b)  # int64 arithmetic wraps modulo 2^64
    r, r2 = triples[0]["triple_square"]
    np.testing.assert_array_equal(r2, r * r)
    a, b, c = triples[0]["triple_matmul"]
    np.testing.assert_array_equal(c, a @ b)
    a, b, c = triples[0]["triple_conv2d"]
    expected = torch.nn.functional.conv2d(torch.from_numpy(a), torch.from_numpy(b), stride=2,
                                          padding=1)
    np.testing.assert_array_equal(c, expected.numpy())


def test_binary_triples_and_random_bits_are_exact(triples: list[dict[str, Any]]) -> None:
    a, b, c = triples[0]["triple_binary"]
    np.testing.assert_array_equal(c, a & b)
    arithmetic, binary = triples[0]["triple_b2a"]
    np.testing.assert_array_equal(arithmetic, binary)
    assert set(np.unique(arithmetic)) == {0, 1}


def test_triples_and_shares_are_uniform(triples: list[dict[str, Any]]) -> None:
    # c = a * b itself is not uniform in Z_2^64 (it is even 3/4 of the time); its shares are
    a, b, _ = triples[0]["triple_mul"]
    for values in (a, b, triples[0]["triple_own_c_share"], triples[1]["triple_own_c_share"],
                   triples[0]["triple_own_binary_share"]):
        assert _chi_square(values) < CHI_SQUARE_LIMIT
    share = triples[0]["triple_own_c_share"]
    bits = np.unpackbits(share.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.05)  # every bit position of a share is balanced
    assert np.all(triples[0]["triple_own_c_share"] != triples[1]["triple_own_c_share"])


def _conformance(party: pets.Party) -> dict[str, Any]:
    be = party.backend
    data = np.random.default_rng(3).uniform(-1, 1, size=(5, 6))
    operand = np.random.default_rng(5).uniform(-1, 1, size=data.shape)
    results: dict[str, Any] = {}
    with pets.measure() as cost:
        for name, case in sorted(CASES.items()):
            x = be.encrypt(data if party.rank == 0 else None, src=0)
            results[name] = be.decrypt(case(x, operand))
        x = be.encrypt(data if party.rank == 0 else None, src=0)
        results["relu"] = be.decrypt(x.relu())
        torch.manual_seed(4)
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(8, 3))
        images = torch.randn(2, 1, 4, 4)
        model = pets.compile(net, backend=be, example_input=images, weights_from=1)
        results["cnn"] = model.decrypt(
            model(model.encrypt(images.numpy() if party.rank == 0 else None, src=0)), to=0)
        with torch.no_grad():
            results["cnn_torch"] = net(images).numpy()
    results["cost"] = (cost.bytes_sent, dict(cost.extra))
    return results


def test_provider_he_matches_the_plain_reference_as_the_dealer_does(
    triples: list[dict[str, Any]],
) -> None:
    """The mpc backend's tolerance, which the dealer's runs are held to (tests/test_mpc*.py)."""
    plain = pets.backend("plain")
    data = np.random.default_rng(3).uniform(-1, 1, size=(5, 6))
    operand = np.random.default_rng(5).uniform(-1, 1, size=data.shape)
    he = triples[0]
    for name, case in CASES.items():
        expected = plain.decrypt(case(plain.encrypt(data), operand))
        np.testing.assert_allclose(he[name], expected, atol=TOLERANCE, rtol=0, err_msg=name)
    np.testing.assert_allclose(he["relu"], np.maximum(data, 0), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(he["cnn"], he["cnn_torch"], atol=5 * TOLERANCE, rtol=0)
    assert triples[1]["cnn"] is None  # revealed to the client only


def test_offline_traffic_is_counted_apart(triples: list[dict[str, Any]]) -> None:
    online, extra = triples[0]["cost"]
    assert extra["offline_bytes"] > 10 * online  # triples under HE cost more than their use
    assert extra["offline_rounds"] > 0 and extra["offline_seconds"] > 0


def test_provider_he_refuses_other_than_two_parties() -> None:
    with pytest.raises(pets.ParameterError, match="provider 'he' makes triples between exactly "
                                                  "two parties, not 3"):
        pets.run_parties(_triples, parties=3, provider="he", timeout=10)
