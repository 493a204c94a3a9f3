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


#: one marker per technique, so that no two techniques share a look even where the
#: colour map repeats
MARKERS = "os^DvP*Xh<>p8d"


def _styles(keys: list[str]) -> dict[str, tuple[Any, str]]:
    """A distinct (colour, marker) pair per key."""
    colors = _colors(keys)
    return {key: (colors[key], MARKERS[i % len(MARKERS)]) for i, key in enumerate(keys)}


def _short(cell: Cell) -> str:
    """The label written beside a point: the technique and its setting."""
    return f"{cell.technique} {cell.setting}".strip()


#: where a label may go around its point (points), tried in order
OFFSETS = ((6, 5), (6, -12), (-6, 5), (-6, -12), (6, 15), (6, -22), (-6, 15), (-6, -22),
           (6, 25), (6, -32), (-6, 25), (-6, -32))


def _label_points(ax: Any, points: list[tuple[float, float, str]]) -> None:
    """Write each text beside its point where it overlaps no label already written (the
    first free place of :data:`OFFSETS`; the last one tried if none is free)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    taken: list[Any] = []
    for x, y, text in points:
        label = None
        for dx, dy in OFFSETS:
            if label is not None:
                label.remove()
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                                fontsize=7, ha="left" if dx > 0 else "right",
                                va="bottom" if dy > 0 else "top")
            box = label.get_window_extent(renderer).expanded(1.02, 1.1)
            if not any(box.overlaps(other) for other in taken):
                break
        if label is not None:
            taken.append(label.get_window_extent(renderer))


def _curve(cell: Cell) -> tuple[str, str]:
    """The curve a DP cell lies on: its workload and technique, and for federated learning
    its mode (the modes are not points of one curve)."""
    if cell.technique == "federated":
        return cell.workload, f"federated {cell.setting}"
    return cell.workload, cell.technique


def _accuracy_cost(result: MatrixResult, path: Path) -> Path:
    plt = _pyplot()
    cells = _model_cells(result)
    workloads = [w for w in result.workloads if any(c.workload == w for c in cells)]
    techniques = [t for t in result.techniques if any(c.technique == t for c in cells)]
    styles = _styles(techniques)
    fig, axes = plt.subplots(1, max(1, len(workloads)), figsize=(4.2 * max(1, len(workloads)), 4.8),
                             squeeze=False, sharey=True)
    for ax, workload in zip(axes[0], workloads, strict=False):
        mine = [c for c in cells if c.workload == workload]
        placed = sorted(((1.0 if c.technique == "plaintext" else float(c.overhead or 0), c)
                         for c in mine if c.technique == "plaintext" or c.overhead),
                        key=lambda pair: (pair[0], pair[1].key))
        for cost, cell in placed:
            color, marker = styles[cell.technique]
            ax.scatter(cost, cell.accuracy, color=color, marker=marker, s=60, zorder=3,
                       edgecolors="black", linewidths=0.5)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.12)
        _label_points(ax, [(cost, cell.accuracy or 0.0, _short(cell)) for cost, cell in placed])
        ax.set_title(workload, fontsize=10)
        ax.set_xlabel("time / plaintext time (log)")
        ax.grid(True, alpha=0.3)
        if len(mine) == 1:
            ax.text(0.5, 0.05, "one cell ran", transform=ax.transAxes, ha="center", fontsize=8)
    axes[0][0].set_ylabel("test accuracy")
    handles = [plt.Line2D([], [], marker=styles[t][1], ls="", color=styles[t][0],
                          markeredgecolor="black", label=t) for t in techniques]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=min(7, len(handles) or 1))
    fig.suptitle(f"Accuracy against cost, one panel per model ({result.config.name} preset; "
                 "same run)", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _privacy_utility(result: MatrixResult, path: Path) -> Path:
    plt = _pyplot()
    cells = _model_cells(result)
    private = [c for c in cells if c.epsilon]
    workloads = [w for w in result.workloads if any(c.workload == w for c in private)]
    curves = sorted({_curve(c) for c in private})
    styles = _styles([f"{w}, {t}" for w, t in curves])
    colors = _colors(workloads)
    fig, ax = plt.subplots(figsize=(10, 5.8))
    single = []
    points: list[tuple[float, float, str]] = []
    for workload, curve in curves:
        mine = sorted((c for c in private if _curve(c) == (workload, curve)),
                      key=lambda c: c.epsilon or 0.0)
        name = f"{workload}, {curve}"
        unit = " (epsilon per client)" if curve.startswith("federated") else ""
        color, marker = styles[name]
        ax.plot([c.epsilon for c in mine], [c.accuracy for c in mine], marker=marker,
                color=color, markersize=8, markeredgecolor="black", label=name + unit)
        points += [(c.epsilon or 0.0, c.accuracy or 0.0,
                    f"{workload} {curve if curve.startswith('federated') else c.setting}: "
                    f"{c.accuracy:.2f}") for c in mine]
        if len(mine) == 1:
            single.append(name)
    plain_levels: dict[float, list[str]] = {}
    for workload in workloads:
        plain = [c for c in cells if c.workload == workload and c.technique == "plaintext"]
        if plain and plain[0].accuracy is not None:
            ax.axhline(plain[0].accuracy, color=colors[workload], ls="--", lw=1)
            plain_levels.setdefault(round(plain[0].accuracy, 3), []).append(workload)
    for level, names in plain_levels.items():
        ax.annotate(f"plaintext {', '.join(names)}: {level:.2f}", (0.01, level),
                    xycoords=("axes fraction", "data"), textcoords="offset points",
                    xytext=(0, 3), fontsize=7, color="dimgrey")
    ax.set_xscale("log")
    from matplotlib import ticker

    config = result.config  # ticks at the targets (the spent epsilons lie just below)
    if private:
        ax.set_xticks(sorted({*config.dp_epsilons, config.dp_epsilon, config.federated_epsilon}))
        low = min(c.epsilon or 1.0 for c in private)
        high = max(c.epsilon or 1.0 for c in private)
        ax.set_xlim(low / 2, high * 2)
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylim(-0.05, 1.1)
    _label_points(ax, points)
    ax.set_xlabel("epsilon (log; delta 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Privacy against utility ({config.name} preset; dashed: plaintext accuracy)")
    if single:
        fig.text(0.01, 0.01, "one epsilon only, a point and not a curve: " + "; ".join(single),
                 ha="left", va="bottom", fontsize=7, wrap=True,
                 bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "grey"})
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "no DP cell ran", transform=ax.transAxes, ha="center")
    ax.grid(True, alpha=0.3)
    fig.tight_layout(rect=(0, 0.07 if single else 0, 1, 1))
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
