"""The results tables of README.md and docs/, written from the results files, never by hand.

A table lives between two markers in a Markdown file::

    <!-- results:matrix -->
    ...written by update_docs...
    <!-- /results:matrix -->

:data:`TABLES` names what each block holds and renders it from the results files of
:mod:`pets_benchmarks.results` (``benchmarks/results/*.json``), with a line naming the
run, the machine and whether it was loaded. :func:`update_docs` (``pets bench
--update-docs``) rewrites every block; :func:`stale_blocks` lists the blocks that
disagree with their files (the test suite fails on any).

>>> blocks("a\\n<!-- results:mpc-training -->\\nold\\n<!-- /results:mpc-training -->\\nb")
[('mpc-training', 'old\\n')]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pets_benchmarks.results import RESULTS_DIR, load

__all__ = ["DOCUMENTS", "TABLES", "blocks", "render", "stale_blocks", "update_docs"]

#: the Markdown files whose results tables are written here (relative to the repository)
DOCUMENTS = ("README.md", "docs/bench.md", "docs/assess.md", "docs/mpc.md")

_BLOCK = re.compile(r"<!-- results:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->",
                    re.DOTALL)

Documents = dict[str, dict[str, Any]]


def blocks(text: str) -> list[tuple[str, str]]:
    """``(name, body)`` of every results block in ``text``."""
    return [(m.group("name"), m.group("body")) for m in _BLOCK.finditer(text)]


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def clean(text: str) -> str:
        return text.replace("|", "/").replace("\n", "<br>")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]


def _dicts(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    columns = list(columns or (rows[0] if rows else []))
    return _table(columns, [[_number(row.get(c)) for c in columns] for row in rows])


def _caption(document: dict[str, Any]) -> str:
    """Which command measured the block, when, on what, and whether the machine was loaded."""
    m = document["machine"]
    start, end = m.get("load_average_at_start"), document.get("load_average_at_end")
    parts = [f"{value[0]:g} at the {when}" for value, when in ((start, "start"), (end, "end"))
             if value]
    load = "load average " + ", ".join(parts) if parts else "load not recorded"
    state = ("the machine was **loaded** (other jobs on its cores): times are inflated, "
             "ratios within the run less so" if document.get("loaded")
             else "the machine was otherwise idle")
    memory = (m.get("memory_bytes") or 0) / 2**30
    commit = f" at commit {document['commit']}" if document.get("commit") else ""
    text = (f"*`{document['command']}`{commit}, {document['recorded']}, "
            f"{document['seconds']:.0f} s: "
            f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {memory:.1f} GiB, "
            f"{m['os']}, Python {m['python']}; {load}: {state}.")
    note = document.get("note", "").rstrip(".")
    if note:
        text += f" {note[0].upper()}{note[1:]}."
    return text + f" From `benchmarks/results/{document['section']}.json`.*"


def _matrix(section: str) -> Callable[[Documents], list[str]]:
    def render(documents: Documents) -> list[str]:
        from pets_benchmarks.matrix.runner import MatrixResult
        from pets_benchmarks.matrix.tables import summary

        document = documents[section]
        result = MatrixResult.from_dict(document["data"])
        header, rows, reasons = summary(result.cells, result.workloads, list(result.techniques))
        lines = [_caption(document), "", *_table(header, rows), ""]
        lines += [f"{i}. {reason}" for i, reason in enumerate(reasons, 1)]
        return lines

    return render


#: the full matrix's cells that docs/bench.md lists with every measure
DETAILED = (("mlp", "plaintext"), ("mlp", "ckks-per-sample"), ("mlp", "ckks-batched"),
            ("mlp", "mpc-2"), ("mlp", "mpc-3"), ("dot-1024", "ckks-per-sample"),
            ("dot-1024", "ckks-batched"), ("mlp-train", "plaintext"), ("mlp-train", "dp-sgd"),
            ("mlp-train", "mpc-2"), ("mlp-train", "mpc-3"), ("mlp-train", "federated"))


def _matrix_cells(documents: Documents) -> list[str]:
    from pets_benchmarks.matrix.runner import MatrixResult
    from pets_benchmarks.matrix.tables import DETAIL_COLUMNS, detail_rows

    document = documents["matrix"]
    result = MatrixResult.from_dict(document["data"])
    chosen = [c for key in DETAILED for c in result.cells if (c.workload, c.technique) == key]
    return [_caption(document), "", *_table(DETAIL_COLUMNS, detail_rows(chosen))]


def _assess_cells(document: dict[str, Any]) -> list[Any]:
    from pets_benchmarks.assess.cells import Cell

    return [Cell.from_dict(c) for c in document["data"]["cells"]]


def _assess_parts(documents: Documents) -> tuple[dict[str, Any], list[Any],
                                                 dict[str, list[str]], list[str]]:
    """The assessment's document, cells, stages (with their threats) and techniques."""
    document = documents["assess"]
    data = document["data"]
    return document, _assess_cells(document), data["stages"], data["techniques"]


def _assess(documents: Documents) -> list[str]:
    from pets_benchmarks.assess.report import leak_text

    document, cells, stages, techniques = _assess_parts(documents)
    rows = []
    for stage, threats in stages.items():
        for threat in threats:
            found = {c.technique: c for c in cells if (c.stage, c.threat) == (stage, threat)}
            metric = next((c.leakage.metric for c in found.values() if c.leakage), "")
            rows.append([f"{stage} / {threat}" + (f" ({metric})" if metric else ""),
                         *(leak_text(found[t], cells) if t in found else "-"
                           for t in techniques)])
    return [_caption(document), "", *_table(["stage / threat (metric)", *techniques], rows)]


def _assess_cost(documents: Documents) -> list[str]:
    document, cells, stages, techniques = _assess_parts(documents)
    rows = []
    for stage in stages:
        row = [stage]
        for technique in techniques:
            cost = next((c.cost for c in cells if c.stage == stage and c.technique == technique
                         and c.cost is not None), None)
            row.append("-" if cost is None else cost.short())
        rows.append(row)
    return [_caption(document), "", *_table(["stage", *techniques], rows)]


def _assess_evidence(documents: Documents) -> list[str]:
    """The evidence of the first *impossible* cell (the MPC query view when there is one)."""
    from pets_benchmarks.assess.report import evidence_lines

    document = documents["assess"]
    cells = _assess_cells(document)
    chosen = sorted((c for c in cells if c.status == "impossible"),
                    key=lambda c: (c.technique != "MPC (2 parties)", c.stage != "inference"))
    if not chosen:
        return [_caption(document), "", "No cell of this run was *impossible*."]
    cell = chosen[0]
    return [_caption(document), "", "```text",
            f"### {cell.stage} / {cell.threat} / {cell.technique}: {cell.status}", "",
            cell.note, "", *evidence_lines(cell), "```"]


def _mpc(key: str) -> Callable[[Documents], list[str]]:
    def render(documents: Documents) -> list[str]:
        document = documents["mpc"]
        data = document["data"]
        lines = [_caption(document), "", *_dicts(data[key])]
        if key == "training" and data.get("same"):
            lines += ["", f"Every training row: {data['same']}."]
        return lines

    return render


def _ratios(ratios: dict[str, Any]) -> list[str]:
    return _table(["measure", "value"], [[k, _number(v)] for k, v in ratios.items()])


def _he(section: str) -> Callable[[Documents], list[str]]:
    def render(documents: Documents) -> list[str]:
        document = documents[section]
        data = document["data"]
        return [_caption(document), "", *_dicts(data["rows"]), "", *_ratios(data["ratios"])]

    return render


#: block name -> (results files it reads, its renderer)
TABLES: dict[str, tuple[tuple[str, ...], Callable[[Documents], list[str]]]] = {
    "matrix": (("matrix",), _matrix("matrix")),
    "matrix-quick": (("matrix-quick",), _matrix("matrix-quick")),
    "matrix-cells": (("matrix",), _matrix_cells),
    "assess": (("assess",), _assess),
    "assess-cost": (("assess",), _assess_cost),
    "assess-evidence": (("assess",), _assess_evidence),
    "mpc-inference": (("mpc",), _mpc("inference")),
    "mpc-training": (("mpc",), _mpc("training")),
    "he": (("he",), _he("he")),
    "he-models": (("he-models",), _he("he-models")),
}


def render(name: str, folder: Path = RESULTS_DIR) -> str:
    """The body of block ``name``, from the results files in ``folder``."""
    if name not in TABLES:
        from pets.errors import ParameterError

        raise ParameterError(f"no results table called {name!r}; the tables are: "
                             f"{', '.join(TABLES)}")
    sections, renderer = TABLES[name]
    return "\n".join(renderer({s: load(s, folder) for s in sections})) + "\n"


def _rewrite(text: str, folder: Path) -> str:
    return _BLOCK.sub(lambda m: (f"<!-- results:{m.group('name')} -->\n"
                                 f"{render(m.group('name'), folder)}"
                                 f"<!-- /results:{m.group('name')} -->"), text)


def update_docs(root: Path | str, folder: Path = RESULTS_DIR,
                documents: Sequence[str] = DOCUMENTS) -> list[Path]:
    """Rewrite every results block of ``documents`` under ``root``; the files changed."""
    changed = []
    for name in documents:
        path = Path(root) / name
        text = path.read_text()
        new = _rewrite(text, folder)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def stale_blocks(root: Path | str, folder: Path = RESULTS_DIR,
                 documents: Sequence[str] = DOCUMENTS) -> list[str]:
    """``file: block`` for each block whose text differs from what its results file gives."""
    stale = []
    for name in documents:
        text = (Path(root) / name).read_text()
        stale += [f"{name}: {block}" for block, body in blocks(text)
                  if body != render(block, folder)]
    return stale
