"""Federated protocol pieces without a Flower runtime: packing, DP shares, the mod, the strategy.

Real CKKS (TenSEAL) and real OpenDP noise throughout; Flower messages are built
directly and handed to the mod and the strategy as Flower would.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from pets_protocols.federated import packing
from pets_protocols.federated.mod import EPSILON, SecureUpdateMod, open_global
from pets_protocols.federated.model import flatten, init_parameters, unflatten
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import UPDATE, GlobalState, plain_record, to_bytes_array
from pets_protocols.federated.strategy import SecureFedAvg, short_reason

import pets

#: CKKS at scale 2**40 keeps sums of a few values of size ~1 to ~1e-7; we allow 1e-6
CKKS_TOLERANCE = 1e-6
SIZES = (64, 32, 10)


@pytest.fixture(scope="module")
def keys() -> pets.Backend:
    return packing.make_keys()


@pytest.fixture(scope="module")
def server(keys: pets.Backend) -> pets.Backend:
    return pets.load_backend(keys.public().to_bytes())


# ---- packing ------------------------------------------------------------------------------


def test_an_update_of_2410_parameters_takes_one_ciphertext(keys: pets.Backend) -> None:
    assert packing.layout_for(keys, 2410).ciphertexts == 1
    assert packing.layout_for(keys, 4096).ciphertexts == 1
    assert packing.layout_for(keys, 5000).ciphertexts == 2
    tensor = packing.encrypt_vector(keys, np.ones(5000))
    assert tensor.shape == (4096, 2)


def test_encrypted_sum_equals_the_plaintext_sum(
    keys: pets.Backend, server: pets.Backend, rng: np.random.Generator
) -> None:
    updates = [rng.normal(size=5000) for _ in range(3)]
    received = [server.load_tensor(packing.encrypt_vector(keys, u).to_bytes()) for u in updates]
    total = packing.sum_tensors(received)
    decrypted = packing.decrypt_vector(keys, keys.load_tensor(total.to_bytes()), 5000)
    assert np.max(np.abs(decrypted - np.sum(updates, axis=0))) < CKKS_TOLERANCE


def test_compacted_ciphertexts_are_smaller_than_fresh_ones(keys: pets.Backend) -> None:
    vector = np.linspace(-1, 1, 2410)
    layout = packing.layout_for(keys, vector.size)
    fresh = keys.encrypt(layout.to_matrix(vector), layout="batched").to_bytes()
    sent = packing.encrypt_vector(keys, vector).to_bytes()
    assert len(sent) < 0.7 * len(fresh)


def test_the_aggregator_cannot_decrypt(keys: pets.Backend, server: pets.Backend) -> None:
    tensor = server.load_tensor(packing.encrypt_vector(keys, np.ones(10)).to_bytes())
    with pytest.raises(pets.MissingKeyError, match="holds no secret key"):
        packing.decrypt_vector(server, tensor, 10)


def test_summing_nothing_is_a_party_error() -> None:
    with pytest.raises(pets.PartyError) as info:
        packing.sum_tensors([])
    assert str(info.value) == (
        "no encrypted update to sum: every client of the round failed or dropped out; "
        "check the clients' logs and start the round again"
    )


# ---- DP settings ----------------------------------------------------------------------------


def test_noise_shares_add_up_to_the_round_noise() -> None:
    settings = DPSettings.for_budget(8.0, 1e-5, rounds=3, clip_norm=1.0, noise_clients=2)
    shares = [settings.privatize(np.zeros(20_000)) for _ in range(2)]
    # two shares of std sigma*C/sqrt(2) sum to std sigma*C; 40,000 draws: within 2 %
    assert np.std(shares[0] + shares[1]) == pytest.approx(settings.noise_multiplier, rel=0.02)
    assert np.std(shares[0]) == pytest.approx(settings.share_std, rel=0.02)


def test_clipping_bounds_the_update() -> None:
    settings = DPSettings(clip_norm=0.5, epsilon_per_round=1000.0, delta=1e-5,
                          noise_clients=1, budget_epsilon=1e4, budget_delta=1e-5)
    noisy = settings.privatize(np.full(100, 10.0))
    # noise std at epsilon 1000 is ~0.002 per value: the clipped norm 0.5 shows through
    assert np.linalg.norm(noisy) == pytest.approx(0.5, abs=0.05)


def test_rounds_compose_to_the_budget_and_no_further() -> None:
    settings = DPSettings.for_budget(8.0, 1e-5, rounds=3, noise_clients=2)
    budget = settings.budget_after(3)
    assert 7.9 < budget.spent[0] <= 8.0
    with pytest.raises(pets.BudgetExceededError, match="federated round 4"):
        budget.spend_mechanism(settings.round_mechanism(), label="federated round 4")


def test_one_update_alone_is_less_private_than_the_sum() -> None:
    settings = DPSettings.for_budget(8.0, 1e-5, rounds=3, noise_clients=2)
    assert settings.epsilon_of_one_update(3) > settings.budget_after(3).spent[0]


def test_noise_clients_must_be_positive() -> None:
    with pytest.raises(pets.DPConfigurationError) as info:
        DPSettings.for_budget(8.0, 1e-5, rounds=3, noise_clients=0)
    assert str(info.value) == (
        "noise_clients must be an int >= 1, got 0. Fix: pass the number of clients whose "
        "noise shares together must carry the full noise."
    )


def test_a_budget_delta_below_the_round_delta_is_refused() -> None:
    with pytest.raises(pets.DPConfigurationError) as info:
        DPSettings(clip_norm=1.0, epsilon_per_round=1.0, delta=1e-5, noise_clients=2,
                   budget_epsilon=8.0, budget_delta=1e-6)
    assert str(info.value) == (
        "budget_delta=1e-06 is smaller than the delta of one round (1e-05). "
        "Fix: pass a budget_delta >= delta."
    )


# ---- the client mod and the strategy, on hand-made Flower messages ---------------------------


def _train_message(record: ArrayRecord, node: int, server_round: int) -> Message:
    config = ConfigRecord({"server-round": server_round})
    return Message(RecordDict({"arrays": record, "config": config}), dst_node_id=node,
                   message_type="train.pets")


def _client(step: float):  # type: ignore[no-untyped-def]
    """A ClientApp train function that moves every parameter by ``step``."""

    def train(message: Message, context: Context) -> Message:
        params = {k: v + step for k, v in
                  open_global(message.content.array_records["arrays"], None)[0].items()}
        metrics = MetricRecord({"num-examples": 10})
        return Message(RecordDict({"arrays": plain_record(params), "metrics": metrics}),
                       reply_to=message)

    return train


def _context(node: int) -> Context:
    return Context(run_id=1, node_id=node, node_config={"partition-id": node},
                   state=RecordDict(), run_config={})


def test_encrypted_round_equals_the_plain_mean(keys: pets.Backend, flower_task: None) -> None:
    """Without DP noise, the clients decrypt exactly the mean of their new models."""
    secret = keys.to_bytes(include_secret_key=True)
    mod = SecureUpdateMod(key=secret)
    strategy = SecureFedAvg(public_key=keys.public().to_bytes(), min_clients=3)
    initial = plain_record(init_parameters(SIZES))
    strategy.template = GlobalState(b"", 1, {k: v.shape for k, v in
                                             init_parameters(SIZES).items()}).template
    strategy._sent_to = [1, 2, 3]
    steps = {1: 0.1, 2: -0.2, 3: 0.4}
    replies = [mod(_train_message(initial, node, 1), _context(node), _client(steps[node]))
               for node in (1, 2, 3)]
    state, metrics = strategy.aggregate_train(1, replies)
    assert state is not None and metrics is not None and metrics["clients"] == 3
    params, _ = open_global(state, keys)
    expected = flatten(init_parameters(SIZES)) + np.mean(list(steps.values()))
    assert np.max(np.abs(flatten(params) - expected)) < CKKS_TOLERANCE


def test_a_client_refuses_once_its_budget_is_spent(keys: pets.Backend, flower_task: None) -> None:
    settings = DPSettings.for_budget(8.0, 1e-5, rounds=2, noise_clients=1)
    mod = SecureUpdateMod(privacy=settings, key=keys.to_bytes(include_secret_key=True))
    context = _context(1)
    initial = plain_record(init_parameters(SIZES))
    for server_round in (1, 2):
        reply = mod(_train_message(initial, 1, server_round), context, _client(0.0))
        assert not reply.has_error()
    assert reply.content["metrics"][EPSILON] == pytest.approx(8.0, abs=1e-6)
    refused = mod(_train_message(initial, 1, 3), context, _client(0.0))
    assert refused.has_error()
    reason = refused.error.reason or ""
    assert reason.startswith(
        "BudgetExceededError: spending (epsilon=4.93579, delta=1e-05) ('federated round 3') "
        "would bring the total to (epsilon="
    )
    assert reason.endswith("Nothing was recorded. Fix: spend less (more noise, fewer or "
                           "coarser releases), or stop releasing results about this data.")


def test_too_few_usable_updates_fail_the_round_and_keep_the_state(
    keys: pets.Backend, flower_task: None
) -> None:
    mod = SecureUpdateMod(key=keys.to_bytes(include_secret_key=True))
    strategy = SecureFedAvg(public_key=keys.public().to_bytes(), min_clients=2)
    initial = plain_record(init_parameters(SIZES))
    strategy.template = {k: v.shape for k, v in init_parameters(SIZES).items()}
    strategy.last_state = initial
    strategy._sent_to = [1, 2, 3]
    good = mod(_train_message(initial, 1, 1), _context(1), _client(0.1))
    garbage = Message(RecordDict({"arrays": ArrayRecord({UPDATE: to_bytes_array(b"junk")}),
                                  "metrics": MetricRecord({"num-examples": 1})}),
                      reply_to=_train_message(initial, 2, 1))
    with pytest.raises(pets.PartyError) as info:
        strategy.aggregate_train(1, [good, garbage])
    message = str(info.value)
    assert message.startswith(
        "round 1: only 1 of 3 clients sent a usable update, fewer than min_clients=2 (the "
        "clients' DP noise needs at least that many shares); nothing was aggregated. Left out: "
        "node 2: sent an unusable update (SerializationError: "
    )
    assert "node 3: no reply before the timeout" in message
    assert strategy.last_state is initial


def test_the_aggregator_refuses_the_secret_key(keys: pets.Backend) -> None:
    with pytest.raises(pets.ParameterError) as info:
        SecureFedAvg(public_key=keys.to_bytes(include_secret_key=True), min_clients=2)
    assert str(info.value) == (
        "the aggregator was given the federation's secret key; it must hold only the public "
        "part: pass keys.public().to_bytes()"
    )


def test_a_mod_that_protects_nothing_is_refused() -> None:
    with pytest.raises(pets.DPConfigurationError, match="protects nothing"):
        SecureUpdateMod()


def test_an_encrypted_state_needs_the_key(keys: pets.Backend) -> None:
    total = packing.encrypt_vector(keys, np.zeros(2410)).to_bytes()
    state = GlobalState(total, 3, {k: v.shape for k, v in init_parameters(SIZES).items()})
    with pytest.raises(pets.MissingKeyError, match="holds no key"):
        open_global(state.to_record(), None)


def test_state_round_trips_through_a_record(keys: pets.Backend) -> None:
    template = {k: v.shape for k, v in init_parameters(SIZES).items()}
    vector = np.linspace(0, 3, 2410)
    state = GlobalState(vector * 3, 3, template)
    params, _ = open_global(state.to_record(), None)
    assert np.allclose(flatten(params), vector)
    assert np.array_equal(flatten(unflatten(vector, template)), vector)


def test_remote_tracebacks_are_shortened_to_their_message() -> None:
    reason = ("Traceback ...\n  File x\nRuntimeError: client 1 dropped out in round 2\n\n"
              "ClientAppException: \nException ClientAppException occurred. "
              "Message: client 1 dropped out in round 2'>")
    assert short_reason(reason) == "client 1 dropped out in round 2"
    assert short_reason("BudgetExceededError: spent") == "BudgetExceededError: spent"
    assert short_reason("<class 'RuntimeError'>:<'node asked to drop out'>") == (
        "RuntimeError: node asked to drop out"
    )


def test_the_bench_report_prints_every_row_and_the_ratios() -> None:
    from pets_protocols.federated.compare import SETTINGS, FederatedReport, Row

    def row(mode: str, bytes_up: float | None, seconds: float) -> Row:
        return Row(setting=SETTINGS[mode], split="iid", clients=3, rounds=2, accuracy=0.5,
                   seconds_per_round=seconds, bytes_down=bytes_up, bytes_up=bytes_up,
                   epsilon=None if mode in ("fedavg", "pooled") else 8.0,
                   epsilon_one_update=None, note=f"{mode} note")

    report = FederatedReport([row("fedavg", 20_000.0, 0.2), row("dp", 20_000.0, 0.4),
                              row("dp+he", 130_000.0, 0.6), row("pooled", None, 0.01)])
    assert report.ratios == {"iid: bytes up, dp+he / fedavg": 6.5,
                             "iid: s per round, dp+he / fedavg": pytest.approx(3.0)}
    text = str(report)
    assert all(SETTINGS[mode] in text for mode in SETTINGS)
    assert "  iid: bytes up, dp+he / fedavg: 6.50x" in text
    assert [d["setting"] for d in report.as_dicts()] == list(SETTINGS.values())


def test_unknown_splits_and_modes_are_refused() -> None:
    from pets_protocols.federated import simulate
    from pets_protocols.federated.data import split_indices

    with pytest.raises(pets.ParameterError) as info:
        split_indices(np.arange(6), 3, "dirichlet")
    assert str(info.value) == "unknown data split 'dirichlet'; choose one of: iid, label"
    with pytest.raises(pets.ParameterError) as info:
        simulate(modes=("secagg",))
    assert str(info.value) == (
        "unknown federated mode(s) ['secagg']; choose from: fedavg, dp, dp+he"
    )


def test_more_clients_than_records_is_a_shape_error() -> None:
    from pets_protocols.federated.data import split_indices

    with pytest.raises(pets.ShapeMismatchError) as info:
        split_indices(np.arange(2), 3, "iid")
    assert str(info.value) == (
        "cannot split 2 records across 3 clients; use between 1 and 2 clients"
    )


def test_a_client_does_not_open_a_sum_with_too_few_noise_shares(
    keys: pets.Backend, flower_task: None
) -> None:
    settings = DPSettings.for_budget(8.0, 1e-5, rounds=3, noise_clients=2)
    mod = SecureUpdateMod(privacy=settings, key=keys.to_bytes(include_secret_key=True))
    template = {k: v.shape for k, v in init_parameters(SIZES).items()}
    lone = GlobalState(packing.encrypt_vector(keys, np.zeros(2410)).to_bytes(), 1, template)
    reply = mod(_train_message(lone.to_record(), 1, 2), _context(1), _client(0.0))
    assert reply.has_error()
    assert reply.error.reason == (
        "PrivacyError: the global state sums 1 clients' proposals, fewer than the 2 noise "
        "shares this client's DP settings need; it was not opened. Fix: give the server's "
        "strategy min_clients >= 2 (the clients' noise_clients)"
    )
