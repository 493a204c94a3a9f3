"""``pets bench`` and ``pets assess``, registered in the ``pets.commands`` entry-point group."""

from __future__ import annotations

import argparse
import json

from pets.cli import Command, heading, say
from pets_benchmarks.publish import add_arguments, publish

__all__ = ["ASSESS", "BENCH", "SECTIONS"]

# --only NAME: the detailed comparison of one technique against its reference
SECTIONS = ("he", "he-models", "dp", "mpc")


def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes, fewer repeats (about 3 minutes on 2 idle cores)")
    p.add_argument("--out", default="out/bench", metavar="DIR",
                   help="folder for report.md, results.json, results.csv and the PNG plots "
                   "(default: out/bench)")
    p.add_argument("--skip", action="append", metavar="TECHNIQUE",
                   help="leave out a technique (dp, ckks, ckks-batched, mpc, mpc-3, "
                   "federated...); repeat for several")
    p.add_argument("--only", action="append", choices=list(SECTIONS),
                   help="instead of the matrix, the detailed comparison of one technique "
                   "(he: the digits MLP against TenSEAL; he-models: the tutorial CNN, a "
                   "CIFAR-size CNN, cores and key sizes; dp: DP-SGD against SGD; mpc: against "
                   "CrypTen); repeat for several")
    p.add_argument("--batch", type=int, default=4096, help="--only he: batched samples")
    p.add_argument("--samples", type=int, default=4, help="--only he: per-sample samples")
    p.add_argument("--json", help="--only: also write the tables and ratios to this JSON file")
    add_arguments(p)  # --record, --update-docs, --section, --note


def _bench(args: argparse.Namespace) -> int:
    """Every technique on the same work against plaintext (the matrix, files in ``--out``);
    with ``--only``, the detailed comparisons against TenSEAL, SGD and CrypTen instead;
    with ``--record`` or ``--update-docs``, the results files and the docs' tables."""
    if args.record or args.update_docs:
        for path in publish(run=args.record, sections=args.section or (), note=args.note):
            say(f"wrote {path}")
        return 0
    if not args.only:
        from pets_benchmarks.matrix import bench as run_matrix

        run_matrix(quick=args.quick, out=args.out, skip=tuple(args.skip or ()))
        return 0
    sections = args.only
    results: dict[str, object] = {}
    if "he" in sections:
        from pets_benchmarks.he import run_he

        heading("HE (CKKS) overhead: digits MLP 64-32-10, square activation")
        he = run_he(batch=args.batch, latency_samples=args.samples,
                    recipe_samples=args.samples, progress=say)
        print(he)
        results["he"] = {"rows": he.table.as_dicts(), "ratios": he.ratios,
                         "parameters": he.parameters}
    if "he-models" in sections:
        from pets_benchmarks.he_models import run_he_models

        heading("HE beyond the MLP: the TenSEAL-tutorial CNN, a CIFAR-size CNN, cores, keys")
        models = run_he_models(quick=args.quick, progress=say)
        print(models)
        results["he-models"] = {"rows": models.table.as_dicts(), "ratios": models.ratios,
                                "parameters": models.parameters}
    if "dp" in sections:
        from pets_benchmarks.dp import run_dp

        heading("DP-SGD overhead: same model, same data, private vs non-private")
        dp = run_dp(quick=args.quick, progress=say)
        print(dp)
        results["dp"] = {"rows": dp.table.as_dicts(), "ratios": dp.ratios}
    if "mpc" in sections:
        from pets_benchmarks.mpc import run_mpc

        heading("MPC (CrypTen) overhead: real party processes, pets beside CrypTen")
        mpc = run_mpc(quick=args.quick, progress=say)
        print(mpc)
        results["mpc"] = {"inference": mpc.table.as_dicts(), "training": mpc.training.as_dicts(),
                          "ratios": mpc.ratios, "same": mpc.same}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        say(f"results saved to {args.json}")
    return 0


def _configure_assess(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small run (under 3 minutes on 2 cores)")
    p.add_argument("--out", default="assessment", metavar="DIR",
                   help="folder for assessment.md, .json and .png (default: ./assessment)")


def _assess(args: argparse.Namespace) -> int:
    """The privacy assessment matrix: each technique's measured leakage beside its cost."""
    from pets_benchmarks.assess.command import main as run_assess

    return run_assess(quick_run=args.quick, out=args.out)


BENCH = Command("bench", "every technique on the same work, against plaintext",
                _configure_bench, _bench)
ASSESS = Command("assess", "privacy assessment matrix: attacks against each technique, "
                 "beside its cost", _configure_assess, _assess)
