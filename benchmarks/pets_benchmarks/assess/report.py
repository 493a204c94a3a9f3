"""Write the matrix into a folder: ``assessment.md``, ``assessment.json``, ``assessment.png``.

The Markdown has the leakage matrix (stages and threats by techniques), the cost matrix
(stages by techniques, against plaintext on the same work), every cell's evidence or
reason, the machine and the configuration. The JSON holds the same, cell by cell
(``Cell.to_dict``); :func:`load_matrix` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pets_benchmarks.assess.cells import Cell, Cost
from pets_benchmarks.assess.reading import inconclusive, row_baseline
from pets_benchmarks.assess.runner import STAGES, Matrix

__all__ = ["evidence_lines", "leak_text", "load_matrix", "markdown", "write_reports"]

READING = """\
Each cell is one technique against one threat of one stage of the workflow. A
*measured* cell gives the attack's metric with its 95% interval; the heat map colours
its advantage over chance (0 = the attacker does no better than a guess, 1 = it learns
everything the metric can show). A measured cell is *inconclusive* (grey, not
coloured) when its interval is wider than 0.3 or when the attack is at chance even
without protection. *impossible* means this run checked the attacker's view: it held
only ciphertexts or random shares, decoding them failed or named digits at chance, and
their bytes passed a test against uniform (the evidence below). *n/a*: the technique
does not address that threat (the reason is below). Costs are against plaintext on the
same work, in the same run."""


def leak_text(cell: Cell, cells: list[Cell]) -> str:
    """A cell of the leakage table: the metric and its interval, marked *inconclusive*
    where :func:`~pets_benchmarks.assess.reading.inconclusive` says so."""
    if cell.status == "measured" and cell.leakage is not None:
        text = f"{cell.leakage.value:.2f} [{cell.leakage.interval[0]:.2f}, " \
               f"{cell.leakage.interval[1]:.2f}]" if cell.leakage.interval else \
               f"{cell.leakage.value:.2f}"
        if inconclusive(cell, row_baseline(cells, cell)):
            return f"inconclusive: {text}"
        return text
    return {"impossible": "**impossible** (checked)", "not applicable": "n/a"}.get(
        cell.status, cell.status)


def _leak_text(cell: Cell, cells: list[Cell]) -> str:
    text = leak_text(cell, cells)
    if cell.status == "measured" and cell.leakage is not None:
        return f"{cell.leakage.metric} {text}"
    return text


def _cost_text(cost: Cost | None) -> str:
    return "-" if cost is None else cost.short()


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


def _stage_costs(matrix: Matrix, stage: str) -> dict[str, Cost | None]:
    costs: dict[str, Cost | None] = {}
    for technique in matrix.techniques:
        costs[technique] = next((c.cost for c in matrix.cells if c.stage == stage
                                 and c.technique == technique and c.cost is not None), None)
    return costs


def markdown(matrix: Matrix) -> str:
    """The matrix as a Markdown document."""
    m, config = matrix.machine, matrix.config
    versions = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines = [
        f"# pets privacy assessment ({config.name})", "",
        f"Run {matrix.started}, {matrix.seconds:.0f} s on {m['cpu']} ({m['cores']} cores, "
        f"{(m['memory_bytes'] or 0) / 2**30:.1f} GiB, load average at start "
        f"{m['load_average_at_start']}); {m['os']}, Python {m['python']}.", "",
        f"Libraries: {versions}.", "", READING, "", "## Leakage (attack success)", "",
    ]
    head = ["stage", "threat", *matrix.techniques]
    rows = [[stage, threat, *(_leak_text(matrix.cell(stage, threat, t), matrix.cells)
                               for t in matrix.techniques)]
            for stage, threats in STAGES.items() for threat in threats]
    lines += _table(head, rows)
    lines += ["", "## Cost (against plaintext on the same work)", ""]
    cost_rows = []
    works = []
    for stage in STAGES:
        costs = _stage_costs(matrix, stage)
        cost_rows.append([stage, *(_cost_text(costs[t]) for t in matrix.techniques)])
        works += [f"- {stage}, {t}: {c.work}" for t, c in costs.items() if c is not None]
    lines += _table(["stage", *matrix.techniques], cost_rows)
    lines += ["", "Work measured:", "", *works, "", "## Cells: evidence, reasons, details", ""]
    for cell in matrix.cells:
        lines += _cell_section(cell, matrix.cells)
    lines += ["## Notes", "", *(f"- {note}" for note in matrix.notes), "",
              "## Configuration", "", "```json",
              json.dumps(config.to_dict(), indent=1), "```", ""]
    return "\n".join(lines)


def _cell_section(cell: Cell, cells: list[Cell]) -> list[str]:
    title = f"### {cell.stage} / {cell.threat} / {cell.technique}: {cell.status}"
    lines = [title, ""]
    if cell.note:
        lines += [cell.note, ""]
    if cell.leakage is not None:
        lines.append(f"- {cell.leakage.short()} (chance {cell.leakage.chance:g}, advantage "
                     f"{cell.leakage.advantage:.2f})")
        why = inconclusive(cell, row_baseline(cells, cell))
        if why:
            lines.append(f"- inconclusive: {why}")
        lines += [f"- {k}: {_value(v)}" for k, v in cell.leakage.details.items()]
    lines += evidence_lines(cell)
    if cell.cost is not None:
        lines.append(f"- cost: {cell.cost.short()} ({cell.cost.work})")
        lines += [f"  - {k}: {_value(v)}" for k, v in cell.cost.details.items()]
    return [*lines, ""]


def evidence_lines(cell: Cell) -> list[str]:
    """What the attacker held and what this run checked of it, one line each."""
    if not cell.evidence:
        return []
    return ["- evidence, what the attacker held:",
            *(f"  - {k}: {_value(v)}" for k, v in cell.evidence.items())]


def write_reports(matrix: Matrix, folder: str | Path) -> dict[str, Path]:
    """Write the three files into ``folder`` (created if missing); return their paths."""
    from pets_benchmarks.assess.heatmap import write_heatmap

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "assessment.md", "json": out / "assessment.json",
             "png": out / "assessment.png"}
    paths["markdown"].write_text(markdown(matrix), encoding="utf-8")
    paths["json"].write_text(json.dumps(matrix.to_dict(), indent=1, allow_nan=False),
                             encoding="utf-8")
    write_heatmap(matrix, paths["png"])
    return paths


def load_matrix(path: str | Path) -> dict[str, Any]:
    """The JSON back, with its cells as :class:`Cell` objects under ``"cells"``."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    data["cells"] = [Cell.from_dict(cell) for cell in data["cells"]]
    return data
