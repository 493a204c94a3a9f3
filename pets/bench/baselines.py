"""The same MLP written without pets, as TenSEAL users write it: the baselines pets is held to.

* :func:`tenseal_recipe` — TenSEAL's tutorial recipe, one sample per
  ``CKKSVector`` and ``vector.mm(W)``, with TenSEAL's full Galois key set.
* :func:`raw_batched` — exactly the operations pets' batched packing performs,
  written by hand against the SEAL API that TenSEAL ships (no pets code), to
  measure what pets' own layer costs.
* :func:`tenseal_vectors_batched` — the same slot-batched algorithm written
  with TenSEAL's own ``CKKSVector`` API (one vector per feature,
  ``vector * weight`` and ``+``), as a TenSEAL user would write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RecipeContext", "raw_batched", "tenseal_recipe", "tenseal_vectors_batched"]


class RecipeContext:
    """A TenSEAL context as the tutorials make it: same ring and chain, every Galois key."""

    def __init__(self, poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int],
                 scale_bits: int) -> None:
        import tenseal as ts

        self.context = ts.context(
            ts.SCHEME_TYPE.CKKS, poly_modulus_degree, coeff_mod_bit_sizes=list(coeff_mod_bit_sizes)
        )
        self.context.global_scale = 2.0**scale_bits
        self.context.generate_galois_keys()

    def public_bytes(self) -> int:
        return len(self.context.serialize(save_secret_key=False))


def tenseal_recipe(
    recipe: RecipeContext, sample: np.ndarray, weights: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Any:
    """``ckks_vector(ctx, x).mm(W) + b``, square between layers: one sample, encrypted result."""
    import tenseal as ts

    vector = ts.ckks_vector(recipe.context, sample.tolist())
    for index, (matrix, bias) in enumerate(weights):
        if index:
            vector = vector.square()
        vector = vector.mm(matrix.tolist()) + bias.tolist()
    return vector


def tenseal_vectors_batched(
    recipe: RecipeContext, columns: list[Any], weights: Sequence[tuple[np.ndarray, np.ndarray]]
) -> list[Any]:
    """The batched MLP with TenSEAL vectors: ``sum_i column_i * W[i, j] + b_j`` per output.

    ``columns`` are ``CKKSVector``s, one per input feature. TenSEAL rescales after
    every scalar product, where pets and :func:`raw_batched` rescale once per sum.
    """
    for index, (matrix, bias) in enumerate(weights):
        if index:
            columns = [column.square() for column in columns]
        outputs = []
        for j in range(matrix.shape[1]):
            acc = None
            for i, column in enumerate(columns):
                if abs(matrix[i, j]) < 1e-9:  # encodes to zero: TenSEAL refuses it
                    continue
                term = column * float(matrix[i, j])
                acc = term if acc is None else acc + term
            assert acc is not None
            outputs.append(acc + float(bias[j]))
        columns = outputs
    return columns


def raw_batched(keys: Any, columns: list[Any], weights: Sequence[tuple[np.ndarray, np.ndarray]]
                ) -> list[Any]:
    """pets' batched MLP by hand on SEAL: per output, sum of scalar products, one rescale.

    ``keys`` is a pets CKKS key set (only its SEAL objects are used); ``columns``
    holds one ciphertext per input feature.
    """
    import tenseal.sealapi as sealapi

    ev, encoder = keys.evaluator, keys.encoder
    for index, (matrix, bias) in enumerate(weights):
        if index:
            squared = []
            for ct in columns:
                out = sealapi.Ciphertext()
                ev.square(ct, out)
                ev.relinearize_inplace(out, keys.relin_keys)
                ev.rescale_to_next_inplace(out)
                squared.append(out)
            columns = squared
        # pets' exact-scale rule, q * S_below / s, reduces to s for canonical ciphertexts
        scale = columns[0].scale
        outputs = []
        tmp = sealapi.Ciphertext()
        for j in range(matrix.shape[1]):
            acc = None
            for i, ct in enumerate(columns):
                if abs(matrix[i, j]) * scale < 0.5:  # encodes to zero: SEAL refuses it
                    continue
                plain = sealapi.Plaintext()
                encoder.encode(float(matrix[i, j]), ct.parms_id(), scale, plain)
                if acc is None:
                    acc = sealapi.Ciphertext()
                    ev.multiply_plain(ct, plain, acc)
                else:
                    ev.multiply_plain(ct, plain, tmp)
                    ev.add_inplace(acc, tmp)
            assert acc is not None
            ev.rescale_to_next_inplace(acc)
            plain_bias = sealapi.Plaintext()
            encoder.encode([float(bias[j])] * keys.params.slots, acc.parms_id(), acc.scale,
                           plain_bias)
            ev.add_plain_inplace(acc, plain_bias)
            outputs.append(acc)
        columns = outputs
    return columns
