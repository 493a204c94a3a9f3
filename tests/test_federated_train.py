"""``federated.train``: a torch model on Flower, sample-level DP with budget files, SecAgg+.

One module-scoped run on Flower's simulation engine (Ray's start-up is most of
its time): 4 clients of digits, 2 rounds, sample-level DP at epsilon 4 under
SecAgg+, client 1 dropping out of round 2 after the keys were shared. The other
tests need no engine: bad inputs are refused before it starts, and the server's
checks are handed Flower messages directly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common import (
    Code,
    FitRes,
    Status,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from pets_protocols import federated
from pets_protocols.federated.api import _plain_check
from pets_protocols.federated.local import (
    LocalPlan,
    budget_file,
    epsilon_of,
    fit_locally,
    get_arrays,
    noise_multiplier_for,
    predict,
)
from pets_protocols.federated.meter import WHO, MeteredGrid
from pets_protocols.federated.records import plain_record
from pets_protocols.federated.servers import UpdateFedAvg, _masked_vector_check, secagg_shares
from sklearn.datasets import load_digits

import pets

EPSILON, CLIENTS, ROUNDS = 4.0, 4, 2


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = (bunch.data / 8.0 - 1.0).astype(np.float32)
    return x[:1200], bunch.target[:1200], x[1200:], bunch.target[1200:]


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


@pytest.fixture(scope="module")
def budgets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("budgets")


@pytest.fixture(scope="module")
def secagg_run(budgets: Path) -> federated.TrainResult:
    x, y, x_test, y_test = digits()
    lines: list[str] = []
    result = federated.train(
        mlp(), federated.label_skew(x, y, CLIENTS), rounds=ROUNDS, local_epochs=1,
        dp=federated.SampleDP(epsilon=EPSILON, budget_dir=budgets), aggregation="secagg+",
        evaluate=(x_test, y_test), drops={2: [1]}, progress=lines.append,
    )
    result.lines = lines  # type: ignore[attr-defined]
    return result


# ---- the run ----------------------------------------------------------------------------


def test_every_round_is_recorded_with_its_costs(secagg_run: federated.TrainResult) -> None:
    history = secagg_run.history
    assert [h.number for h in history] == [1, 2]
    assert [h.clients for h in history] == [CLIENTS, CLIENTS - 1]
    for record in history:
        assert record.accuracy is not None and 0.0 <= record.accuracy <= 1.0
        assert record.seconds > 0 and record.bytes_up > 0 and record.bytes_down > 0
    assert secagg_run.lines == [  # type: ignore[attr-defined]
        f"round {h.number}/{ROUNDS}: accuracy {h.accuracy:.3f}, loss {h.loss:.3f}"
        for h in history
    ]


def test_a_dropout_after_the_key_exchange_is_one_line_and_the_round_completes(
    secagg_run: federated.TrainResult,
) -> None:
    assert secagg_run.history[0].dropouts == []
    assert secagg_run.history[1].dropouts == ["client 1: simulated dropout"]


def test_the_returned_model_is_the_last_global_model(secagg_run: federated.TrainResult) -> None:
    _, _, x_test, y_test = digits()
    classes, _ = predict(secagg_run.model, x_test)
    assert float(np.mean(classes == y_test)) == pytest.approx(secagg_run.accuracy, abs=1e-12)


def test_each_client_spends_at_most_its_budget(secagg_run: federated.TrainResult) -> None:
    spent = secagg_run.epsilon
    assert isinstance(spent, dict) and sorted(spent) == list(range(CLIENTS))
    assert all(0 < value <= EPSILON for value in spent.values())
    assert spent[1] < spent[0]  # client 1 dropped out of round 2 and paid only for round 1
    assert spent[0] > EPSILON - 0.1  # the planned rounds spend nearly all of it


def test_a_restarted_client_cannot_spend_past_its_budget(
    secagg_run: federated.TrainResult, budgets: Path,
) -> None:
    """The run's clients were Ray worker processes; this test process is client 0 restarted,
    asked for a third round with the same budget file."""
    x, y, _, _ = digits()
    part = federated.label_skew(x, y, CLIENTS)[0]
    plan = LocalPlan(rounds=ROUNDS, local_epochs=1, lr=0.1, batch_size=32, seed=0,
                     sample_dp=federated.SampleDP(EPSILON), budget_dir=str(budgets))
    before = pets.dp.Budget.load(budget_file(budgets, 0)).spent
    with pytest.raises(pets.BudgetExceededError, match=r"federated round 3: \d+ DP-SGD steps"):
        fit_locally(mlp(), get_arrays(mlp()), *part, plan, client=0, server_round=3)
    after = pets.dp.Budget.load(budget_file(budgets, 0)).spent
    assert after == before and after[0] <= EPSILON


# ---- accounting -------------------------------------------------------------------------


def test_the_noise_multiplier_is_the_smallest_that_fits_the_budget() -> None:
    sigma = noise_multiplier_for(4.0, 1e-5, 0.25, 40)
    assert epsilon_of([(sigma, 0.25, 40)], 1e-5) <= 4.0
    assert epsilon_of([(sigma * 0.99, 0.25, 40)], 1e-5) > 4.0


def test_rounds_paid_one_by_one_compose_like_one_run() -> None:
    whole = epsilon_of([(1.2, 0.2, 30)], 1e-5)
    assert epsilon_of([(1.2, 0.2, 10)] * 3, 1e-5) == pytest.approx(whole, rel=1e-9)


# ---- refused before the engine starts ---------------------------------------------------


def test_clients_with_different_feature_shapes_are_refused() -> None:
    clients = [(np.zeros((4, 64)), np.zeros(4, dtype=int)),
               (np.zeros((4, 63)), np.zeros(4, dtype=int))]
    with pytest.raises(pets.ShapeMismatchError, match=r"different feature shapes \(client 0: "
                       r"\(64,\), client 1: \(63,\)\); every client must hold the same"):
        federated.train(mlp(), clients, rounds=1)


def test_an_empty_client_is_refused() -> None:
    clients = [(np.zeros((4, 64)), np.zeros(4, dtype=int)),
               (np.zeros((0, 64)), np.zeros(0, dtype=int))]
    with pytest.raises(pets.ShapeMismatchError, match=r"client 1 holds no records"):
        federated.train(mlp(), clients, rounds=1)


def test_a_model_that_does_not_fit_the_features_is_refused() -> None:
    clients = [(np.zeros((4, 30)), np.zeros(4, dtype=int))] * 2
    with pytest.raises(pets.ShapeMismatchError, match=r"the model cannot take the clients' "
                       r"records of shape \(30,\)"):
        federated.train(mlp(), clients, rounds=1)


def test_a_model_opacus_cannot_make_private_is_refused_with_its_fix() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(8, 10))
    clients = [(np.zeros((4, 64)), np.zeros(4, dtype=int))] * 2
    with pytest.raises(pets.dp.DPConfigurationError, match=r"(?s)Opacus cannot train this model.*"
                       r"BatchNorm.*Fix: model = pets\.dp\.fix_model\(model\)"):
        federated.train(model, clients, rounds=1, dp=federated.SampleDP(4.0))


def test_secagg_needs_three_clients() -> None:
    clients = [(np.zeros((4, 64)), np.zeros(4, dtype=int))] * 2
    with pytest.raises(pets.ParameterError, match=r"SecAgg\+ needs at least 3 clients"):
        federated.train(mlp(), clients, rounds=1, aggregation="secagg+")


def test_an_unknown_aggregation_lists_the_known_ones() -> None:
    clients = [(np.zeros((4, 64)), np.zeros(4, dtype=int))] * 3
    with pytest.raises(pets.ParameterError, match=r"choose from: plain, secagg\+, ckks"):
        federated.train(mlp(), clients, rounds=1, aggregation="homomorphic")


def test_secagg_threshold_is_two_thirds_of_a_neighbourhood_of_about_log2_n() -> None:
    assert [secagg_shares(n) for n in (3, 4, 5, 10, 100)] == [
        (3, 2), (3, 2), (5, 3), (5, 3), (9, 6)]


# ---- the server's checks ----------------------------------------------------------------


def _reply(content: RecordDict) -> Message:
    sent = Message(RecordDict(), dst_node_id=7, message_type="train")
    return Message(content, reply_to=sent)


def test_a_masked_vector_of_the_wrong_shape_is_refused(flower_task: None) -> None:
    check = _masked_vector_check([(64, 16), (16,)])
    good = [np.zeros(1), np.zeros((64, 16)), np.zeros(16)]
    bad = [np.zeros(1), np.zeros((64, 16)), np.zeros(17)]
    for arrays, verdict in ((good, None), (bad, "sent a masked vector of shapes")):
        configs = ConfigRecord({Key.MASKED_PARAMETERS: [ndarray_to_bytes(a) for a in arrays]})
        reason = check(_reply(RecordDict({RECORD_KEY_CONFIGS: configs})))
        assert reason == verdict or (verdict and reason and reason.startswith(verdict))


def test_a_plain_update_with_wrong_shapes_or_nan_is_refused(flower_task: None) -> None:
    initial = get_arrays(mlp())
    check = _plain_check(list(initial), initial)
    assert check(_reply(RecordDict({"arrays": plain_record(copy.deepcopy(initial))}))) is None
    broken = copy.deepcopy(initial)
    broken["2.bias"] = np.full(10, np.nan, dtype=np.float32)
    assert check(_reply(RecordDict({"arrays": plain_record(broken)}))) == (
        "sent non-finite values; left out of the round")
    broken["2.bias"] = np.zeros(11, dtype=np.float32)
    assert "not the model's" in (check(_reply(RecordDict({"arrays": plain_record(broken)}))) or "")


class _Grid:
    """Stands for the meter the strategy writes its notes to."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_an_aggregate_past_the_sum_of_the_bounds_is_refused() -> None:
    initial = [np.zeros(4, dtype=np.float32)]
    meter = _Grid()
    strategy = UpdateFedAvg(initial=initial, bound=1.0, noise_std=0.0,
                            meter=lambda: meter, clients=3, evaluate=lambda r, a: None)

    def round_with(mean: float) -> np.ndarray:
        fit = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.full(4, mean)]), 1, {})
        parameters, _ = strategy.aggregate_fit(1, [(None, fit)] * 3, [])
        return parameters_to_ndarrays(parameters)[0]

    assert np.allclose(round_with(0.4), 0.4)  # norm 0.8 <= 1: applied
    assert np.allclose(round_with(5.0), 0.4)  # norm 10 > 1: refused, the model kept
    assert meter.notes == ["the aggregate's norm 10 exceeds what 3 updates bounded by 1 can "
                           "reach (1): some client skipped the bound; round refused, model kept"]


class _Replies:
    """An inner grid answering each message with the content it was built with."""

    def __init__(self, answers: dict[int, RecordDict]) -> None:
        self.answers = answers

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None
                         ) -> list[Message]:
        return [Message(self.answers[m.metadata.dst_node_id], reply_to=m) for m in messages]


def test_a_malformed_update_is_dropped_and_its_client_named(flower_task: None) -> None:
    initial = get_arrays(mlp())
    broken = copy.deepcopy(initial)
    broken["0.weight"] = np.zeros((3, 3), dtype=np.float32)
    answers = {node: RecordDict({"arrays": plain_record(arrays),
                                 WHO: ConfigRecord({"client": node - 1})})
               for node, arrays in ((1, initial), (2, broken))}
    grid = MeteredGrid(_Replies(answers), check=_plain_check(list(initial), initial))  # type: ignore[arg-type]
    sent = [Message(RecordDict({"arrays": plain_record(initial)}), dst_node_id=node,
                    message_type="train") for node in (1, 2)]
    replies = list(grid.send_and_receive(sent))
    assert [r.has_error() for r in replies] == [False, True]
    record = grid.close_round(1)
    assert record.clients == 1
    assert len(record.dropouts) == 1 and record.dropouts[0].startswith(
        "client 1: sent arrays {")
    assert record.dropouts[0].endswith("left out of the round")
