"""The ``pets`` command line: ``pets demo``, ``pets bench``, ``pets serve``, ``pets infer``.

>>> from pets.cli import build_parser
>>> build_parser().parse_args(["bench", "--quick"]).quick
True
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main"]


def _say(message: str) -> None:
    print(f"[pets {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _heading(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)


def demo(args: argparse.Namespace) -> int:
    """The tour of every technique (examples/pets_tour): HE, MPC, DP, federated, cost."""
    from pets_tour import run_tour

    run_tour(quick=args.quick, skip_bench=args.skip_bench, say=_say)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Every technique on the same work against plaintext (the matrix, files in ``--out``);
    with ``--only``, the detailed comparisons against TenSEAL, SGD and CrypTen instead."""
    if not args.only:
        from pets_benchmarks.matrix import (
            bench as run_matrix,
        )

        run_matrix(quick=args.quick, out=args.out, skip=tuple(args.skip or ()))
        return 0
    from pets_benchmarks.dp import run_dp
    from pets_benchmarks.he import run_he

    sections = args.only
    results: dict[str, object] = {}
    if "he" in sections:
        _heading("HE (CKKS) overhead: digits MLP 64-32-10, square activation")
        he = run_he(batch=args.batch, latency_samples=args.samples,
                    recipe_samples=args.samples, progress=_say)
        print(he)
        results["he"] = {"rows": he.table.as_dicts(), "ratios": he.ratios,
                         "parameters": he.parameters}
    if "he-models" in sections:
        from pets_benchmarks.he_models import run_he_models

        _heading("HE beyond the MLP: the TenSEAL-tutorial CNN, a CIFAR-size CNN, cores, keys")
        models = run_he_models(quick=args.quick, progress=_say)
        print(models)
        results["he-models"] = {"rows": models.table.as_dicts(), "ratios": models.ratios,
                                "parameters": models.parameters}
    if "dp" in sections:
        _heading("DP-SGD overhead: same model, same data, private vs non-private")
        dp = run_dp(quick=args.quick, progress=_say)
        print(dp)
        results["dp"] = {"rows": dp.table.as_dicts(), "ratios": dp.ratios}
    if "mpc" in sections:
        from pets_benchmarks.mpc import run_mpc

        _heading("MPC (CrypTen) overhead: real party processes, pets beside CrypTen")
        mpc = run_mpc(quick=args.quick, progress=_say)
        print(mpc)
        results["mpc"] = {"inference": mpc.table.as_dicts(), "training": mpc.training.as_dicts(),
                          "ratios": mpc.ratios}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        _say(f"results saved to {args.json}")
    return 0


def assess(args: argparse.Namespace) -> int:
    """The privacy assessment matrix: each technique's measured leakage beside its cost."""
    from pets_benchmarks.assess.command import main as run_assess

    return run_assess(quick_run=args.quick, out=args.out)


def _digits_model(quick: bool) -> tuple[Any, Any]:
    """``pets serve digits``: the demo MLP trained on scikit-learn's digits, and its inputs."""
    from pets_benchmarks.workloads import digits, train_digits_mlp

    return train_digits_mlp(epochs=10 if quick else 60), digits().x_train


def serve(args: argparse.Namespace) -> int:
    """Serve encrypted inference over HTTP: the model stays here, the secret key with clients."""
    import logging
    import tempfile

    from pets_protocols.service import ServiceConfig
    from pets_protocols.service import serve as run_service
    from pets_protocols.service.models import load_source

    logging.basicConfig(level=logging.INFO, format="[pets %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    try:
        config = ServiceConfig(
            max_sessions=args.max_sessions, max_key_bytes=int(args.max_key_mib * 2**20),
            max_request_bytes=int(args.max_request_mib * 2**20), max_rows=args.max_rows,
            idle_timeout=args.idle_timeout, body_timeout=args.body_timeout,
            head_timeout=args.head_timeout, max_connections=args.max_connections,
            workers=args.workers, worker_cache=args.worker_cache,
        )
    except ValueError as exc:
        raise SystemExit(f"pets serve: {exc}") from None
    model = args.model or args.model_option or "digits"
    with tempfile.TemporaryDirectory(prefix="pets-serve-") as folder:
        _say(f"loading model {model!r}")
        source = load_source(model, args.example, quick=args.quick, folder=folder,
                             builtins={"digits": _digits_model})
        run_service(source, config, host=args.host, port=args.port,
                    on_ready=lambda url: _say(f"serving encrypted inference on {url} "
                                              f"(API described at {url}/docs)"))
    return 0


def infer(args: argparse.Namespace) -> int:
    """Fetch the model's description, make keys, encrypt, send, decrypt: all on this side."""
    import numpy as np
    from pets_protocols.service import InferenceClient

    import pets

    labels = None
    if args.input:
        try:
            data = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise pets.SerializationError(f"cannot read --input {args.input!r} ({exc}); pass "
                                          "a .npy file written by numpy.save") from exc
    else:
        from pets_benchmarks.workloads import digits

        data, labels = digits().x_test[: args.samples], digits().y_test[: args.samples]
    with pets.measure("encrypted inference") as cost, InferenceClient(
        args.url, timeout=args.timeout
    ) as client:
        outputs = client.infer(data, layout=args.layout)
    print(cost)
    print(f"traffic: {client.traffic}")
    if labels is not None:
        accuracy = float((outputs.argmax(axis=1) == labels).mean())
        print(f"accuracy on {len(labels)} encrypted test digits: {accuracy:.4f}")
    if args.output:
        np.save(args.output, outputs)
        print(f"outputs saved to {args.output}")
    return 0


def party(args: argparse.Namespace) -> int:
    """One party (or the dealer) of an MPC run, started by hand: ``pets party``."""
    import importlib
    import os

    from pets.backends.mpc.engine import MPCConfig
    from pets.errors import ParameterError
    from pets.parties import party_main

    if args.dealer and args.provider != "ttp":
        raise ParameterError("--dealer serves provider 'ttp' only; 'tfp' runs without a dealer")
    rank = args.parties if args.dealer else args.rank
    if rank is None:
        raise ParameterError("give this party's --rank (0 to --parties - 1), or --dealer")
    config = MPCConfig(parties=args.parties, rank=rank, provider=args.provider,
                       precision_bits=args.precision, timeout=args.timeout,
                       address=args.address, port=args.port)
    fn = None
    if not args.dealer:
        if not args.function or ":" not in args.function:
            raise ParameterError("name the function each party runs as MODULE:FUNCTION")
        sys.path.insert(0, os.getcwd())
        module, _, name = args.function.partition(":")
        fn = getattr(importlib.import_module(module), name)
    result = party_main(config, fn, (), {}, None)
    print(f"pets party {rank}: {result!r}" if not args.dealer else
          f"pets dealer: served {result} requests", flush=True)
    return 0


def info(args: argparse.Namespace) -> int:
    """Which backends are registered and whether their engines import."""
    import pets

    for name in pets.available_backends():
        try:
            pets.registry.backend_class(name)
            status = "ok"
        except pets.BackendNotInstalledError as exc:
            status = str(exc)
        print(f"{name:8} {status}")
    return 0


def verify_record(args: argparse.Namespace) -> int:
    """Check a run record's hash chain (and HMACs, given a key file); name the first bad line."""
    from pathlib import Path

    import pets

    key = None
    if args.key_file:
        try:
            key = Path(args.key_file).read_bytes().strip()
        except OSError as exc:
            raise pets.SerializationError(
                f"cannot read the key file {args.key_file}: {exc.strerror}. Fix: pass the "
                "file holding the key the record was written with."
            ) from exc
    report = pets.verify_record(args.path, key=key, head=args.head)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pets import __version__

    parser = argparse.ArgumentParser(
        prog="pets",
        description="pets: privacy-enhancing technologies for machine learning (homomorphic "
        "encryption, multi-party computation, differential privacy, federated learning) "
        "behind one interface, with their cost measured against plaintext.",
        epilog="Run 'pets COMMAND --help' for a command's options. Errors print as "
        "'pets: ErrorName: what went wrong. Fix: ...' and exit with status 2. "
        "Guides: README.md and docs/ in the source tree.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pets {__version__}",
        help="print the pets version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="tour: encrypted inference, DP, DP-SGD, overhead")
    p.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    p.add_argument("--skip-bench", action="store_true", help="leave out the overhead section")
    p.set_defaults(func=demo)
    p = sub.add_parser("bench", help="every technique on the same work, against plaintext")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, fewer repeats (under 2 minutes on 2 cores)")
    p.add_argument("--out", default="out/bench", metavar="DIR",
                   help="folder for report.md, results.json, results.csv and the PNG plots "
                   "(default: out/bench)")
    p.add_argument("--skip", action="append", metavar="TECHNIQUE",
                   help="leave out a technique (dp, ckks, ckks-batched, mpc, mpc-3, "
                   "federated...); repeat for several")
    p.add_argument("--only", action="append", choices=["he", "he-models", "dp", "mpc"],
                   help="instead of the matrix, the detailed comparison of one technique "
                   "(he: the digits MLP against TenSEAL; he-models: the tutorial CNN, a "
                   "CIFAR-size CNN, cores and key sizes; dp: DP-SGD against SGD; mpc: against "
                   "CrypTen); "
                   "repeat for several")
    p.add_argument("--batch", type=int, default=4096, help="--only he: batched samples")
    p.add_argument("--samples", type=int, default=4, help="--only he: per-sample samples")
    p.add_argument("--json", help="--only: also write the tables and ratios to this JSON file")
    p.set_defaults(func=bench)
    p = sub.add_parser("assess", help="privacy assessment matrix: attacks against each "
                       "technique, beside its cost")
    p.add_argument("--quick", action="store_true", help="small run (under 3 minutes on 2 cores)")
    p.add_argument("--out", default="assessment", metavar="DIR",
                   help="folder for assessment.md, .json and .png (default: ./assessment)")
    p.set_defaults(func=assess)
    p = sub.add_parser("serve", help="serve encrypted inference of a model over HTTP")
    p.add_argument("model", nargs="?", help="'digits', a torch.export.save file (.pt2; "
                   "trusted input: loading it unpickles) or a compiled model from model.save")
    p.add_argument("--model", dest="model_option", help=argparse.SUPPRESS)
    p.add_argument("--example", help=".npy calibration inputs (needed for approximated "
                   "activations)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=2,
                   help="evaluation processes (default 2)")
    p.add_argument("--max-sessions", type=int, default=16,
                   help="sessions held at once, each one client's public keys (default 16)")
    p.add_argument("--max-key-mib", type=float, default=256.0,
                   help="largest public key set a session may upload (its memory)")
    p.add_argument("--max-request-mib", type=float, default=256.0,
                   help="largest ciphertext request")
    p.add_argument("--max-rows", type=int, default=4096,
                   help="most samples per request")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="seconds before an unused session is closed")
    p.add_argument("--body-timeout", type=float, default=120.0,
                   help="seconds for a request body to arrive")
    p.add_argument("--head-timeout", type=float, default=30.0,
                   help="seconds for a request's headers to arrive")
    p.add_argument("--max-connections", type=int, default=64,
                   help="open connections at once; more get 503 (default 64)")
    p.add_argument("--worker-cache", type=int, default=4,
                   help="sessions whose loaded keys each worker keeps")
    p.add_argument("--quick", action="store_true", help="train the digits model briefly")
    p.set_defaults(func=serve)
    p = sub.add_parser("infer", help="client of pets serve: encrypt, send, decrypt")
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8765",
                   help="the server (default http://127.0.0.1:8765)")
    p.add_argument("--input", help=".npy inputs (default: digits test set)")
    p.add_argument("--output", help="save decrypted outputs to this .npy")
    p.add_argument("--samples", type=int, default=100, help="digits test samples to send")
    p.add_argument("--layout", choices=["batched", "per_sample"], default=None,
                   help="CKKS packing (default: per_sample up to 16 samples, batched beyond)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for an answer")
    p.set_defaults(func=infer)
    p = sub.add_parser("party", help="one party (or the dealer) of an MPC run, by hand")
    p.add_argument("function", nargs="?", help="MODULE:FUNCTION that gets the party")
    p.add_argument("--rank", type=int, help="this party's rank, 0 to --parties - 1")
    p.add_argument("--parties", type=int, required=True, help="number of parties (no dealer)")
    p.add_argument("--address", default="127.0.0.1", help="party 0's host (rendezvous)")
    p.add_argument("--port", type=int, default=29500, help="rendezvous port at party 0")
    p.add_argument("--provider", choices=["ttp", "tfp"], default="ttp",
                   help="ttp: a dealer process makes triples; tfp: party 0 does (sees all)")
    p.add_argument("--dealer", action="store_true", help="run the dealer (provider ttp)")
    p.add_argument("--precision", type=int, default=16, help="fixed-point bits")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a peer")
    p.set_defaults(func=party)
    p = sub.add_parser("info", help="registered backends and their engines")
    p.set_defaults(func=info)
    p = sub.add_parser("verify-record", help="check a pets.record run record's hash chain")
    p.add_argument("path", help="the JSON-lines record written by pets.record")
    p.add_argument("--head", help="the head hash kept elsewhere (catches removed last lines)")
    p.add_argument("--key-file", help="file holding the HMAC key the record was written with")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=verify_record)
    for action in sub._choices_actions:  # 'pets COMMAND --help' opens with its summary
        command = sub.choices[action.dest]
        command.description = command.description or action.help
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import pets

        if isinstance(exc, pets.PetsError):
            print(f"pets: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
