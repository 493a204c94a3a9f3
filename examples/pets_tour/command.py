"""``pets demo``: the tour, registered in the ``pets.commands`` entry-point group."""

from __future__ import annotations

import argparse

from pets.cli import Command, say

__all__ = ["DEMO"]


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    p.add_argument("--skip-bench", action="store_true", help="leave out the overhead section")


def _run(args: argparse.Namespace) -> int:
    from pets_tour import run_tour

    run_tour(quick=args.quick, skip_bench=args.skip_bench, say=say)
    return 0


DEMO = Command("demo", "tour: encrypted inference, MPC, federated, DP, DP-SGD, attacks, cost",
               _configure, _run)
