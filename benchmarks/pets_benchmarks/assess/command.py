"""What ``pets assess [--quick] [--out DIR]`` runs: a progress bar, the run, the three files.

``PETS_ASSESS_SIZE=tiny`` (or ``quick``/``full``) picks a preset whatever the flags say
(the test hook); ``PETS_ASSESS_MPC=0`` leaves the MPC party processes out.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from pets_benchmarks.assess.config import from_environment, full, quick
from pets_benchmarks.assess.report import leak_text, write_reports
from pets_benchmarks.assess.runner import STAGES, run_assessment

__all__ = ["main"]


def _tqdm() -> Any:
    """tqdm's class when it is installed and stderr is a terminal, else ``None`` (plain lines:
    no carriage returns in a log file or CI)."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm


class _Bar:
    """A progress bar over the run's steps (the runner also logs each step)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, step: str, done: int, total: int) -> None:
        tqdm = _tqdm()
        if tqdm is None:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, unit="step", file=sys.stderr,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]")
        self.bar.set_description_str(step[:48])
        self.bar.update(done - self.bar.n)
        if done == total:
            self.bar.close()


class _AboveTheBar(logging.Handler):
    """Log lines printed above the progress bar (``tqdm.write``), not through it."""

    def emit(self, record: logging.LogRecord) -> None:
        line, tqdm = self.format(record), _tqdm()
        if tqdm is None:
            print(line, file=sys.stderr, flush=True)
        else:
            tqdm.write(line, file=sys.stderr)


def _log_above_the_bar() -> None:
    logger = logging.getLogger("pets_benchmarks")
    if not any(isinstance(h, _AboveTheBar) for h in logger.handlers):
        handler = _AboveTheBar()
        handler.setFormatter(logging.Formatter("[pets assess %(asctime)s] %(message)s",
                                               datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # engines (CrypTen) configure the root logger too


def main(*, quick_run: bool, out: str, environ: Mapping[str, str] | None = None) -> int:
    """Run the assessment and write ``assessment.md``/``.json``/``.png`` into ``out``."""
    config = from_environment(quick() if quick_run else full(),
                              os.environ if environ is None else environ)
    _log_above_the_bar()
    print(f"pets assess ({config.name}): {len(config.techniques)} techniques x "
          f"{sum(len(t) for t in STAGES.values())} stage/threat rows; writing to {out}",
          flush=True)
    matrix = run_assessment(config, progress=_Bar())
    paths = write_reports(matrix, out)
    width = max(len(t) for t in config.techniques)
    for stage, threats in STAGES.items():
        for threat in threats:
            print(f"\n{stage}: {threat}")
            for technique in config.techniques:
                shown = leak_text(matrix.cell(stage, threat, technique), matrix.cells)
                print(f"  {technique:<{width}}  {shown}")
    failed = [c for c in matrix.cells if c.status == "failed"]
    print(f"\n{matrix.seconds:.0f} s; {len(failed)} failed cell(s). Wrote "
          + ", ".join(str(p) for p in paths.values()), flush=True)
    return 0
