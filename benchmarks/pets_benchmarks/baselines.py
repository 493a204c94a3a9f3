"""The same MLP written without pets, as TenSEAL users write it: the baselines pets is held to.

* :func:`tenseal_recipe` — TenSEAL's tutorial recipe, one sample per
  ``CKKSVector`` and ``vector.mm(W)``, with TenSEAL's full Galois key set.
* :func:`raw_batched` — exactly the operations pets' batched packing performs,
  written by hand against the SEAL API that TenSEAL ships (no pets code), to
  measure what pets' own layer costs.
* :func:`tenseal_vectors_batched` — the same slot-batched algorithm written
  with TenSEAL's own ``CKKSVector`` API (one vector per feature,
  ``vector * weight`` and ``+``), as a TenSEAL user would write it.
* :class:`TutorialCNN` — TenSEAL's tutorial MNIST CNN as the tutorial writes it
  (``im2col_encoding``, ``conv2d_im2col``, ``pack_vectors``, ``mm``), with its
  parameters (N=8192, 26-bit scale, every Galois key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "RecipeContext",
    "TutorialCNN",
    "raw_batched",
    "tenseal_recipe",
    "tenseal_vectors_batched",
]


class RecipeContext:
    """A TenSEAL context as the tutorials make it: same ring and chain, every Galois key."""

    def __init__(self, poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int],
                 scale_bits: int, *, threads: int | None = None) -> None:
        import tenseal as ts

        options = {} if threads is None else {"n_threads": threads}
        self.context = ts.context(
            ts.SCHEME_TYPE.CKKS, poly_modulus_degree,
            coeff_mod_bit_sizes=list(coeff_mod_bit_sizes), **options,
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


class TutorialCNN:
    """TenSEAL's tutorial MNIST CNN (conv 7x7 stride 3, square, FC, square, FC), as written
    there: ``net`` is the torch model (``Conv2d``, ``Square``, ``Flatten``, two ``Linear``
    with a ``Square`` between, as :func:`pets_benchmarks.workloads.train_tutorial_cnn` makes).
    """

    #: the tutorial's parameters
    POLY_MODULUS_DEGREE = 8192
    SCALE_BITS = 26
    COEFF_MOD_BIT_SIZES = (31, 26, 26, 26, 26, 26, 26, 31)

    def __init__(self, net: Any, *, threads: int | None = None) -> None:
        import torch

        conv = net[0]
        fc1, fc2 = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.kernel = tuple(conv.kernel_size)
        self.stride = int(conv.stride[0])
        self.conv_weight = conv.weight.detach().view(conv.out_channels, *self.kernel).tolist()
        self.conv_bias = conv.bias.detach().tolist()
        self.fc1_weight = fc1.weight.detach().T.tolist()
        self.fc1_bias = fc1.bias.detach().tolist()
        self.fc2_weight = fc2.weight.detach().T.tolist()
        self.fc2_bias = fc2.bias.detach().tolist()
        self.recipe = RecipeContext(self.POLY_MODULUS_DEGREE, self.COEFF_MOD_BIT_SIZES,
                                    self.SCALE_BITS, threads=threads)

    def encrypt(self, image: np.ndarray) -> tuple[Any, int]:
        """``im2col_encoding`` of one 28x28 image: the encrypted windows and their count."""
        import tenseal as ts

        side = int(np.sqrt(np.asarray(image).size))
        return ts.im2col_encoding(self.recipe.context, np.asarray(image).reshape(side, side)
                                  .tolist(), self.kernel[0], self.kernel[1], self.stride)

    def forward(self, encrypted: Any, windows: int) -> Any:
        import tenseal as ts

        channels = [encrypted.conv2d_im2col(kernel, windows) + bias
                    for kernel, bias in zip(self.conv_weight, self.conv_bias, strict=True)]
        x = ts.CKKSVector.pack_vectors(channels)
        x.square_()
        x = x.mm(self.fc1_weight) + self.fc1_bias
        x.square_()
        return x.mm(self.fc2_weight) + self.fc2_bias
