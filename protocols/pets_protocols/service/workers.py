"""Evaluation in worker processes, so one client's inference never blocks the others.

CKKS evaluation (TenSEAL and its SEAL bindings) holds the GIL: two threads ran
0.73-0.89x as fast as one. The server therefore keeps its event loop for I/O
and runs every engine call (loading keys, compiling for them, evaluating) in a
pool of worker processes. Each worker opens the model once and keeps the loaded
keys and compiled model of its most recently used sessions, so a session's keys
are loaded once per worker, not once per request. A worker that dies (an engine
crash) is replaced and the request answered with an error; the server lives on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import pets
from pets.errors import BackendError, KeyMismatchError, MissingKeyError, PetsError, WorkerError
from pets_protocols.service.models import ModelFactory, ModelSource
from pets_protocols.service.payloads import secret_key_message

__all__ = ["WorkerPool", "infer", "open_session"]

log = logging.getLogger("pets_protocols.service")
T = TypeVar("T")


# ---- inside a worker process ------------------------------------------------------------


@dataclass
class _Worker:
    factory: ModelFactory | None
    cache_size: int
    failure: PetsError | None = None
    #: session id -> (key file, backend, compiled model), least recently used first
    cache: OrderedDict[str, tuple[Path, Any, Any]] = field(default_factory=OrderedDict)

    def remember(self, session_id: str, path: Path, backend: Any, model: Any) -> None:
        self.cache[session_id] = (path, backend, model)
        self.cache.move_to_end(session_id)
        closed = [s for s, (p, _, _) in self.cache.items() if s != session_id and not p.exists()]
        for stale in closed:  # closed or expired sessions
            del self.cache[stale]
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def session(self, session_id: str, path: Path) -> tuple[Any, Any]:
        if session_id in self.cache:
            self.cache.move_to_end(session_id)
            _, backend, model = self.cache[session_id]
            return backend, model
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MissingKeyError(
                f"session {session_id} was closed while this request waited; open a new one"
            ) from None
        backend, model = _bind(self, data)
        self.remember(session_id, path, backend, model)
        return backend, model


_WORKER: _Worker | None = None


def _start_worker(source: ModelSource, cache_size: int, parent: int, level: int) -> None:
    """Initializer of each worker process: logging, a parent watchdog, the model."""
    global _WORKER
    logging.basicConfig(level=level, format=f"[pets worker {os.getpid()}] %(message)s")

    def watch_parent() -> None:  # a worker must not outlive a killed server
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    atexit.register(_exit_now)  # runs first (last registered): skips torch's slow teardown
    try:
        _WORKER = _Worker(source.open(), cache_size)
    except PetsError as exc:  # reported by the first task, not as a broken pool
        _WORKER = _Worker(None, cache_size, failure=exc)


def _exit_now() -> None:
    """End a stopped worker at once: the interpreter's teardown with torch loaded takes
    seconds, and a worker has nothing to save."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _worker() -> _Worker:
    if _WORKER is None:
        raise WorkerError("this process is not a service worker")
    if _WORKER.failure is not None:
        raise _WORKER.failure
    return _WORKER


def _engine_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Any non-pets error of the engine becomes a :class:`BackendError` (a 500)."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> T:
        try:
            return fn(*args)
        except PetsError:
            raise
        except Exception as exc:
            log.exception("engine failure in %s", fn.__name__)
            raise BackendError(
                f"the encryption engine failed ({type(exc).__name__}: {str(exc)[:300]}); "
                "the server keeps serving: check the request, and report it if it recurs"
            ) from None

    return wrapper


def _bind(worker: _Worker, keys: bytes) -> tuple[Any, Any]:
    backend = pets.load_backend(keys)
    if backend.has_secret_key:
        raise KeyMismatchError(secret_key_message())
    assert worker.factory is not None
    return backend, worker.factory(backend)  # compile: checks depth and value range


@_engine_errors
def ping() -> int:
    """The worker's process id, once it has opened the model."""
    _worker()
    time.sleep(0.2)  # so that each of a burst of pings lands on another worker
    return os.getpid()


@_engine_errors
def open_session(session_id: str, path: str, upload: str) -> dict[str, Any]:
    """Load and check the key set in file ``upload`` (the session's keys will be at
    ``path``): public only, fits the model, has the rotation keys."""
    worker = _worker()
    start = time.perf_counter()
    keys = Path(upload).read_bytes()
    backend, model = _bind(worker, keys)
    zeros = np.zeros((1, model.input_size))
    model(model.encrypt(zeros))  # a trial run: proves the depth and the rotation keys
    worker.remember(session_id, Path(path), backend, model)
    log.info("session %s: key set of %d bytes checked in %.2f s", session_id, len(keys),
             time.perf_counter() - start)
    return {"key_id": backend.key_id, "parameters": backend.describe()}


@_engine_errors
def infer(session_id: str, path: str, request: str) -> bytes:
    """Run the model on the ciphertexts in file ``request`` under the session's keys."""
    start = time.perf_counter()
    backend, model = _worker().session(session_id, Path(path))
    data = Path(request).read_bytes()
    size = len(data)
    tensor = backend.load_tensor(data)
    del data
    answer = model(tensor).to_bytes()
    log.info("session %s: %s in %d bytes -> %d bytes in %.3f s", session_id, tensor.shape,
             size, len(answer), time.perf_counter() - start)
    return answer


# ---- in the server -----------------------------------------------------------------------


class WorkerPool:
    """A process pool for engine calls, replaced whole if one of its workers dies."""

    def __init__(self, source: ModelSource, *, workers: int, cache_size: int) -> None:
        self.source = source
        self.workers = workers
        self.cache_size = cache_size
        self._executor: ProcessPoolExecutor | None = None

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded server
            initializer=_start_worker,
            initargs=(self.source, self.cache_size, os.getpid(), logging.getLogger().level),
        )

    async def start(self) -> list[int]:
        """Start every worker and wait until each has opened the model; their pids."""
        self._executor = self._new_executor()
        pids: set[int] = set()
        for _ in range(50):  # a burst of pings starts every worker; wait until each answers
            pids |= set(await asyncio.gather(*(self.run(ping) for _ in range(self.workers))))
            if len(pids) >= self.workers:
                break
        log.info("%d evaluation workers ready (pids %s)", len(pids),
                 ", ".join(map(str, sorted(pids))))
        return sorted(pids)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker; a dead worker becomes a :class:`WorkerError` (500)."""
        executor = self._executor
        if executor is None:
            raise WorkerError("the evaluation workers are not running; start the pool first")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(fn, *args))
        except BrokenProcessPool as exc:
            if self._executor is executor:  # the first request to notice replaces the pool
                log.error("an evaluation worker died; starting new workers")
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            raise WorkerError(
                "an evaluation worker died while this request was in it (the engine crashed); "
                "the server replaced it and keeps serving: retry, and report the input if "
                "it happens again"
            ) from exc

    def shutdown(self) -> None:
        """Stop the workers once their current requests are done (queued ones are dropped)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True, cancel_futures=True)
