"""HE overhead of the digits MLP (64-32-10, square), side by side in one run.

    pytest benchmarks/test_bench_he.py --benchmark-group-by=group

Groups: ``batched-4096`` (one ciphertext chunk of 4096 samples: plain, pets,
the same SEAL operations without pets) and ``one-sample`` (pets per-sample
packing against TenSEAL's ``ckks_vector(ctx, x).mm(W)`` recipe). Compare
within a group; ``pets bench`` prints the same comparison as ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from pets.bench.baselines import raw_batched, tenseal_recipe


@pytest.mark.benchmark(group="batched-4096")
def test_plain_batch(benchmark: Any, digits_he: Any) -> None:
    benchmark(digits_he.plain.predict, digits_he.x_batch)


@pytest.mark.benchmark(group="batched-4096")
def test_pets_ckks_batched(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch, layout="batched")
    benchmark.pedantic(digits_he.ckks, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="batched-4096")
def test_raw_seal_batched_same_operations(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch, layout="batched")
    columns = list(x.data.cts[0])
    benchmark.pedantic(raw_batched, args=(digits_he.backend.keys, columns, digits_he.weights),
                       rounds=3, iterations=1)


@pytest.mark.benchmark(group="one-sample")
def test_pets_ckks_per_sample(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch[:1], layout="per_sample")
    benchmark.pedantic(digits_he.ckks, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="one-sample")
def test_tenseal_recipe_per_sample(benchmark: Any, digits_he: Any) -> None:
    benchmark.pedantic(tenseal_recipe, args=(digits_he.recipe, digits_he.x_batch[0],
                                             digits_he.weights), rounds=3, iterations=1)
