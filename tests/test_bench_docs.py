"""The results tables of README.md and docs/ are the ones their results files give.

Each table lives between ``<!-- results:NAME -->`` markers and is written by
``pets bench --update-docs`` from ``benchmarks/results/*.json``; a table edited by
hand, or a results file changed without rewriting the docs, fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pets_benchmarks.doctables import DOCUMENTS, TABLES, blocks, render, stale_blocks, update_docs
from pets_benchmarks.results import FORMAT, RESULTS_DIR, SECTIONS, load, loaded, save

import pets

ROOT = Path(__file__).resolve().parents[1]


def test_every_results_table_matches_its_results_file() -> None:
    stale = stale_blocks(ROOT)
    assert not stale, ("tables that disagree with their results files (rewrite them with "
                       f"`pets bench --update-docs`): {stale}")


def test_the_readme_and_guides_take_their_tables_from_results_files() -> None:
    names = {name for document in DOCUMENTS for name, _ in blocks((ROOT / document).read_text())}
    assert names <= set(TABLES)
    readme = {name for name, _ in blocks((ROOT / "README.md").read_text())}
    assert {"assess", "he", "he-models", "mpc-training"} <= readme
    assert readme & {"matrix", "matrix-quick"}  # the technique x workload matrix, one preset


#: the results files kept in the repository
RECORDED = sorted(p.stem for p in RESULTS_DIR.glob("*.json"))


@pytest.mark.parametrize("section", RECORDED)
def test_each_results_file_names_its_run_and_machine(section: str) -> None:
    document = load(section)
    assert document["format"] == FORMAT and document["section"] == section
    machine = document["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["libraries"]["torch"]
    assert isinstance(document["loaded"], bool) and document["seconds"] > 0
    assert document["loaded"] == loaded(machine, document["load_average_at_end"])


def test_a_table_edited_by_hand_is_found(tmp_path: Path) -> None:
    for document in DOCUMENTS:
        (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / document, tmp_path / document)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    body = dict(blocks(text))["mpc-training"]
    readme.write_text(text.replace(body, body.replace("|---|", "|---|\n| typed | in |", 1)))
    assert stale_blocks(tmp_path) == ["README.md: mpc-training"]
    assert update_docs(tmp_path) == [readme]
    assert stale_blocks(tmp_path) == []
    assert readme.read_text() == text


def test_update_docs_writes_a_table_from_a_new_results_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    machine = load("mpc")["machine"]
    rows = [{"training step": "pets fit", "parties": 2, "rounds/step": 29.5,
             "differs from pets": "-"}]
    save("mpc", {"inference": rows, "training": rows, "ratios": {}, "same": "same batches"},
         machine=machine, seconds=12.0, note="a test", folder=results)
    page = tmp_path / "docs" / "mpc.md"
    page.parent.mkdir()
    page.write_text("before\n<!-- results:mpc-training -->\nold\n<!-- /results:mpc-training -->\n")
    assert update_docs(tmp_path, results, documents=("docs/mpc.md",)) == [page]
    text = page.read_text()
    assert "| pets fit | 2 | 29.5 | - |" in text and "old" not in text
    assert "`pets bench --only mpc`" in text and "A test." in text
    assert "Every training row: same batches." in text
    assert json.loads((results / "mpc.json").read_text())["note"] == "a test"


def test_unknown_tables_and_missing_files_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(pets.ParameterError, match="no results table called 'nope'; the "
                       "tables are: matrix, "):
        render("nope")
    with pytest.raises(pets.ParameterError, match=r"no results file .*mpc.json; make it "
                       r"with: pets bench --record --section mpc"):
        render("mpc-training", tmp_path)


def test_the_results_files_live_in_the_repository() -> None:
    assert RESULTS_DIR == ROOT / "benchmarks" / "results"
    assert RECORDED and set(RECORDED) <= set(SECTIONS)
    needed = {section for document in DOCUMENTS
              for name, _ in blocks((ROOT / document).read_text()) for section in TABLES[name][0]}
    assert needed <= set(RECORDED)


def test_pets_bench_takes_record_and_update_docs() -> None:
    from pets.cli import build_parser

    args = build_parser().parse_args(["bench", "--record", "--section", "mpc", "--note", "busy"])
    assert (args.record, args.update_docs, args.section, args.note) == (True, False, ["mpc"],
                                                                        "busy")
    assert build_parser().parse_args(["bench", "--update-docs"]).update_docs


@pytest.mark.parametrize("name", ["pets_benchmarks.results", "pets_benchmarks.doctables",
                                  "pets_benchmarks.checks"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(name))
    assert tried > 0 and failures == 0
