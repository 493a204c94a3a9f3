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
from pets_benchmarks.baselines import raw_batched, tenseal_recipe


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


# ---- beyond the digits MLP: the tutorial CNN, one image --------------------------------------


@pytest.fixture(scope="module")
def tutorial_cnn() -> Any:
    from pets_benchmarks.baselines import TutorialCNN
    from pets_benchmarks.workloads import digits_28, train_tutorial_cnn

    import pets

    net = train_tutorial_cnn(epochs=2)
    data = digits_28()
    model = pets.compile(net, backend=pets.backend("ckks"), example_input=data.x_train)
    model(model.encrypt(data.x_test[:1]))  # warm: encode the diagonals once
    return model, TutorialCNN(net, threads=1), data.x_test[0]


@pytest.mark.benchmark(group="cnn-one-image")
def test_pets_cnn_per_sample(benchmark: Any, tutorial_cnn: Any) -> None:
    model, _recipe, image = tutorial_cnn
    x = model.encrypt(image[None])
    benchmark.pedantic(model, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="cnn-one-image")
def test_tenseal_tutorial_cnn_recipe(benchmark: Any, tutorial_cnn: Any) -> None:
    _model, recipe, image = tutorial_cnn
    encrypted, windows = recipe.encrypt(image)
    benchmark.pedantic(recipe.forward, args=(encrypted, windows), rounds=3, iterations=1)
