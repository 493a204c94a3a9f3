"""``pets serve`` and ``pets infer``, registered in the ``pets.commands`` entry-point group.

>>> import argparse
>>> from pets_protocols.service.command import SERVE
>>> parser = argparse.ArgumentParser()
>>> SERVE.configure(parser)
>>> parser.parse_args(["model.pt2", "--max-connections-per-client", "4"]).max_connections_per_client
4
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pets.cli import Command, say

__all__ = ["INFER", "SERVE"]


def _configure_serve(p: argparse.ArgumentParser) -> None:
    """The options of ``pets serve``."""
    p.add_argument("model", nargs="?", help="'digits', a torch.export.save file (.pt2; "
                   "trusted input: loading it unpickles) or a compiled model from model.save")
    p.add_argument("--model", dest="model_option", help=argparse.SUPPRESS)
    p.add_argument("--example", help=".npy calibration inputs (needed for approximated "
                   "activations; without it the inputs saved in a .pt2 fix the input range)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    p.add_argument("--max-sessions", type=int, default=16,
                   help="sessions held at once, each one client's public keys (default 16)")
    p.add_argument("--max-sessions-per-client", type=int, default=4,
                   help="sessions one client (IP address) may hold (default 4)")
    p.add_argument("--max-key-mib", type=float, default=256.0,
                   help="largest public key set a session may upload (its memory)")
    p.add_argument("--max-request-mib", type=float, default=256.0,
                   help="largest ciphertext request")
    p.add_argument("--max-in-flight-mib", type=float, default=None,
                   help="request bodies being received at once, all clients (spooled to "
                   "disk; default 4x the largest request or key set)")
    p.add_argument("--max-in-flight-per-client-mib", type=float, default=None,
                   help="request bodies one client may have arriving at once (default 2x "
                   "the largest request or key set)")
    p.add_argument("--max-rows", type=int, default=4096, help="most samples per request")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="seconds before an unused session is closed")
    p.add_argument("--body-timeout", type=float, default=120.0,
                   help="seconds for a request body to arrive")
    p.add_argument("--head-timeout", type=float, default=30.0,
                   help="seconds for a request's headers to arrive")
    p.add_argument("--max-connections", type=int, default=64,
                   help="open connections at once; more get 503 (default 64)")
    p.add_argument("--max-connections-per-client", type=int, default=8,
                   help="open connections of one client (IP address); more get 503 (default 8)")
    p.add_argument("--worker-cache", type=int, default=4,
                   help="sessions whose loaded keys each worker keeps")
    p.add_argument("--quick", action="store_true", help="train the digits model briefly")


def _config(args: argparse.Namespace) -> Any:
    from pets_protocols.service import ServiceConfig
    from pets_protocols.service.config import MiB

    largest = max(args.max_key_mib, args.max_request_mib)
    per_client = args.max_in_flight_per_client_mib or 2 * largest
    total = args.max_in_flight_mib or max(4 * largest, per_client)
    try:
        return ServiceConfig(
            max_sessions=args.max_sessions, max_sessions_per_client=args.max_sessions_per_client,
            max_key_bytes=int(args.max_key_mib * MiB),
            max_request_bytes=int(args.max_request_mib * MiB), max_rows=args.max_rows,
            max_bytes_in_flight=int(total * MiB), max_bytes_in_flight_per_client=int(
                per_client * MiB),
            idle_timeout=args.idle_timeout, body_timeout=args.body_timeout,
            head_timeout=args.head_timeout, max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client,
            workers=args.workers, worker_cache=args.worker_cache,
        )
    except ValueError as exc:
        raise SystemExit(f"pets serve: {exc}") from None


def _digits_model(quick: bool) -> tuple[Any, Any]:
    """``pets serve digits``: the demo MLP trained on scikit-learn's digits, and its inputs."""
    from pets_protocols.workloads import digits, train_digits_mlp

    return train_digits_mlp(epochs=10 if quick else 60), digits().x_train


def _serve(args: argparse.Namespace) -> int:
    """Serve encrypted inference over HTTP: the model stays here, the secret key with clients."""
    import tempfile

    from pets_protocols.service import serve
    from pets_protocols.service.models import load_source

    logging.basicConfig(level=logging.INFO, format="[pets %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    config = _config(args)
    model = args.model or args.model_option or "digits"
    with tempfile.TemporaryDirectory(prefix="pets-serve-") as folder:
        say(f"loading model {model!r}")
        source = load_source(model, args.example, quick=args.quick, folder=folder,
                             builtins={"digits": _digits_model})
        serve(source, config, host=args.host, port=args.port,
              on_ready=lambda url: say(f"serving encrypted inference on {url} "
                                        f"(API described at {url}/docs)"))
    return 0


def _configure_infer(p: argparse.ArgumentParser) -> None:
    """The options of ``pets infer``."""
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8765",
                   help="the server (default http://127.0.0.1:8765)")
    p.add_argument("--input", help=".npy inputs (default: digits test set)")
    p.add_argument("--output", help="save decrypted outputs to this .npy")
    p.add_argument("--samples", type=int, default=100, help="digits test samples to send")
    p.add_argument("--layout", choices=["batched", "per_sample"], default=None,
                   help="CKKS packing (default: per_sample up to 16 samples, batched beyond)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for an answer")


def _infer(args: argparse.Namespace) -> int:
    """Fetch the model's description, check the inputs against it, then make keys, encrypt,
    send and decrypt: all on this side. A wrong input costs no keys and no upload."""
    import numpy as np

    import pets
    from pets_protocols.service import InferenceClient

    labels = None
    if args.input:
        try:
            data = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise pets.SerializationError(f"cannot read --input {args.input!r} ({exc}); pass "
                                          "a .npy file written by numpy.save") from exc
    else:
        from pets_protocols.workloads import digits

        data, labels = digits().x_test[: args.samples], digits().y_test[: args.samples]
    with pets.measure("encrypted inference") as cost, InferenceClient(
        args.url, timeout=args.timeout, open_session=False
    ) as client:
        client.check(data)  # shape and range, before any key is made
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


SERVE = Command("serve", "serve encrypted inference of a model over HTTP",
                _configure_serve, _serve)
INFER = Command("infer", "client of pets serve: encrypt, send, decrypt",
                _configure_infer, _infer)
