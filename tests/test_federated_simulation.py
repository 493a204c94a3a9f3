"""Federated training on Flower's simulation engine: every mode, both splits, dropouts.

One module-scoped simulation runs Flower's FedAvg, DP and DP + encrypted
aggregation on both splits (3 clients, 2 rounds, client 2 crashing in round 2);
the test of too many dropouts starts its own (Ray's start and the clients' first
round take ~15 s).
"""

from __future__ import annotations

import numpy as np
import pytest
from pets_protocols.federated import MODES, FederatedRun, make_keys, open_global, simulate
from pets_protocols.federated.data import load_digits
from pets_protocols.federated.model import accuracy, flatten
from pets_protocols.federated.privacy import DPSettings

import pets

CLIENTS, ROUNDS, EPSILON = 3, 2, 8.0


@pytest.fixture(scope="module")
def keys() -> pets.Backend:
    return make_keys()


@pytest.fixture(scope="module")
def runs(keys: pets.Backend) -> dict[tuple[str, str], FederatedRun]:
    privacy = DPSettings.for_budget(EPSILON, 1e-5, rounds=ROUNDS, noise_clients=CLIENTS - 1)
    return simulate(modes=MODES, splits=("iid", "label"), clients=CLIENTS, rounds=ROUNDS,
                    privacy=privacy, keys=keys, fail_at={2: ROUNDS})


def test_every_mode_ran_every_round_on_both_splits(
    runs: dict[tuple[str, str], FederatedRun],
) -> None:
    assert sorted(runs) == sorted((m, s) for m in MODES for s in ("iid", "label"))
    for run in runs.values():
        assert len(run.accuracy) == ROUNDS
        assert run.seconds_per_round > 0


def test_flower_fedavg_learns_on_iid_shards(runs: dict[tuple[str, str], FederatedRun]) -> None:
    assert runs["fedavg", "iid"].final_accuracy > 0.6  # pooled training reaches ~0.95


def test_each_client_spends_exactly_its_budget(runs: dict[tuple[str, str], FederatedRun]) -> None:
    for mode in ("dp", "dp+he"):
        for split in ("iid", "label"):
            run = runs[mode, split]
            assert run.epsilon is not None and EPSILON - 0.01 < run.epsilon <= EPSILON
            assert run.reports[0].epsilon is not None and run.reports[0].epsilon < EPSILON


def test_encrypted_updates_cost_one_ciphertext_each(
    runs: dict[tuple[str, str], FederatedRun],
) -> None:
    plain, encrypted = runs["fedavg", "iid"], runs["dp+he", "iid"]
    # 2,410 float64 parameters (19 KB) against one CKKS ciphertext at N=8192 (~130 KB)
    assert 19_000 < plain.bytes_up < 21_000
    assert 120_000 < encrypted.bytes_up < 140_000
    assert 120_000 < encrypted.bytes_down < 140_000


def test_the_server_keeps_only_ciphertexts_and_the_clients_read_the_model(
    runs: dict[tuple[str, str], FederatedRun], keys: pets.Backend
) -> None:
    state = runs["dp+he", "iid"].final_state
    assert state is not None
    with pytest.raises(pets.MissingKeyError):
        open_global(state, None)
    params, _ = open_global(state, keys)
    data = load_digits()
    # the decrypted model is the one the clients evaluated after the last round
    assert accuracy(params, data.x_test, data.y_test) == pytest.approx(
        runs["dp+he", "iid"].final_accuracy, abs=1e-9
    )
    assert np.all(np.isfinite(flatten(params)))


def test_a_dropout_leaves_the_round_to_the_others(
    runs: dict[tuple[str, str], FederatedRun],
) -> None:
    for mode in ("dp", "dp+he"):
        reports = runs[mode, "label"].reports
        assert [r.clients for r in reports] == [CLIENTS, CLIENTS - 1]
        assert len(reports[1].dropped) == 1
        assert reports[1].dropped[0].endswith(f": client 2 dropped out in round {ROUNDS}")


def test_too_many_dropouts_fail_the_round_with_the_state_kept(keys: pets.Backend) -> None:
    privacy = DPSettings.for_budget(EPSILON, 1e-5, rounds=2, noise_clients=3)
    with pytest.raises(pets.PartyError) as info:
        simulate(modes=("dp+he",), clients=3, rounds=2, privacy=privacy, keys=keys,
                 fail_at={1: 2})
    message = str(info.value)
    assert message.startswith(
        "round 2: only 2 of 3 clients sent a usable update, fewer than min_clients=3 (the "
        "clients' DP noise needs at least that many shares); nothing was aggregated. Left out: "
        "node "
    )
    assert ": client 1 dropped out in round 2. The last global state is kept in " in message
    failed = info.value.runs["dp+he", "iid"]  # type: ignore[attr-defined]
    assert [r.clients for r in failed.reports] == [3]
    params, _ = open_global(failed.final_state, keys)  # round 1's model, still readable
    assert np.all(np.isfinite(flatten(params)))
