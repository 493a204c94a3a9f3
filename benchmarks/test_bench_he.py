"""HE overhead of the digits MLP (64-32-10, square), side by side in one run.

    pytest benchmarks/test_bench_he.py --benchmark-group-by=group

Groups: ``batched-4096`` (one ciphertext chunk of 4096 samples: plain, pets,
the same SEAL operations without pets) and ``one-sample`` (pets per-sample
packing against TenSEAL's ``ckks_vector(ctx, x).mm(W)`` recipe). Compare
within a group; ``pets bench`` prints the same comparison as ratios.

Each function first checks that what it times computes the model: its decrypted
logits against the plaintext model's, within :data:`CKKS_TOLERANCE` (TenSEAL's
tutorial CNN recipe, with its 26-bit scale, within :data:`RECIPE_TOLERANCE` and the
same prediction). A run that misses is a failure, not a timing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pets_benchmarks.baselines import raw_batched, tenseal_recipe
from pets_benchmarks.checks import assert_close, decrypt_columns

#: largest logit difference from plaintext that CKKS at pets' parameters may show
CKKS_TOLERANCE = 1e-3
#: the TenSEAL tutorial CNN recipe keeps less precision (26-bit scale): its logits may be
#: off by this much, and its prediction must still equal plaintext's
RECIPE_TOLERANCE = 2.0


def _plain(digits_he: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(digits_he.plain.predict(x))


@pytest.mark.benchmark(group="batched-4096")
def test_plain_batch(benchmark: Any, digits_he: Any) -> None:
    with torch.no_grad():
        torch_logits = digits_he.net(torch.tensor(digits_he.x_batch, dtype=torch.float32))
    assert_close(_plain(digits_he, digits_he.x_batch), torch_logits.numpy(), 1e-4,
                 "plain backend against torch")
    benchmark(digits_he.plain.predict, digits_he.x_batch)


@pytest.mark.benchmark(group="batched-4096")
def test_pets_ckks_batched(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch, layout="batched")
    assert_close(digits_he.ckks.decrypt(digits_he.ckks(x)), _plain(digits_he, digits_he.x_batch),
                 CKKS_TOLERANCE, "pets CKKS batched")
    benchmark.pedantic(digits_he.ckks, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="batched-4096")
def test_raw_seal_batched_same_operations(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch, layout="batched")
    columns = list(x.data.cts[0])
    out = raw_batched(digits_he.backend.keys, columns, digits_he.weights)
    assert_close(decrypt_columns(digits_he.backend.keys, out, len(digits_he.x_batch)),
                 _plain(digits_he, digits_he.x_batch), CKKS_TOLERANCE, "raw SEAL batched")
    benchmark.pedantic(raw_batched, args=(digits_he.backend.keys, columns, digits_he.weights),
                       rounds=3, iterations=1)


@pytest.mark.benchmark(group="one-sample")
def test_pets_ckks_per_sample(benchmark: Any, digits_he: Any) -> None:
    x = digits_he.ckks.encrypt(digits_he.x_batch[:1], layout="per_sample")
    assert_close(digits_he.ckks.decrypt(digits_he.ckks(x)), _plain(digits_he,
                 digits_he.x_batch[:1]), CKKS_TOLERANCE, "pets CKKS per-sample")
    benchmark.pedantic(digits_he.ckks, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="one-sample")
def test_tenseal_recipe_per_sample(benchmark: Any, digits_he: Any) -> None:
    result = tenseal_recipe(digits_he.recipe, digits_he.x_batch[0], digits_he.weights)
    assert_close(result.decrypt(), _plain(digits_he, digits_he.x_batch[:1]), CKKS_TOLERANCE,
                 "TenSEAL recipe")
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
    with torch.no_grad():
        logits = net(torch.tensor(data.x_test[:1], dtype=torch.float32)).numpy()
    return model, TutorialCNN(net, threads=1), data.x_test[0], logits


@pytest.mark.benchmark(group="cnn-one-image")
def test_pets_cnn_per_sample(benchmark: Any, tutorial_cnn: Any) -> None:
    model, _recipe, image, logits = tutorial_cnn
    x = model.encrypt(image[None])
    assert_close(model.decrypt(model(x)), logits, CKKS_TOLERANCE, "pets CKKS tutorial CNN")
    benchmark.pedantic(model, args=(x,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="cnn-one-image")
def test_tenseal_tutorial_cnn_recipe(benchmark: Any, tutorial_cnn: Any) -> None:
    _model, recipe, image, logits = tutorial_cnn
    encrypted, windows = recipe.encrypt(image)
    result = np.asarray(recipe.forward(encrypted, windows).decrypt())
    assert_close(result, logits, RECIPE_TOLERANCE, "TenSEAL tutorial CNN recipe")
    assert result.argmax() == logits.argmax(), "the TenSEAL recipe changed the prediction"
    benchmark.pedantic(recipe.forward, args=(encrypted, windows), rounds=3, iterations=1)
