"""The homomorphic-encryption columns: CKKS (TenSEAL) in its two packings.

* ``ckks-per-sample``: one ciphertext per sample (latency); a product with a plain
  matrix is a baby-step giant-step sum of rotated diagonals, the input staged for it;
* ``ckks-batched``: one ciphertext per feature holding every sample (throughput);
  a product is a plain linear combination of ciphertexts, no rotation.

Both columns share one key set per workload, sized by ``pets.compile`` (models) or
``backend.prepare`` (dot products, matmuls); making it is set-up. A run is the
client's encryption, the server's evaluation on ciphertexts and the client's
decryption; the bytes are the serialised input and output ciphertexts, and the
public key set (one-off) a server needs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np

import pets
from pets.backends.levelled import LevelledRequirements
from pets_benchmarks.matrix.cells import Cell
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.techniques.base import (
    Context,
    Technique,
    compare_outputs,
    guard,
    missing_backend,
    register,
)
from pets_benchmarks.matrix.timing import Clock, fill, repeat
from pets_benchmarks.matrix.workloads import LINEAR, TRAINING, Workload, load_net

__all__ = ["CKKS"]


class _Keys:
    """A workload's CKKS backend, how its inputs are encrypted, and its public-key size."""

    def __init__(self, backend: Any, model: Any, requirements: Any, setup: float) -> None:
        self.backend, self.model, self.requirements, self.setup = (
            backend, model, requirements, setup)
        self.key_bytes = len(backend.public().to_bytes())


class CKKS(Technique):
    """One CKKS packing as a column."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.key = "ckks-" + layout.replace("_", "-")
        self.label = "CKKS " + layout.replace("_", "-")
        self.privacy = ("homomorphic encryption (TenSEAL CKKS, 128-bit security): the "
                        "evaluator holds public keys and ciphertexts only")

    def missing(self) -> str | None:
        return missing_backend("ckks")

    def reason(self, workload: Workload, config: MatrixConfig) -> str | None:
        if workload.kind == TRAINING:
            capabilities = pets.registry.backend_class("ckks").capabilities
            if not capabilities.training:
                return ("the ckks backend cannot train (capabilities.training is False: HE "
                        "has no comparisons to take gradients through, and PrivateModel.fit "
                        "raises CompileError); HE serves inference on a model trained elsewhere")
        return None

    def run(self, workloads: list[Workload], context: Context) -> Iterator[Cell]:
        for workload in workloads:
            yield guard(self, workload, partial(self._one, workload, context))

    def _keys(self, workload: Workload, context: Context) -> _Keys:
        cached = context.cache.get(("ckks", workload.key))
        if isinstance(cached, _Keys):
            return cached
        start = time.perf_counter()
        be = pets.backend("ckks")
        model, requirements = None, None
        if workload.kind == LINEAR:
            n, m = workload.weight.shape
            # the bound pets tracks for x @ W: |x| times the largest column sum of |W|
            largest = float(np.abs(workload.x).max()) * max(
                1.0, float(np.abs(workload.weight).sum(axis=0).max()))
            requirements = pets.Requirements(
                max_abs=largest, max_rows=workload.rows,
                extension=LevelledRequirements(depth=1, matmul_shapes=((n, m),),
                                               first_product=(n, m)))
            be.prepare(requirements)
        else:
            model = pets.compile(load_net(workload.arch, workload.state), backend=be,
                                 example_input=workload.x_train)
        keys = _Keys(be, model, requirements, time.perf_counter() - start)
        context.cache[("ckks", workload.key)] = keys
        return keys

    def _one(self, workload: Workload, context: Context) -> Cell:
        config = context.config
        first = ("ckks", workload.key) not in context.cache
        keys = self._keys(workload, context)
        be = keys.backend
        tensors: dict[str, Any] = {}

        def once(clock: Clock) -> np.ndarray:
            if keys.model is not None:
                x = keys.model.encrypt(workload.x, layout=self.layout)
            else:
                x = be.encrypt_for(workload.x, keys.requirements, layout=self.layout)
            clock.lap("encrypt")
            y = keys.model(x) if keys.model is not None else x @ workload.weight
            clock.lap("compute")
            out = keys.model.decrypt(y) if keys.model is not None else be.decrypt(y)
            clock.lap("decrypt")
            tensors["x"], tensors["y"] = x, y
            return np.asarray(out)

        runs = repeat(once, repeats=config.repeats, budget=config.cell_seconds)
        params = be.describe()
        cell = fill(self.cell(
            workload, setup_seconds=keys.setup if first else 0.0, key_bytes=keys.key_bytes,
            privacy=f"CKKS, {params.get('security_bits', 128)}-bit security (N="
                    f"{params.get('poly_modulus_degree')}): the evaluator holds public keys "
                    "only"), runs)
        cell.ciphertext_bytes = len(tensors["x"].to_bytes()) + len(tensors["y"].to_bytes())
        cell.wire_bytes = cell.ciphertext_bytes
        cell.details = {"parameters": {k: params.get(k) for k in (
            "poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "depth")}}
        cell.notes = (f"N={params.get('poly_modulus_degree')}, primes "
                      f"{params.get('coeff_mod_bit_sizes')}; public keys {keys.key_bytes:,} B"
                      + ("" if first else "; keys shared with the other packing (set-up there)"))
        return compare_outputs(cell, workload, runs.result, context.reference.get(workload.key))


@register("ckks")
def _make(config: MatrixConfig) -> list[Technique]:
    return [CKKS("per_sample"), CKKS("batched")]
