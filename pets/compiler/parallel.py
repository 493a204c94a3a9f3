"""Every core: a compiled model's independent samples evaluated in worker processes.

SEAL's calls hold Python's global interpreter lock (TenSEAL's bindings do not
release it), so threads would take turns; processes run side by side. The
workers are a :class:`concurrent.futures.ProcessPoolExecutor` of freshly
spawned interpreters (no fork of a process holding threads; as with any
``multiprocessing`` use, a script calling this guards its entry point with
``if __name__ == "__main__":``). Each worker's initializer loads the model's
file bytes (:mod:`pets.compiler.saving`, no pickle of the model) and the
backend's *public* keys once. A call splits the input into independent pieces
of whole ciphertexts (the levelled backend's ``split_rows``), sends all but the
first to the workers as tensor bytes, runs the first itself meanwhile, and
joins the results in order (``workers=k``: this process and ``k - 1`` others).
A worker that fails or dies is a :class:`~pets.errors.WorkerError`.

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

import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from pets.backends.levelled import levelled_backend
from pets.errors import WorkerError
from pets.tensor import PrivateTensor

if TYPE_CHECKING:
    from pets.compiler.model import PrivateModel

__all__ = ["ModelWorkers"]

logger = logging.getLogger(__name__)


class ModelWorkers:
    """``workers`` ways of running a model: this process and ``workers - 1`` others, each
    holding the model and the public keys (see the module)."""

    def __init__(self, model: PrivateModel, workers: int) -> None:
        from pets.compiler.saving import model_to_bytes

        self.workers = workers
        self.model = model
        self.key_id = model.backend.key_id
        self._executor = ProcessPoolExecutor(
            max_workers=max(1, workers - 1), mp_context=multiprocessing.get_context("spawn"),
            initializer=_load, initargs=(model_to_bytes(model), model.backend.public().to_bytes()),
        )
        #: whether a worker died (the model then starts a new pool)
        self.broken = False
        logger.info("starting %d worker processes for %r", workers - 1, model)

    def run(self, tensor: PrivateTensor, output_size: int) -> PrivateTensor:
        """The model on ``tensor``: the first piece here, the others in the workers, at once."""
        backend = tensor.backend
        levelled = levelled_backend(backend)
        assert levelled is not None  # the model calls this for levelled backends only
        pieces = levelled.split_rows(tensor.data, self.workers)
        width = tensor.shape[-1]
        try:
            pending = [self._executor.submit(_evaluate, backend.tensor_to_bytes(
                PrivateTensor(backend, piece, (piece.rows, width)))) for piece in pieces[1:]]
            own = self.model(PrivateTensor(backend, pieces[0], (pieces[0].rows, width)),
                             workers=1)
            outputs = [own.data] + [backend.load_tensor(result(f)).data for f in pending]
        except BrokenProcessPool as exc:
            self.broken = True
            raise WorkerError(
                f"a worker process died while evaluating the model ({exc}); the next call "
                "starts new workers, or run with workers=1 to see the error in this process"
            ) from exc
        return PrivateTensor(backend, levelled.join_rows(outputs),
                             (*tensor.shape[:-1], output_size))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def result(future: Future[bytes]) -> bytes:
    """What a worker answered, or a :class:`WorkerError` with its error (``BrokenProcessPool``,
    a dead worker, passes through)."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise
    except Exception as exc:
        raise WorkerError(
            f"a worker process failed while evaluating the model: {type(exc).__name__}: "
            f"{exc}; run with workers=1 to see it in this process"
        ) from exc


# ---- inside a worker ------------------------------------------------------------------

_LOADED: dict[str, Any] = {}


def _load(model_bytes: bytes, key_bytes: bytes) -> None:
    """A worker's initializer: the public keys and the model, loaded once."""
    import pets

    backend = pets.load_backend(key_bytes)
    _LOADED["backend"] = backend
    _LOADED["model"] = pets.load_model(model_bytes, backend=backend)


def _evaluate(request: bytes) -> bytes:
    """The model on one piece (tensor bytes in, tensor bytes out)."""
    backend, model = _LOADED["backend"], _LOADED["model"]
    return bytes(model(backend.load_tensor(request)).to_bytes())
