"""Run the matrix, write its files and print it: what ``pets bench`` calls.

>>> from pets_benchmarks.matrix.report import FILES
>>> FILES[:3]
('report.md', 'results.json', 'results.csv')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pets
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.runner import MatrixResult, run_matrix
from pets_benchmarks.matrix.tables import summary
from pets_benchmarks.matrix.techniques import make_techniques
from pets_benchmarks.matrix.writers import machine_lines, write_csv, write_json, write_markdown

__all__ = ["FILES", "bench", "check_skip", "print_matrix", "write_files"]

#: what a run writes into its folder
FILES = ("report.md", "results.json", "results.csv", "overhead.png", "accuracy_cost.png",
         "privacy_utility.png")


def write_files(result: MatrixResult, folder: Path | str) -> list[Path]:
    """Every file of :data:`FILES` (the plots when matplotlib is installed) in ``folder``."""
    from pets_benchmarks.matrix.plots import write_plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = write_plots(result, folder)
    return [write_markdown(result, folder / "report.md", plots),
            write_json(result, folder / "results.json"),
            write_csv(result, folder / "results.csv"), *plots]


def print_matrix(result: MatrixResult, echo: Callable[[str], None] = print) -> None:
    """The summary matrix and the reasons cells did not run, on the terminal."""
    header, rows, reasons = summary(result.cells, result.workloads, list(result.techniques))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(line) for r in [header, *rows] for line in r[i].split("\n"))
                  for i in range(len(header))]
        echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            echo("  ".join(c.replace("\n", "; ").ljust(w)
                           for c, w in zip(row, widths, strict=True)))
    else:
        table = Table(title=f"pets bench ({result.config.name}): time against plaintext, "
                      "and what each technique kept", show_lines=True)
        for name in header:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console = Console()
        if not console.is_terminal:  # a file or a pipe: do not squeeze to 80 columns
            console = Console(width=150)
        console.print(table)
    for i, reason in enumerate(reasons, 1):
        echo(f"[{i}] {reason}")
    for line in machine_lines(result.machine):
        echo(line)


def check_skip(skip: Sequence[str], config: MatrixConfig) -> None:
    """Refuse technique names that name no column, listing those that do."""
    if "plaintext" in skip:
        raise pets.ParameterError("plaintext cannot be left out: it is the baseline every "
                                  "ratio divides by; skip other techniques only")
    known = {key for t in make_techniques(config) for key in (t.key, t.family)} - {"plaintext"}
    unknown = sorted(set(skip) - known)
    if unknown:
        raise pets.ParameterError(
            f"no technique called {', '.join(unknown)}; --skip takes one of: "
            f"{', '.join(sorted(known))}")


def bench(*, quick: bool = False, out: Path | str = "out/bench", skip: Sequence[str] = (),
          config: MatrixConfig | None = None, progress: bool = True,
          echo: Callable[[str], None] = print) -> MatrixResult:
    """Run the matrix (``quick``: the small preset; ``skip``: techniques to leave out),
    print it, write the files to ``out``."""
    config = config or (MatrixConfig.quick() if quick else MatrixConfig.full())
    if skip:
        check_skip(skip, config)
        config = config.replace(skip=tuple(config.skip) + tuple(skip))
    result = run_matrix(config, progress=progress)
    print_matrix(result, echo)
    written = write_files(result, out)
    echo(f"{len(result.cells)} cells in {result.seconds:.0f} s; wrote "
         + ", ".join(str(p) for p in written))
    return result
