"""The matrix as a PNG heat map: rows stage/threat, columns techniques (matplotlib, Agg canvas).

A measured cell's colour is the attack's advantage over chance (white 0, dark red 1)
and its text the metric and its 95% interval; an *inconclusive* one (interval wider than
0.3, or its row at chance: :mod:`~pets_benchmarks.assess.reading`) is grey and says so;
*impossible* cells are green, the others grey with their status.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pets_benchmarks.assess.runner import Matrix

__all__ = ["write_heatmap"]

IMPOSSIBLE = (0.80, 0.92, 0.80, 1.0)
OTHER = (0.93, 0.93, 0.93, 1.0)
SHORT = {"digits named": "named", "records rebuilt": "rebuilt", "classes recognised": "recognised",
         "meta-classifier accuracy": "accuracy", "AUC": "AUC"}


def write_heatmap(matrix: Matrix, path: Path) -> Path:
    """Draw ``matrix`` into ``path`` (PNG) and return the path."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from pets_benchmarks.assess.reading import inconclusive, row_baseline
    from pets_benchmarks.assess.runner import STAGES

    rows = [(stage, threat) for stage, threats in STAGES.items() for threat in threats]
    columns = matrix.techniques
    colormap = matplotlib.colormaps["Reds"]
    image = [[OTHER for _ in columns] for _ in rows]
    figure = Figure(figsize=(2.0 + 1.7 * len(columns), 1.2 + 0.85 * len(rows)))
    FigureCanvasAgg(figure)  # draws without pyplot: no global backend is touched
    axes = figure.add_subplot()
    for i, (stage, threat) in enumerate(rows):
        for j, technique in enumerate(columns):
            try:
                cell = matrix.cell(stage, threat, technique)
            except KeyError:
                text, colour = "-", OTHER
            else:
                if cell.status == "measured" and cell.leakage is not None:
                    colour = colormap(0.05 + 0.9 * cell.leakage.advantage)
                    name = SHORT.get(cell.leakage.metric, cell.leakage.metric)
                    text = f"{name}\n{cell.leakage.value:.2f}"
                    if cell.leakage.interval is not None:
                        low, high = cell.leakage.interval
                        text += f"\n[{low:.2f}, {high:.2f}]"
                    if inconclusive(cell, row_baseline(matrix.cells, cell)):
                        colour, text = OTHER, "inconclusive\n" + text
                elif cell.status == "impossible":
                    colour, text = IMPOSSIBLE, "impossible"
                else:
                    colour, text = OTHER, cell.status.replace("not applicable", "n/a")
            image[i][j] = colour
            dark = colour != OTHER and colour != IMPOSSIBLE and sum(colour[:3]) < 1.6
            axes.text(j, i, text, ha="center", va="center", fontsize=8,
                      color="white" if dark else "black")
    axes.imshow(image, aspect="auto")
    axes.set_xticks(range(len(columns)), columns, rotation=20, ha="right", fontsize=9)
    axes.set_yticks(range(len(rows)), [f"{s}: {t}" for s, t in rows], fontsize=9)
    axes.set_xticks([x - 0.5 for x in range(1, len(columns))], minor=True)
    axes.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    axes.grid(which="minor", color="white", linewidth=2)
    axes.tick_params(which="minor", length=0)
    axes.set_title(f"pets assess ({matrix.config.name}): attack advantage over chance",
                   fontsize=11)
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), colormap), ax=axes, fraction=0.03)
    bar.set_label("advantage (0 = a guess, 1 = full)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
