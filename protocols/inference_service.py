"""Encrypted-inference service: the server holds the model, the client holds the key.

Handshake and messages (frames from :mod:`protocols.transport`)::

    client                                   server (torch model, no secret key ever)
      |  HELLO                             ->  |
      |  <- MODEL  {input_shape, depth, matmul_shapes, max_abs}  (what keys must fit)
      |  KEYS  public backend bytes        ->  |  load keys, compile the model for them
      |  <- READY                               |
      |  INFER tensor bytes                ->  |  run the model on ciphertexts
      |  <- RESULT tensor bytes                 |
      |  ...                                    |
      |  BYE                               ->  |

The client learns the model's shape and depth, not its weights; the server
learns ciphertexts and public keys only. Any failure on the server comes
back as an ERROR frame and is raised on the client as the same pets error type.

>>> # server:  serve(net, example_input=x_train, port=8765)
>>> # client:  with InferenceClient("127.0.0.1", 8765) as c: logits = c.infer(x_test)
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

import numpy as np

import pets
from pets.errors import PartyError, PetsError, ShapeMismatchError
from protocols.transport import DEFAULT_TIMEOUT, Connection, Frame, connect

__all__ = ["InferenceClient", "serve"]

HELLO, MODEL, KEYS, READY, INFER, RESULT, ERROR, BYE = range(1, 9)


def _error_frame(exc: Exception) -> bytes:
    return json.dumps({"type": type(exc).__name__, "message": str(exc)}).encode()


def _raise_remote(frame: Frame, peer: str) -> None:
    info = json.loads(frame.payload)
    cls = getattr(pets.errors, info.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, PetsError)):
        cls = PartyError
    raise cls(f"{peer} refused the request: {info.get('message')}")


def _expect(conn: Connection, kind: int) -> Frame:
    frame = conn.receive()
    if frame.kind == ERROR:
        _raise_remote(frame, conn.peer)
    if frame.kind != kind:
        raise PartyError(f"{conn.peer} sent message kind {frame.kind}, expected {kind}")
    return frame


def _serve_one(conn: Connection, net: Any, example_input: Any, reference: Any) -> None:
    _expect(conn, HELLO)
    req = reference.requirements
    conn.send(MODEL, json.dumps({
        "input_shape": list(reference.input_shape),
        "output_shape": list(reference.output_shape),
        "depth": req.depth,
        "matmul_shapes": [list(s) for s in req.matmul_shapes],
        "max_abs": float(req.extra.get("max_abs", 0.0)),
        "first_product": req.first_product,
    }).encode())
    backend = pets.load_backend(_expect(conn, KEYS).payload)
    if backend.has_secret_key:
        raise PartyError("the client sent its secret key; send backend.public().to_bytes()")
    model = pets.compile(net, backend=backend, example_input=example_input)
    conn.send(READY)
    while True:
        frame = conn.receive()
        if frame.kind == BYE:
            return
        if frame.kind != INFER:
            raise PartyError(f"unexpected message kind {frame.kind}")
        try:
            conn.send(RESULT, model(backend.load_tensor(frame.payload)).to_bytes())
        except PetsError as exc:
            conn.send(ERROR, _error_frame(exc))


def serve(net: Any, *, example_input: Any, host: str = "127.0.0.1", port: int = 0,
          max_clients: int | None = None, timeout: float = DEFAULT_TIMEOUT,
          on_ready: Callable[[int], None] | None = None,
          log: Callable[[str], None] = print) -> None:
    """Serve encrypted inference of ``net`` until ``max_clients`` sessions have ended.

    ``on_ready(port)`` is called once listening (``port=0`` picks a free one).
    """
    reference = pets.compile(net, backend=pets.backend("plain"), example_input=example_input)
    with socket.create_server((host, port)) as listener:
        bound = listener.getsockname()[1]
        log(f"serving encrypted inference on {host}:{bound} "
            f"(depth {reference.depth}, input {reference.input_shape})")
        if on_ready:
            on_ready(bound)
        served = 0
        while max_clients is None or served < max_clients:
            sock, address = listener.accept()
            peer = f"client {address[0]}:{address[1]}"
            with Connection(sock, peer=peer, timeout=timeout) as conn:
                try:
                    _serve_one(conn, net, example_input, reference)
                    log(f"{peer}: session ended")
                except PetsError as exc:
                    log(f"{peer}: {type(exc).__name__}: {exc}")
                    with contextlib.suppress(PetsError):  # the client may be gone already
                        conn.send(ERROR, _error_frame(exc))
            served += 1


class InferenceClient:
    """Holds the secret key; sends only ciphertexts and public keys.

    ``backend_options`` go to ``pets.backend("ckks", ...)``; the depth and
    rotation keys are sized from what the server says its model needs.
    """

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT,
                 **backend_options: Any) -> None:
        self.conn = connect(host, port, timeout=timeout)
        self.conn.send(HELLO)
        info = json.loads(_expect(self.conn, MODEL).payload)
        self.input_shape = tuple(info["input_shape"])
        self.output_shape = tuple(info["output_shape"])
        self.backend = pets.backend("ckks", **backend_options)
        first = info.get("first_product")
        self.first_product = None if first is None else (int(first[0]), int(first[1]))
        self.backend.prepare(pets.Requirements(
            depth=info["depth"],
            matmul_shapes=tuple(tuple(s) for s in info["matmul_shapes"]),
            first_product=self.first_product,
            extra={"max_abs": info["max_abs"]},
        ))
        self.conn.send(KEYS, self.backend.public().to_bytes())
        _expect(self.conn, READY)

    def infer(self, data: Any, *, layout: str | None = None) -> np.ndarray:
        """Encrypt ``data`` (batch of samples), have the server run the model, decrypt."""
        array = np.asarray(data, dtype=np.float64)
        size = int(np.prod(self.input_shape))
        if array.shape[1:] != self.input_shape and array.shape[-1:] != (size,):
            raise ShapeMismatchError(
                f"this model takes inputs of shape {self.input_shape}, got {array.shape}; "
                f"send a batch (n, *{self.input_shape})"
            )
        flat = array.reshape(-1, size)
        chosen = layout or self.backend.choose_layout(len(flat))
        tensor = self.backend.encrypt(flat, layout=chosen, first_product=self.first_product)
        self.conn.send(INFER, tensor.to_bytes())
        result = self.backend.load_tensor(_expect(self.conn, RESULT).payload)
        return self.backend.decrypt(result).reshape(len(flat), *self.output_shape)

    def close(self) -> None:
        try:
            self.conn.send(BYE)
        finally:
            self.conn.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
