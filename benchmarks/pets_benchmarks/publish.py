"""Measure and publish: run the sections, keep their results files, rewrite the docs' tables.

``pets bench --record`` runs every section of :data:`~pets_benchmarks.results.SECTIONS`
once (``--section NAME`` for some), saves each results file under ``benchmarks/results``
and rewrites the tables of README.md and docs/ from them; ``pets bench --update-docs``
only rewrites the tables from the files already there. The same from Python, or as
``python -m pets_benchmarks.publish [--record] [--section NAME] [--note TEXT]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pets_benchmarks.doctables import update_docs
from pets_benchmarks.results import RESULTS_DIR, SECTIONS, record

__all__ = ["REPOSITORY", "add_arguments", "main", "publish"]

#: the checkout whose README.md and docs/ the tables are written into
REPOSITORY = RESULTS_DIR.parents[1]


def publish(*, run: bool, sections: Sequence[str] = (), note: str = "",
            root: Path = REPOSITORY) -> list[Path]:
    """Run ``sections`` (all if empty) when ``run``, then rewrite the tables; the files
    written."""
    written = record(sections or tuple(SECTIONS), note=note) if run else []
    return written + update_docs(root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--record``, ``--update-docs``, ``--section`` and ``--note`` (shared with
    ``pets bench``)."""
    parser.add_argument("--record", action="store_true",
                        help="run the sections the docs quote, keep their results files in "
                             "benchmarks/results and rewrite the docs' tables from them")
    parser.add_argument("--update-docs", action="store_true",
                        help="rewrite the results tables of README.md and docs/ from the "
                             "results files, without running anything")
    parser.add_argument("--section", action="append", choices=list(SECTIONS),
                        help="with --record: only this section (repeat for several)")
    parser.add_argument("--note", default="",
                        help="with --record: a note kept in the results files (e.g. what "
                             "else ran on the machine)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pets_benchmarks.publish",
                                     description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    for path in publish(run=args.record, sections=args.section or (), note=args.note):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
