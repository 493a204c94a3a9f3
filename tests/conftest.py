"""Shared fixtures: one backend of each kind per test session (key generation is slow)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator

import numpy as np
import outside_backend  # noqa: F401  (registers "fixedpoint", a backend written outside pets/)
import pytest

import pets

#: every backend the conformance suite runs, with the options it runs them under
CONFORMANCE_BACKENDS = {
    "plain": {},
    "ckks-batched": {"name": "ckks", "depth": 3, "layout": "batched"},
    "ckks-per_sample": {"name": "ckks", "depth": 3, "layout": "per_sample"},
    "mpc": {},  # one process (CrypTen's single-process mode); real parties: tests/test_mpc*.py
    "fixedpoint": {},  # tests/outside_backend.py: registered from outside the library
}
#: backends that exist only between real parties; each runs the same cases in its own test
MULTI_PARTY_CONFORMANCE = {"hybrid": "tests/test_hybrid_backend.py"}


def make_backend(spec: str) -> pets.Backend:
    options = dict(CONFORMANCE_BACKENDS[spec])
    name = options.pop("name", spec)
    with warnings.catch_warnings():  # mpc in one process warns that it keeps no secret
        warnings.simplefilter("ignore", pets.InsecureProviderWarning)
        return pets.backend(name, **options)


@pytest.fixture(scope="session", params=sorted(CONFORMANCE_BACKENDS))
def any_backend(request: pytest.FixtureRequest) -> pets.Backend:
    return make_backend(request.param)


@pytest.fixture(scope="session")
def plain() -> pets.Backend:
    return pets.backend("plain")


@pytest.fixture(scope="session")
def ckks() -> pets.Backend:
    return pets.backend("ckks", depth=3)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """On a small shared machine torch's thread pool spins: tiny models run 100x slower.

    Modules that train small torch models use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def flower_task() -> Iterator[None]:
    """Flower stamps messages with the current run; outside a run (federated tests) we set one."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
