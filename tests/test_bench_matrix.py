"""``pets bench``: the technique x workload matrix runs in one go and writes every file.

One tiny configuration runs every column on real engines (CKKS on TenSEAL, MPC
between real party processes, DP-SGD on Opacus); the federated column, whose
Flower simulation takes longer to start, runs in its own test. No timing is
asserted: only that every number is there, consistent and computed against the
plaintext cell of the same run.
"""

from __future__ import annotations

import csv
import doctest
import functools
import importlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from pets_benchmarks.matrix import (
    COLUMNS,
    FILES,
    Cell,
    MatrixConfig,
    MatrixResult,
    run_matrix,
    write_files,
)
from pets_benchmarks.matrix.cells import FAILED, OK, SKIPPED
from pets_benchmarks.matrix.report import check_skip
from pets_benchmarks.matrix.techniques import base
from pets_benchmarks.matrix.techniques.base import Context, Technique
from pets_benchmarks.matrix.workloads import Workload

import pets
from pets.cli import build_parser, main

#: CKKS keeps the plaintext outputs to its noise (~1e-6 here); MPC to 16-bit fixed point
CKKS_TOLERANCE, MPC_TOLERANCE = 1e-3, 1e-2

LIGHT = ("dp", "ckks", "mpc", "federated")  # skip these for the tests of the runner itself


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[MatrixResult, Path]:
    folder = tmp_path_factory.mktemp("bench")
    result = run_matrix(MatrixConfig.tiny().replace(skip=("federated",)))
    write_files(result, folder)
    return result, folder


def _cell(result: MatrixResult, workload: str, technique: str, setting: str = "") -> Cell:
    return result.cell(workload, technique, setting)


def _n(value: float | None) -> float:
    """A measure that must be there."""
    assert value is not None
    return value


@pytest.mark.slow
def test_every_technique_gives_a_cell_for_every_workload(tiny: tuple[MatrixResult, Path]) -> None:
    result, _ = tiny
    for workload in result.workloads:
        for technique in result.techniques:
            assert any(c.workload == workload and c.technique == technique
                       for c in result.cells), (workload, technique)
    assert _cell(result, "mlp", "plaintext").status == OK
    for technique in ("dp-output", "dp-sgd", "ckks-per-sample", "ckks-batched", "mpc-2"):
        ran = [c for c in result.cells if c.technique == technique and c.status == OK]
        assert ran, f"no {technique} cell ran"


@pytest.mark.slow
def test_the_run_writes_every_file(tiny: tuple[MatrixResult, Path]) -> None:
    _, folder = tiny
    for name in FILES:
        assert (folder / name).stat().st_size > 0, name
    for name in FILES:
        if name.endswith(".png"):
            assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_json_and_csv_parse_with_the_expected_columns(tiny: tuple[MatrixResult, Path]) -> None:
    result, folder = tiny
    data = json.loads((folder / "results.json").read_text())
    assert {"config", "machine", "cells", "workloads", "techniques"} <= set(data)
    assert len(data["cells"]) == len(result.cells)
    for cell in data["cells"]:
        assert set(COLUMNS) <= set(cell)
    with (folder / "results.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert len(rows) == len(result.cells)
    assert {r["status"] for r in rows} <= {OK, SKIPPED, FAILED}


@pytest.mark.slow
def test_reports_name_the_machine(tiny: tuple[MatrixResult, Path]) -> None:
    result, folder = tiny
    report = (folder / "report.md").read_text()
    data = json.loads((folder / "results.json").read_text())
    for details in (result.machine, data["machine"]):
        assert details["cores"] >= 1 and details["cpu"]
        assert details["libraries"]["tenseal"] and details["libraries"]["torch"]
    assert "## Machine" in report and result.machine["cpu"] in report
    assert "torch" in report and "## The matrix" in report


@pytest.mark.slow
def test_ratios_are_against_the_plaintext_cell_of_the_same_run(
        tiny: tuple[MatrixResult, Path]) -> None:
    result, _ = tiny
    checked = 0
    for cell in result.cells:
        if cell.status != OK or cell.seconds_median is None:
            continue
        plain = _cell(result, cell.workload, "plaintext")
        assert cell.overhead == pytest.approx(cell.seconds_median / _n(plain.seconds_median))
        if cell.accuracy is not None and plain.accuracy is not None:
            assert cell.accuracy_delta == pytest.approx(cell.accuracy - plain.accuracy)
        checked += 1
    assert checked > 10


@pytest.mark.slow
def test_each_measured_cell_has_its_numbers(tiny: tuple[MatrixResult, Path]) -> None:
    result, _ = tiny
    for cell in result.cells:
        if cell.status != OK:
            continue
        assert cell.repeats >= 1 and cell.rows
        assert _n(cell.seconds_min) <= _n(cell.seconds_median) <= _n(cell.seconds_max)
        assert cell.throughput and math.isfinite(cell.throughput)
        assert cell.privacy
    ckks = _cell(result, "mlp", "ckks-batched")
    assert ckks.key_bytes and ckks.ciphertext_bytes and ckks.wire_bytes == ckks.ciphertext_bytes
    mpc = _cell(result, "mlp", "mpc-2")
    assert mpc.wire_bytes and mpc.rounds and len(mpc.details["per_party"]) == 2
    assert all(p["bytes_sent"] > 0 for p in mpc.details["per_party"])


@pytest.mark.slow
def test_private_cells_keep_the_plaintext_outputs(tiny: tuple[MatrixResult, Path]) -> None:
    result, _ = tiny
    for technique in ("ckks-per-sample", "ckks-batched"):
        for workload in ("dot-16", "matmul-16", "mlp", "cnn"):
            cell = _cell(result, workload, technique)
            assert cell.status == OK, cell.reason
            assert _n(cell.error) < CKKS_TOLERANCE, (workload, technique)
    for workload in ("dot-16", "matmul-16", "mlp", "cnn"):
        cell = _cell(result, workload, "mpc-2")
        assert cell.status == OK, cell.reason
        assert _n(cell.error) < MPC_TOLERANCE, workload
    for workload in ("mlp", "cnn"):
        assert _cell(result, workload, "ckks-batched").agreement == 1.0


@pytest.mark.slow
def test_dp_cells_carry_their_epsilon(tiny: tuple[MatrixResult, Path]) -> None:
    result, _ = tiny
    config = result.config
    release = _cell(result, "dot-16", "dp-output", f"eps={config.dp_epsilon:g}")
    assert release.epsilon == config.dp_epsilon and _n(release.error) > 0  # noise was added
    for epsilon in config.dp_epsilons:
        cell = _cell(result, "mlp-train", "dp-sgd", f"eps={epsilon:g}")
        assert cell.status == OK, cell.reason
        assert 0 < _n(cell.epsilon) <= epsilon + 1e-6


@pytest.mark.slow
def test_cells_that_cannot_run_say_why(tiny: tuple[MatrixResult, Path]) -> None:
    result, folder = tiny
    ckks = _cell(result, "mlp-train", "ckks-batched")
    assert ckks.status == SKIPPED and "cannot train" in ckks.reason
    federated = _cell(result, "mlp", "federated")
    assert federated.status == SKIPPED and "skip" in federated.reason
    report = (folder / "report.md").read_text()
    assert "cannot train" in report and "n/a [" in report


# ---- the runner on its own (plaintext only, plus techniques made for the test) -------------


class _Broken(Technique):
    """A column whose every run raises a pets error, and one run that raises another error."""

    key, label, privacy = "broken", "broken", "none"

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        for workload in workloads:
            yield base.guard(self, workload, functools.partial(_raise, workload))


def _raise(workload: Workload) -> Cell:
    if workload.kind == "training":
        raise RuntimeError("not a pets error")
    raise pets.UnsupportedOperationError("this column cannot multiply; use another backend")


class _Absent(Technique):
    key, label, privacy = "absent", "absent", "none"

    def missing(self) -> str | None:
        return base.missing_module("no_such_engine_for_pets", "absent")

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        raise AssertionError("a missing technique must not run")


def test_a_failing_or_missing_technique_leaves_reasons_and_the_run_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, "broken", lambda config: [_Broken()])
    monkeypatch.setitem(base._REGISTRY, "absent", lambda config: [_Absent()])
    result = run_matrix(MatrixConfig.tiny().replace(skip=LIGHT))
    assert next(iter(result.techniques)) == "plaintext"  # the reference runs first
    assert all(c.status == OK for c in result.cells if c.technique == "plaintext")
    broken = _cell(result, "mlp", "broken")
    assert broken.status == FAILED
    assert broken.reason == ("UnsupportedOperationError: this column cannot multiply; use "
                             "another backend")
    assert _cell(result, "mlp-train", "broken").reason == "RuntimeError: not a pets error"
    absent = [c for c in result.cells if c.technique == "absent"]
    assert len(absent) == len(result.workloads)
    assert all(c.status == SKIPPED and "no_such_engine_for_pets is not installed" in c.reason
               and "pip install 'pets[absent]'" in c.reason for c in absent)
    assert all(c.status == SKIPPED and "left out" in c.reason
               for c in result.cells
               if c.technique in ("dp-output", "dp-sgd", "mpc-2", "federated"))


def test_skip_refuses_unknown_techniques_and_lists_the_known_ones() -> None:
    with pytest.raises(pets.ParameterError, match=r"no technique called mcp; --skip takes "
                       r"one of: ckks, ckks-batched, ckks-per-sample, dp, dp-output, dp-sgd, "
                       r"federated, mpc, mpc-2, mpc-3$"):
        check_skip(["mcp"], MatrixConfig.full())
    with pytest.raises(pets.ParameterError, match="plaintext cannot be left out: it is the "
                       "baseline every ratio divides by"):
        check_skip(["plaintext"], MatrixConfig.full())


def test_cli_parses_the_matrix_and_the_detailed_sections() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--out", "there", "--skip", "mpc"])
    assert (args.quick, args.out, args.skip, args.only) == (True, "there", ["mpc"], None)
    assert build_parser().parse_args(["bench"]).out == "out/bench"
    assert build_parser().parse_args(["bench", "--only", "he"]).only == ["he"]


def test_cli_bench_writes_the_files(tmp_path: Path) -> None:
    argv = ["bench", "--quick", "--out", str(tmp_path)]
    for family in LIGHT:
        argv += ["--skip", family]
    assert main(argv) == 0
    for name in FILES:
        assert (tmp_path / name).exists(), name
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert {c["technique"] for c in cells} == {"plaintext", "dp-output", "dp-sgd",
                                               "ckks-per-sample",
                                               "ckks-batched", "mpc-2", "mpc-3", "federated"}


@pytest.mark.slow
def test_federated_column_gives_a_cell_per_mode() -> None:
    result = run_matrix(MatrixConfig.tiny().replace(skip=("dp", "ckks", "mpc")))
    modes = {c.setting: c for c in result.cells
             if c.technique == "federated" and c.workload == "mlp-train"}
    assert set(modes) == {"FedAvg", "DP", "DP+HE"}
    for cell in modes.values():
        assert cell.status == OK, cell.reason
        assert cell.wire_bytes and 0 <= _n(cell.accuracy) <= 1 and cell.overhead
    assert modes["FedAvg"].epsilon is None and _n(modes["DP+HE"].epsilon) > 0
    assert _n(modes["DP+HE"].wire_bytes) > _n(modes["DP"].wire_bytes)  # ciphertexts: larger
    inference = _cell(result, "mlp", "federated")
    assert inference.status == SKIPPED and "trains a model" in inference.reason


MODULES = ["pets_benchmarks.machine"] + ["pets_benchmarks.matrix." + name for name in (
    "cells", "config", "report", "tables", "timing", "workloads", "techniques")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
