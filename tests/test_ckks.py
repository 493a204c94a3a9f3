"""CKKS-specific behaviour: parameters, keys, packings, precision."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

import pets
from pets.backends.ckks.matvec import plan_matvec, stage
from pets.backends.ckks.params import MAX_MODULUS_BITS_128, choose_parameters
from pets.backends.levelled import LevelledRequirements


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 6, 10])
def test_parameters_hold_the_depth_at_128_bit_security(depth: int) -> None:
    params = choose_parameters(depth)
    assert params.depth == depth
    assert sum(params.coeff_mod_bit_sizes) <= MAX_MODULUS_BITS_128[params.poly_modulus_degree]
    assert params.coeff_mod_bit_sizes[-1] == 60  # key-switching prime above every data prime



def levelled(**fields: Any) -> pets.Requirements:
    """Requirements whose levelled extension has ``fields``."""
    return pets.Requirements(extension=LevelledRequirements(**fields))

def test_smallest_ring_is_preferred_over_a_larger_scale() -> None:
    assert choose_parameters(3).poly_modulus_degree == 8192
    assert choose_parameters(3, scale_bits=40).poly_modulus_degree == 16384


def test_parameters_can_be_overridden_and_are_visible() -> None:
    be = pets.backend("ckks", poly_modulus_degree=16384, coeff_mod_bit_sizes=[60, 40, 40, 60])
    info = be.describe()
    assert (info["poly_modulus_degree"], info["coeff_mod_bit_sizes"]) == (16384, [60, 40, 40, 60])
    assert info["depth"] == 2 and info["security_bits"] == 128


def test_only_the_rotation_keys_a_product_needs_are_made() -> None:
    be = pets.backend("ckks", depth=1)
    be.prepare(levelled(depth=1, matmul_shapes=((16, 4),), first_product=(16, 4)))
    plan = plan_matvec(16, 4)
    staged = {16 << j for j in range(8)}  # first product: 16 * 2^j up to N/4
    assert set(be.describe()["rotation_steps"]) == plan.steps | staged
    assert plan.steps == {1, 2, 4, 8}  # 4 diagonals (baby 1, giant 2), then fold by 4 and 8


def test_public_key_set_is_smaller_than_tenseals_all_rotations_context() -> None:
    import tenseal as ts

    be = pets.backend("ckks", depth=3)
    be.prepare(levelled(depth=3, matmul_shapes=((64, 32), (32, 10))))
    params = be.params
    context = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree,
                         coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes))
    context.generate_galois_keys()
    assert len(be.public().to_bytes()) < len(context.serialize(save_secret_key=False))


def test_scales_are_exact_across_levels() -> None:
    """Adding values computed at different depths needs no scale forcing, so no drift."""
    be = pets.backend("ckks", depth=3, layout="batched")
    x = np.linspace(-1, 1, 64).reshape(8, 8)
    t = be.encrypt(x)
    result = ((t * t) * 0.5 + t * 0.25 + t) * t
    expected = ((x * x) * 0.5 + x * 0.25 + x) * x
    assert np.abs(be.decrypt(result) - expected).max() < 1e-5


@pytest.mark.parametrize("shape", [(64, 32), (10, 30), (7, 3), (32, 10)])
def test_staged_first_product_matches_the_ordinary_one(shape: tuple[int, int]) -> None:
    n, m = shape
    rng = np.random.default_rng(n * m)
    x, w = rng.uniform(-1, 1, (2, n)), rng.normal(size=(n, m))
    be = pets.backend("ckks", depth=2, layout="per_sample")
    staged = be.encrypt_for(x, levelled(first_product=(n, m)))
    assert staged.data.staged_for == (n, m)
    assert np.abs(be.decrypt(staged @ w) - x @ w).max() < 1e-4
    assert np.abs(be.decrypt(staged) - x).max() < 1e-6  # block 0 holds the sample itself


def test_stage_lays_rotations_in_blocks() -> None:
    slots = stage(np.array([1.0, 2.0, 3.0]), 3, 4, 32)
    assert slots[:16].tolist() == [1, 2, 3, 0, 2, 3, 0, 1, 3, 0, 1, 2, 0, 1, 2, 3]
    assert not slots[16:].any()


def test_staged_tensor_refuses_other_operations(ckks: pets.Backend) -> None:
    staged = ckks.encrypt_for(np.ones((1, 8)), levelled(first_product=(8, 2)),
                              layout="per_sample")
    with pytest.raises(pets.LayoutMismatchError, match=re.escape(
        "this per_sample tensor is packed for its first product with a 8x2 matrix"
    )):
        staged + 1.0
    with pytest.raises(pets.LayoutMismatchError, match="packed for its first product"):
        staged @ np.ones((8, 3))
    loaded = ckks.load_tensor(staged.to_bytes())
    assert loaded.data.staged_for == (8, 2)


def test_model_encrypt_stages_a_single_sample_for_the_first_layer() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(16, 8), pets.nn.Square(), torch.nn.Linear(8, 3))
    x = torch.randn(32, 16)
    be = pets.backend("ckks")
    model = pets.compile(net, backend=be, example_input=x)
    one = model.encrypt(x[:2].numpy())
    assert one.layout == "per_sample" and one.data.staged_for == (16, 8)
    many = model.encrypt(x.numpy())
    assert many.layout == "batched"
    expected = net(x).detach().numpy()
    assert np.abs(model.decrypt(model(one)) - expected[:2]).max() < 1e-3
    assert np.abs(model.decrypt(model(many)) - expected).max() < 1e-3


def test_transparent_products_are_avoided(ckks: pets.Backend) -> None:
    """Weights that round to zero at the scale would make SEAL refuse the product."""
    x = ckks.encrypt(np.ones((3, 4)))
    w = np.zeros((4, 2))
    w[0, 0] = 1e-30
    assert np.abs(ckks.decrypt(x @ w)).max() < 1e-6
    assert np.abs(ckks.decrypt(x * 1e-30)).max() < 1e-6


@pytest.mark.parametrize(
    "shape", [(64, 32), (32, 10), (10, 30), (3, 7), (5, 1), (1, 5), (100, 300)]
)
def test_per_sample_product_widening_and_narrowing(shape: tuple[int, int]) -> None:
    """K = min(p_in, p_out) diagonals; a narrowing layer folds its partial outputs."""
    n, m = shape
    rng = np.random.default_rng(n + m)
    x, w = rng.uniform(-1, 1, (2, n)), rng.normal(size=(n, m)) / np.sqrt(n)
    be = pets.backend("ckks", depth=2, layout="per_sample")
    y = be.encrypt(x) @ w
    assert np.abs(be.decrypt(y) - x @ w).max() < 1e-5
    # the output is in the ordinary layout: padding slots are zero, so sums are right
    assert np.abs(be.decrypt(y.sum(axis=-1)) - (x @ w).sum(axis=1)).max() < 1e-4


def test_narrow_layers_use_few_diagonals_and_rotations() -> None:
    plan = plan_matvec(576, 10)
    assert plan.diagonals == 16 and plan.rotations == 12  # not 1024 diagonals, 62 rotations
    assert plan.steps == {1, 4, 16, 32, 64, 128, 256, 512}  # keys: 1, the baby size, the folds
