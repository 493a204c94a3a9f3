"""PNG plots of a matrix run (matplotlib, Agg: no display needed).

* ``overhead.png``: each cell's time against plaintext's, per workload, on a log scale;
* ``accuracy_cost.png``: what each model cell kept (accuracy) against what it cost;
* ``privacy_utility.png``: accuracy against epsilon for the DP cells, with each
  workload's plaintext accuracy as a line (HE and MPC hide inputs, not outputs: no
  epsilon, plaintext's accuracy up to their approximation error).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pets_benchmarks.matrix.cells import OK, Cell
from pets_benchmarks.matrix.runner import MatrixResult

__all__ = ["write_plots"]

_log = logging.getLogger("pets_benchmarks.matrix")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(keys: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {key: cmap(i % 10) for i, key in enumerate(keys)}


def _overhead(result: MatrixResult, path: Path) -> Path:
    plt = _pyplot()
    techniques = [t for t in result.techniques if t != "plaintext"]
    colors = _colors(techniques)
    workloads = list(result.workloads)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / max(1, len(techniques))
    for j, technique in enumerate(techniques):
        for i, workload in enumerate(workloads):
            cells = [c for c in result.cells if c.workload == workload
                     and c.technique == technique and c.status == OK and c.overhead]
            for k, cell in enumerate(cells):
                x = i - 0.4 + width * (j + 0.5) + (k - (len(cells) - 1) / 2) * width / 4
                ax.scatter(x, cell.overhead, color=colors[technique], s=36, zorder=3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[t], label=t) for t in techniques]
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), workloads, rotation=30, ha="right")
    ax.set_ylabel("time / plaintext time (same run, log)")
    ax.set_title("Overhead per technique against plaintext")
    ax.legend(handles=handles, fontsize=8, ncol=2)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _model_cells(result: MatrixResult) -> list[Cell]:
    return [c for c in result.cells if c.status == OK and c.accuracy is not None]


def _accuracy_cost(result: MatrixResult, path: Path) -> Path:
    plt = _pyplot()
    colors = _colors(list(result.techniques))
    markers = dict(zip(result.workloads, "os^DvP*Xh<>", strict=False))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for cell in _model_cells(result):
        cost = 1.0 if cell.technique == "plaintext" else cell.overhead
        if not cost:
            continue
        ax.scatter(cost, cell.accuracy, color=colors[cell.technique],
                   marker=markers.get(cell.workload, "o"), s=48, zorder=3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[t], label=t)
               for t in result.techniques]
    handles += [plt.Line2D([], [], marker=markers[w], ls="", color="black", label=w)
                for w in result.workloads if w in {c.workload for c in _model_cells(result)}]
    ax.set_xscale("log")
    ax.set_xlabel("time / plaintext time (same run, log)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy against cost (models)")
    ax.legend(handles=handles, fontsize=8, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _privacy_utility(result: MatrixResult, path: Path) -> Path:
    plt = _pyplot()
    cells = _model_cells(result)
    workloads = [w for w in result.workloads if any(c.workload == w for c in cells)]
    colors = _colors(workloads)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for workload in workloads:
        plain = [c for c in cells if c.workload == workload and c.technique == "plaintext"]
        if plain:
            ax.axhline(plain[0].accuracy, color=colors[workload], ls="--", lw=1)
        private = sorted((c for c in cells if c.workload == workload and c.epsilon),
                         key=lambda c: (c.technique, c.epsilon))
        for technique in sorted({c.technique for c in private}):
            mine = [c for c in private if c.technique == technique]
            unit = " (epsilon per client)" if technique == "federated" else ""
            ax.plot([c.epsilon for c in mine], [c.accuracy for c in mine],
                    marker="o" if technique == "dp" else "s", color=colors[workload],
                    label=f"{workload}, {technique}{unit}")
    ax.set_xscale("log")
    from matplotlib import ticker

    config = result.config  # ticks at the targets (the spent epsilons lie just below)
    if any(c.epsilon for c in cells):
        ax.set_xticks(sorted({*config.dp_epsilons, config.dp_epsilon, config.federated_epsilon}))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("epsilon (log; delta 1e-5 for DP-SGD)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Privacy against utility (dashed: plaintext accuracy of the same workload)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "no DP cell ran", transform=ax.transAxes, ha="center")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(result: MatrixResult, folder: Path) -> list[Path]:
    """The three PNGs in ``folder``; none (with a warning) when matplotlib is missing."""
    try:
        _pyplot()
    except ImportError:
        _log.warning("matplotlib is not installed: no plots (pip install 'pets[examples]')")
        return []
    return [_overhead(result, folder / "overhead.png"),
            _accuracy_cost(result, folder / "accuracy_cost.png"),
            _privacy_utility(result, folder / "privacy_utility.png")]
