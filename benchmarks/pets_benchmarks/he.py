"""HE overhead: the digits MLP (64-32-10, square) in the clear, in both CKKS packings,
and as TenSEAL users write it — all in one run, reported as ratios.

>>> from pets_benchmarks.he import run_he
>>> report = run_he(batch=64, latency_samples=1, recipe_samples=1)   # doctest: +SKIP
>>> print(report)                                                    # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pets
from pets.backends.ckks import CKKSBackend
from pets_benchmarks.baselines import (
    RecipeContext,
    raw_batched,
    tenseal_recipe,
    tenseal_vectors_batched,
)
from pets_benchmarks.report import Table
from pets_benchmarks.workloads import accuracy, digits, linear_weights, train_digits_mlp

__all__ = ["HEReport", "run_he"]


@dataclass
class HEReport:
    """Per-technique rows plus the ratios the HE targets are stated in."""

    table: Table
    ratios: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [str(self.table),
                 "(accuracy: on the test digits for plain and pets batched; for the other rows,",
                 " the share of predictions equal to plaintext's)", "", "ratios (same run):"]
        lines += [f"  {name:<58} {value:10.4g}" for name, value in self.ratios.items()]
        lines.append(f"parameters: {self.parameters}")
        return "\n".join(lines)


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_he(*, batch: int = 4096, latency_samples: int = 4, recipe_samples: int = 4,
           progress: Callable[[str], None] | None = None) -> HEReport:
    """Measure the digits MLP under plain, CKKS batched, CKKS per-sample and the baselines."""
    say = progress or (lambda _msg: None)
    data = digits()
    say("training the digits MLP (64-32-10, square activation)")
    net = train_digits_mlp()
    weights = linear_weights(net)
    x_test, y_test = data.x_test, data.y_test
    reps = -(-batch // len(x_test))
    x_batch = np.tile(x_test, (reps, 1))[:batch]
    scored = min(batch, len(x_test))  # accuracy on distinct test digits only

    plain_model = pets.compile(net, backend=pets.backend("plain"), example_input=data.x_train)
    plain_s, plain_out = _timed(lambda: plain_model.predict(x_batch), repeat=3)
    plain_acc = accuracy(plain_out[:scored], y_test[:scored])

    say("compiling for CKKS (parameters and rotation keys sized for the model)")
    backend = CKKSBackend()
    model = pets.compile(net, backend=backend, example_input=data.x_train)
    public_bytes = len(backend.public().to_bytes())
    params = backend.params

    table = Table(["technique", "samples", "compute s", "per sample ms", "vs plain",
                   "accuracy", "input bytes/sample", "differs from pets batched"])
    table.add("plain (numpy)", batch, plain_s, 1e3 * plain_s / batch, 1.0, plain_acc, 64 * 8,
              "no encryption: the same weights in numpy")

    say(f"CKKS batched: encrypting {batch} samples")
    enc_s, x_enc = _timed(lambda: model.encrypt(x_batch, layout="batched"))
    in_bytes = len(x_enc.to_bytes())
    say("CKKS batched: inference on ciphertexts")
    batched_s, y_enc = _timed(lambda: model(x_enc), repeat=2)
    dec_s, logits = _timed(lambda: model.decrypt(y_enc))
    batched_acc = accuracy(logits[:scored], y_test[:scored])
    table.add("ckks batched (pets)", batch, batched_s, 1e3 * batched_s / batch,
              batched_s / plain_s, batched_acc, in_bytes / batch, "-")

    say("raw SEAL: the same batched operations without pets, one ciphertext chunk")
    chunk = model.encrypt(x_batch[: params.slots], layout="batched")
    pets_runs, raw_runs = [], []
    for _ in range(5):  # interleaved pairs; the median ratio resists a busy machine
        pets_runs.append(_timed(lambda: model(chunk))[0])
        raw_runs.append(_timed(lambda: raw_batched(backend.keys, list(chunk.data.cts[0]),
                                                   weights))[0])
    raw_s = min(raw_runs)
    wrapper_ratio = float(np.median(np.array(pets_runs) / np.array(raw_runs)))
    table.add("ckks batched (raw SEAL, no pets)", chunk.shape[0], raw_s,
              1e3 * raw_s / chunk.shape[0], raw_s / plain_s, float("nan"), float("nan"),
              "the same SEAL calls written by hand, no pets layer; one ciphertext chunk")

    say(f"CKKS per-sample: {latency_samples} samples one by one")
    singles = [model.encrypt(x_test[i : i + 1], layout="per_sample")
               for i in range(latency_samples)]
    single_bytes = len(singles[0].to_bytes())
    model(singles[0])  # warm-up: encodes the diagonal plaintexts once per layer (cached)
    per_sample_s, outs = _timed(lambda: [model(s) for s in singles])
    per_sample_logits = np.concatenate([model.decrypt(o) for o in outs])
    agree = float((per_sample_logits.argmax(1) == plain_out[:latency_samples].argmax(1)).mean())
    table.add("ckks per-sample (pets)", latency_samples, per_sample_s,
              1e3 * per_sample_s / latency_samples, (per_sample_s / latency_samples)
              / (plain_s / batch), agree, single_bytes,
              "one ciphertext per sample (latency packing); accuracy = agreement with plain")

    say(f"TenSEAL tutorial recipe: {recipe_samples} samples, vector.mm(W), all Galois keys")
    recipe = RecipeContext(params.poly_modulus_degree, params.coeff_mod_bit_sizes,
                           params.scale_bits)
    recipe_s, recipe_vectors = _timed(
        lambda: [tenseal_recipe(recipe, x_test[i], weights) for i in range(recipe_samples)]
    )
    recipe_logits = np.array([v.decrypt() for v in recipe_vectors])
    recipe_agree = float(
        (recipe_logits.argmax(1) == plain_out[:recipe_samples].argmax(1)).mean()
    )
    recipe_per = recipe_s / recipe_samples
    table.add("TenSEAL recipe (ckks_vector.mm)", recipe_samples, recipe_s, 1e3 * recipe_per,
              recipe_per / (plain_s / batch), recipe_agree, float("nan"),
              "TenSEAL's tutorial: one CKKSVector per sample, vector.mm(W), every Galois key; "
              "same ring and chain; accuracy = agreement with plain")

    say("TenSEAL CKKSVector API: the batched algorithm, one chunk, as a TenSEAL user writes it")
    import tenseal as ts

    rows = chunk.shape[0]
    vectors = [ts.ckks_vector(recipe.context, x_batch[:rows, i].tolist())
               for i in range(x_batch.shape[1])]
    vectors_s, outputs = _timed(lambda: tenseal_vectors_batched(recipe, vectors, weights))
    vector_logits = np.stack([np.array(v.decrypt()) for v in outputs], axis=1)
    vector_agree = float((vector_logits.argmax(1) == plain_out[:rows].argmax(1)).mean())
    table.add("ckks batched (TenSEAL CKKSVector API)", rows, vectors_s, 1e3 * vectors_s / rows,
              vectors_s / plain_s * batch / rows, vector_agree, float("nan"),
              "the batched algorithm in TenSEAL's vector API: a rescale after every scalar "
              "product; one chunk; accuracy = agreement with plain")

    ratios = {
        "batched throughput / recipe throughput (target >= 1000)":
            recipe_per / (batched_s / batch),
        "per-sample latency / recipe latency (target <= 0.25)":
            (per_sample_s / latency_samples) / recipe_per,
        "pets batched / raw SEAL same ops, median of 5 pairs (target <= 1.05)":
            wrapper_ratio,
        "pets batched / TenSEAL CKKSVector API, same algorithm, one chunk":
            min(pets_runs) / vectors_s,
        "plain accuracy - ckks batched accuracy, points (target <= 0.5)":
            100 * (plain_acc - batched_acc),
        "public key bytes, pets / TenSEAL all-Galois context": public_bytes
            / recipe.public_bytes(),
        "batched encrypt s, decrypt s": enc_s + dec_s,
    }
    return HEReport(table, ratios, {**backend.describe(), "public_bytes": public_bytes,
                                     "recipe_public_bytes": recipe.public_bytes()})
