"""Every core: a compiled model's independent samples evaluated in worker processes.

SEAL's calls hold Python's global interpreter lock (TenSEAL's bindings do not
release it), so threads would take turns; processes run side by side. Each
worker is a fresh interpreter (``python -m pets.compiler.parallel``: nothing of
the caller's script is re-imported, no fork of a process holding threads),
started once with the model's file bytes (:mod:`pets.compiler.saving`, no
pickle) and the backend's *public* keys, which it loads once. A call splits the
input into independent pieces of whole ciphertexts (per-sample: samples;
batched: chunks of ``slots`` samples), sends all but the first to the workers
as tensor bytes over their pipes, runs the first itself meanwhile, and joins
the results in order (``workers=k``: this process and ``k - 1`` others). Backends that cannot split
(``split_rows``) run in this process.

>>> import numpy as np, torch, pets
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), pets.nn.Square())
>>> be = pets.backend("ckks", depth=2)
>>> model = pets.compile(net, backend=be, example_input=torch.randn(8, 3))
>>> x = np.random.default_rng(0).uniform(-1, 1, (4, 3))
>>> out = model(model.encrypt(x), workers=2)                  # doctest: +SKIP
>>> bool(np.allclose(model.decrypt(out), model.simulate(x), atol=1e-3))  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import logging
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from pets.errors import PartyError
from pets.tensor import PrivateTensor

if TYPE_CHECKING:
    from pets.compiler.model import PrivateModel

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)
_LENGTH = struct.Struct(">Q")


def _send(stream: IO[bytes], *messages: bytes) -> None:
    for message in messages:
        stream.write(_LENGTH.pack(len(message)))
        stream.write(message)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes:
    header = stream.read(_LENGTH.size)
    if len(header) != _LENGTH.size:
        raise EOFError("the pipe closed")
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    if len(data) != length:
        raise EOFError("the pipe closed mid-message")
    return data


class _Worker:
    def __init__(self, model_bytes: bytes, key_bytes: bytes) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pets.compiler.parallel"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.process.stdin is not None
        _send(self.process.stdin, model_bytes, key_bytes)
        self.lock = threading.Lock()

    def evaluate(self, request: bytes) -> bytes:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                _send(self.process.stdin, request)
                status = _receive(self.process.stdout)
                reply = _receive(self.process.stdout)
            except (EOFError, BrokenPipeError, OSError) as exc:
                error = b""
                if self.process.stderr is not None and self.process.poll() is not None:
                    error = self.process.stderr.read()[-2000:]
                raise PartyError(
                    f"a worker process died while evaluating the model ({exc}); "
                    f"{error.decode(errors='replace').strip() or 'no message'}; run with "
                    "workers=1 to see the error in this process"
                ) from exc
        if status != b"ok":
            raise PartyError(
                f"a worker process failed while evaluating the model: "
                f"{reply.decode(errors='replace')}; run with workers=1 to see it in this process"
            )
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    """``workers`` ways of running a model: this process and ``workers - 1`` others, each
    holding the model and the public keys (see the module)."""

    def __init__(self, model: PrivateModel, workers: int) -> None:
        from pets.compiler.saving import model_to_bytes

        self.workers = workers
        self.model = model
        self.key_id = model.backend.key_id
        keys = model.backend.public().to_bytes()
        data = model_to_bytes(model)
        self._workers = [_Worker(data, keys) for _ in range(workers - 1)]
        self._threads = ThreadPoolExecutor(max_workers=max(1, workers - 1))
        logger.info("started %d worker processes for %r", workers - 1, model)

    def run(self, tensor: PrivateTensor, output_size: int) -> PrivateTensor:
        """The model on ``tensor``: the first piece here, the others in the workers, at once."""
        backend = tensor.backend
        pieces = backend.split_rows(tensor.data, self.workers)  # type: ignore[attr-defined]
        width = tensor.shape[-1]
        pending = []
        for worker, piece in zip(self._workers, pieces[1:], strict=False):
            request = backend.tensor_to_bytes(PrivateTensor(backend, piece, (piece.rows, width)))
            pending.append(self._threads.submit(worker.evaluate, request))
        own = self.model(PrivateTensor(backend, pieces[0], (pieces[0].rows, width)), workers=1)
        outputs = [own.data] + [backend.load_tensor(f.result()).data for f in pending]
        native = backend.join_rows(outputs)  # type: ignore[attr-defined]
        return PrivateTensor(backend, native, (*tensor.shape[:-1], output_size))

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._threads.shutdown(wait=True)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A worker's loop: load the model and keys, then answer requests until stdin closes."""
    import pets

    model_bytes, key_bytes = _receive(stdin), _receive(stdin)
    backend = pets.load_backend(key_bytes)
    model: Any = pets.load_model(model_bytes, backend=backend)
    while True:
        try:
            request = _receive(stdin)
        except EOFError:
            return
        try:
            reply = bytes(model(backend.load_tensor(request)).to_bytes())
            _send(stdout, b"ok", reply)
        except Exception as exc:  # reported to the caller, who raises it as a pets error
            _send(stdout, b"error", f"{type(exc).__name__}: {exc}".encode())


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
