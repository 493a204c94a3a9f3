"""pets assess: the privacy assessment matrix (structure, files, evidence, DP order).

One real run of ``pets assess --quick`` in its tiny size (``PETS_ASSESS_SIZE=tiny``:
real DP-SGD, CKKS and federated rounds, no MPC processes) feeds most tests; the MPC
party run has its own test, marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from pets_benchmarks.assess import STAGES, Cell, load_matrix, tiny
from pets_benchmarks.assess.config import AssessConfig, from_environment, quick
from pets_benchmarks.assess.context import Context, from_run

import pets

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``pets assess --quick --out DIR`` in a subprocess, tiny size; its files, parsed."""
    out = tmp_path_factory.mktemp("assess")
    env = dict(os.environ, PETS_ASSESS_SIZE="tiny")
    done = subprocess.run([sys.executable, "-m", "pets", "assess", "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]

    def strict(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    raw = json.loads((out / "assessment.json").read_text(), parse_constant=strict)
    return {"out": out, "stdout": done.stdout, "raw": raw,
            "matrix": load_matrix(out / "assessment.json"),
            "markdown": (out / "assessment.md").read_text()}


def cell(run: dict[str, Any], stage: str, threat: str, technique: str) -> Cell:
    found = [c for c in run["matrix"]["cells"]
             if (c.stage, c.threat, c.technique) == (stage, threat, technique)]
    assert len(found) == 1, (stage, threat, technique)
    return found[0]


def test_writes_markdown_json_and_png_that_parse(run: dict[str, Any]) -> None:
    from matplotlib.image import imread

    assert run["raw"]["format"] == "pets-assessment/1"
    image = imread(run["out"] / "assessment.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    techniques = run["raw"]["techniques"]
    assert "| stage | threat | " + " | ".join(techniques) + " |" in run["markdown"]
    assert "## Cost (against plaintext on the same work)" in run["markdown"]
    assert "assessment.png" in run["stdout"]


def test_every_stage_threat_and_technique_has_exactly_one_cell(run: dict[str, Any]) -> None:
    techniques = run["raw"]["techniques"]
    assert techniques == ["none", "DP eps=32", "DP eps=1", "HE (CKKS)", "MPC (2 parties)",
                          "FL + DP + HE"]
    expected = {(s, t, c) for s, threats in STAGES.items() for t in threats for c in techniques}
    seen = [(c.stage, c.threat, c.technique) for c in run["matrix"]["cells"]]
    assert sorted(seen) == sorted(expected)
    assert {c.status for c in run["matrix"]["cells"]} >= {"measured", "impossible",
                                                          "not applicable", "skipped"}
    assert not [c for c in run["matrix"]["cells"] if c.status == "failed"]


def test_impossible_cells_carry_what_the_server_held(run: dict[str, Any]) -> None:
    he = cell(run, "inference", "eavesdropping server", "HE (CKKS)")
    assert he.status == "impossible"
    assert he.evidence["server has_secret_key"] is False
    assert he.evidence["server decrypt attempt"].startswith("MissingKeyError: ")
    assert he.evidence["public key set bytes"] > 1_000_000
    assert he.evidence["ciphertext bytes received"] > 0
    fl = cell(run, "training", "reconstruction", "FL + DP + HE")
    assert fl.status == "impossible"
    assert fl.evidence["aggregator has_secret_key"] is False
    assert fl.evidence["aggregator decrypt attempt"].startswith("MissingKeyError: ")
    assert "if a key holder colludes: records rebuilt from one update" in fl.evidence
    impossible = [c for c in run["matrix"]["cells"] if c.status == "impossible"]
    assert impossible and all(c.evidence and c.note for c in impossible)
    for c in impossible:  # said only where this run checked the view, and every check passed
        assert c.evidence["checks passed"] and all(c.evidence["checks passed"].values()), c
        assert "checked in this run" in c.note
    assert he.evidence["Kolmogorov-Smirnov p against uniform on [0, q)"] > 1e-3
    assert he.evidence["coefficients decoded"] > 10_000
    assert "evidence, what the attacker held:" in run["markdown"]


def test_measured_cells_have_a_metric_in_the_unit_interval_with_its_interval(
        run: dict[str, Any]) -> None:
    measured = [c for c in run["matrix"]["cells"] if c.status == "measured"]
    assert len(measured) >= 12
    for c in measured:
        assert c.leakage is not None and c.leakage.interval is not None, c
        low, high = c.leakage.interval
        assert 0.0 <= low <= c.leakage.value <= high <= 1.0, c
        assert 0.0 <= c.leakage.advantage <= 1.0
        assert c.cost is not None and c.cost.work
    membership = cell(run, "release", "membership", "none").leakage
    assert membership is not None and membership.metric == "AUC" and membership.chance == 0.5


def test_dp_cells_leak_less_at_lower_epsilon(run: dict[str, Any]) -> None:
    # 600 records: at epsilon 32 the collector names about 30% of digits, at epsilon 1 about
    # 11% (chance 10%); the intervals are about +-4 points wide, so 0.08 is many of them
    named = {t: cell(run, "collection", "eavesdropping server", t).leakage
             for t in ("none", "DP eps=32", "DP eps=1")}
    assert named["none"].value > named["DP eps=32"].value + 0.3  # type: ignore[union-attr]
    assert named["DP eps=32"].value > named["DP eps=1"].value + 0.08  # type: ignore[union-attr]
    assert named["DP eps=1"].advantage < 0.1  # type: ignore[union-attr]
    rebuilt = {t: cell(run, "training", "reconstruction", t).leakage.value  # type: ignore[union-attr]
               for t in ("none", "DP eps=32", "DP eps=1")}
    assert rebuilt == {"none": 1.0, "DP eps=32": 0.0, "DP eps=1": 0.0}
    accuracy = {t: cell(run, "collection", "eavesdropping server", t).cost.accuracy  # type: ignore[union-attr]
                for t in ("none", "DP eps=32", "DP eps=1")}
    assert accuracy["DP eps=32"] > accuracy["DP eps=1"] + 0.3  # type: ignore[operator]


def test_cells_without_a_measurement_say_why(run: dict[str, Any]) -> None:
    others = [c for c in run["matrix"]["cells"] if c.status in ("not applicable", "skipped")]
    assert others and all(len(c.note) > 20 for c in others)
    he_training = cell(run, "training", "reconstruction", "HE (CKKS)")
    assert he_training.status == "not applicable"
    assert he_training.evidence["PrivateModel.fit under CKKS"].startswith("CompileError: ")


def test_costs_are_against_plaintext_on_the_same_work(run: dict[str, Any]) -> None:
    he = cell(run, "inference", "eavesdropping server", "HE (CKKS)").cost
    assert he is not None and he.bytes_ratio is not None and he.bytes_ratio > 100
    assert he.accuracy == pytest.approx(he.plain_accuracy, abs=0.05)
    dp = cell(run, "training", "reconstruction", "DP eps=1").cost
    assert dp is not None and dp.plain_accuracy is not None and dp.details["epsilon spent"] <= 1.0
    fl = cell(run, "training", "reconstruction", "FL + DP + HE").cost
    assert fl is not None and fl.details["epsilon spent per client"] <= 8.0 + 1e-6


def test_reports_name_the_machine_and_configuration(run: dict[str, Any]) -> None:
    machine = run["raw"]["machine"]
    assert machine["cores"] >= 1 and machine["libraries"]["torch"].startswith("2.13")
    assert machine["cpu"] in run["markdown"]
    assert run["raw"]["config"]["name"] == "tiny"
    assert '"epsilons": [' in run["markdown"]


def _digits(count: int) -> tuple[np.ndarray, np.ndarray, Any]:
    from pets_benchmarks.assess.workload import Workload, evaluator

    w = Workload.load(tiny())
    x, y = w.rows(w.test[:count])
    return x.astype(np.float64), y, evaluator(w.rows(w.attacker))


def test_a_view_that_fails_its_check_shows_the_measured_attack_not_impossible() -> None:
    from pets_benchmarks.assess.evidence import checked_cell, ciphertext_check, share_check

    x, y, classifier = _digits(40)
    # a "share" that is the fixed-point data itself: not uniform, and it names the digits
    leaky = share_check(np.round(x * 2**16).astype(np.int64), 2.0**16, x, y, classifier)
    assert not leaky.impossible
    assert leaky.evidence["checks passed"] == {"share uniform on the ring": False,
                                               "no correlation with the data": False,
                                               "digits named at chance": False}
    cell = checked_cell("collection", "eavesdropping server", "MPC (2 parties)", leaky,
                        held={}, note="one share")
    assert cell.status == "measured" and cell.leakage is not None
    assert cell.leakage.value > 0.5 and "check of the view failed" in cell.note
    # a CKKS server that holds the secret key: its decrypt does not refuse
    be = pets.backend("ckks")
    tensor = be.encrypt(x, layout="batched")
    broken = ciphertext_check(be, tensor, refusal="no error: the server could decrypt",
                              labels=y, classifier=classifier)
    assert not broken.impossible
    assert broken.failed == ["decrypt refused", "no secret key held"]
    assert broken.evidence["Kolmogorov-Smirnov p against uniform on [0, q)"] > 1e-3
    random_shares = np.random.default_rng(0).integers(-2**63, 2**63 - 1, x.shape,
                                                      dtype=np.int64)
    assert share_check(random_shares, 2.0**16, x, y, classifier).impossible


def test_inconclusive_cells_are_marked_and_not_coloured_as_findings() -> None:
    from pets_benchmarks.assess.cells import Leakage
    from pets_benchmarks.assess.reading import inconclusive
    from pets_benchmarks.assess.report import leak_text

    def measured(technique: str, value: float, low: float, high: float) -> Cell:
        return Cell("release", "property", technique, "measured", leakage=Leakage(
            "meta-classifier accuracy", value, (low, high), chance=0.5, advantage=0.0))

    none, narrow = measured("none", 0.8, 0.7, 0.9), measured("DP eps=1", 0.6, 0.5, 0.7)
    wide = measured("DP eps=8", 1.0, 0.54, 1.0)
    cells = [none, narrow, wide]
    assert leak_text(narrow, cells) == "0.60 [0.50, 0.70]"
    assert leak_text(wide, cells) == "inconclusive: 1.00 [0.54, 1.00]"
    at_chance = measured("none", 0.52, 0.45, 0.6)
    assert inconclusive(narrow, at_chance) == ("the attack is at chance without protection "
                                               "(none: meta-classifier accuracy 0.52 [0.45, 0.60])")
    assert leak_text(narrow, [at_chance, narrow]).startswith("inconclusive: ")


def test_a_run_that_failed_fails_only_its_cells() -> None:
    def never(run: Any) -> Cell:
        raise AssertionError("not reached")

    failed = from_run("inference", "eavesdropping server", "HE (CKKS)",
                      pets.ParameterError("no keys"), never, skipped="off")
    assert failed.status == "failed" and "ParameterError: no keys" in failed.note
    skipped = from_run("inference", "eavesdropping server", "HE (CKKS)", None, never,
                       skipped="the HE run is off")
    assert skipped.status == "skipped" and skipped.note == "the HE run is off"


def test_a_stage_that_raises_becomes_failed_cells_and_the_run_goes_on() -> None:
    from pets_benchmarks.assess.cells import Cost
    from pets_benchmarks.assess.runner import _stage_cells
    from pets_benchmarks.assess.workload import Workload, make_model

    config = tiny()
    ctx = Context(config, Workload.load(config), None, make_model(config.hidden),
                  Cost(work="none"))  # no DP models: the training stage cannot finish
    cells = _stage_cells("training", ctx)
    assert {c.technique for c in cells} == set(config.techniques)
    assert all(c.status == "failed" and "KeyError" in c.note for c in cells)


def test_bad_configurations_are_refused_with_the_fix() -> None:
    with pytest.raises(pets.ParameterError, match="epsilons must be positive numbers"):
        AssessConfig(name="x", epsilons=())
    with pytest.raises(pets.ParameterError, match="exceed the 1,797 digits"):
        AssessConfig(name="x", members=800)
    with pytest.raises(pets.ParameterError, match="PETS_ASSESS_SIZE='huge' is not a preset"):
        from_environment(quick(), {"PETS_ASSESS_SIZE": "huge"})
    assert from_environment(quick(), {"PETS_ASSESS_MPC": "0"}).mpc is False


@pytest.mark.parametrize("name", ["pets_benchmarks.assess", "pets_benchmarks.assess.cells",
                                  "pets_benchmarks.assess.config", "pets_benchmarks.assess.stats",
                                  "pets_benchmarks.assess.reading",
                                  "pets_benchmarks.assess.evidence", "pets_benchmarks.machine"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(name))
    assert tried > 0 and failures == 0


def test_cli_parses_assess() -> None:
    from pets_benchmarks.command import ASSESS

    from pets.cli import build_parser

    args = build_parser().parse_args(["assess", "--quick", "--out", "somewhere"])
    assert (args.quick, args.out) == (True, "somewhere")
    assert args.func is ASSESS.run  # the command pets_benchmarks registers


@pytest.mark.slow
def test_mpc_party_sees_shares_uncorrelated_with_the_data() -> None:
    from pets_benchmarks.assess.mpc_run import run_mpc
    from pets_benchmarks.assess.workload import (
        Workload,
        evaluator,
        one_thread,
        train_plain,
    )

    config = tiny()
    w = Workload.load(config)
    x, y = w.rows(w.members[:60])
    queries, labels = w.rows(w.test[:40])
    with one_thread():
        model = train_plain(x, y, config=config)
    result = run_mpc(
        halves=[h.astype(np.float64) for h in np.array_split(x, 2)],
        labels=list(np.array_split(y, 2)), queries=queries.astype(np.float64),
        query_labels=labels, served=(config.hidden, model.state_dict()), hidden=config.hidden,
        classifier=evaluator(w.rows(w.attacker)),
        settings={"epochs": 1, "lr": 0.5, "batch_size": 30}, timeout=120)
    view = result.query_view    # 40 x 64 values: a correlation's standard error is 0.02
    assert abs(view.evidence["correlation of the share with the data"]) < 0.1
    assert view.leakage is not None and view.leakage.value < 0.35  # chance 0.1; 40 queries
    assert view.evidence["Kolmogorov-Smirnov p against uniform on the 64-bit ring"] > 1e-3
    assert view.impossible and result.record_view.impossible
    assert result.inference.accuracy == pytest.approx(result.inference.plain_accuracy, abs=0.05)
    assert result.inference.details["logits off by more than 0.05"] <= 0.01
    assert result.training.accuracy is not None
    assert result.training.bytes is not None and result.training.bytes > 0
