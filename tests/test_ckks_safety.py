"""CKKS safety: values that would wrap are refused, deep chains stay exact, forged bytes fail.

Bounds are tracked on every value without decrypting; parameters that cannot
work are refused when the backend is made; key sets are named by a fingerprint
of their public key, so relabelled or forged metadata is refused.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import pets
from pets.backends.ckks.keys import level_table, seal_context
from pets.backends.ckks.params import choose_parameters, deepest
from pets.serialization import pack, unpack


@pytest.fixture(scope="module")
def shallow() -> pets.Backend:
    return pets.backend("ckks", depth=2)


# ---- values that would wrap -------------------------------------------------------------


def test_a_product_that_would_wrap_is_refused_before_decrypting(shallow: pets.Backend) -> None:
    """Issue #8: 4096 rows of 1000 squared gave -48575; now a ValueRangeError."""
    t = shallow.encrypt(np.full((4096, 2), 1000.0)) * 1.0
    with pytest.raises(pets.ValueRangeError, match=re.escape(
        "the values of this multiplication may reach 1e+06 (a bound pets tracks through each "
        "operation), beyond the 5.24e+05 a ciphertext holds at this level before it wraps "
        "around into garbage; scale the data down, or create the backend with room for them: "
        "pets.backend('ckks', depth=2, max_value=4e+06)"
    )):
        t * t


def test_the_suggested_fix_holds_the_values() -> None:
    be = pets.backend("ckks", depth=2, max_value=4e6)
    t = be.encrypt(np.full((4096, 2), 1000.0)) * 1.0
    np.testing.assert_allclose(be.decrypt(t * t), 1e6, rtol=1e-6)


def test_sparse_ciphertexts_hold_larger_values(shallow: pets.Backend) -> None:
    """A few samples in a batched ciphertext encode to small coefficients: no wrap, no refusal."""
    t = shallow.encrypt(np.full((4, 2), 1000.0), layout="batched") * 1.0
    np.testing.assert_allclose(shallow.decrypt(t * t), 1e6, rtol=1e-6)


def test_bounds_follow_each_operation(shallow: pets.Backend) -> None:
    x = shallow.encrypt(np.array([[0.5, -2.0]]), layout="batched")
    assert x.data.bound == 2.0
    assert (x * 3.0 + 1.0).data.bound == 7.0
    assert (x @ np.array([[1.0], [-3.0]])).data.bound == 8.0
    assert (x * x).data.bound == 4.0
    assert x.sum(axis=1).data.bound == 4.0


def test_a_loaded_tensor_keeps_its_bound(shallow: pets.Backend) -> None:
    x = shallow.encrypt(np.array([[0.5, -2.0]]))
    assert shallow.load_tensor(x.to_bytes()).data.bound == 2.0


def test_a_forged_bound_is_refused(shallow: pets.Backend) -> None:
    envelope = unpack(shallow.encrypt(np.ones((1, 2))).to_bytes(), kind="tensor")
    envelope.meta["bound"] = 1e30
    with pytest.raises(pets.SerializationError, match="claim values up to 1e\\+30"):
        shallow.load_tensor(pack(envelope))


def test_an_oversized_plain_operand_names_the_fix(shallow: pets.Backend) -> None:
    with pytest.raises(pets.ValueRangeError, match=re.escape("create the backend with room")):
        (shallow.encrypt(np.ones((4096, 1))) * 1.0) * 1.0 + 1e7


# ---- deep parameters ----------------------------------------------------------------------


def test_depth_beyond_any_secure_chain_is_refused_when_the_backend_is_made() -> None:
    with pytest.raises(pets.ParameterError, match=re.escape(
        f"no 128-bit-secure CKKS parameters give depth 26 with 1 slots; the deepest that works "
        f"is depth {deepest()}"
    )):
        pets.backend("ckks", depth=26)


@pytest.mark.parametrize("depth", [12, 18, 24, 25])
def test_every_level_keeps_its_scale_near_the_chosen_one(depth: int) -> None:
    """Anchored at the bottom, scales stay within 0.1 bit of 2**scale_bits (they drifted to
    2**41 at depth 18 and to infinity at depth 24)."""
    params = choose_parameters(depth)
    levels = level_table(seal_context(params), params.scale_bits)
    assert len(levels) == depth + 1
    for level in levels.values():
        assert abs(math.log2(level.scale) - params.scale_bits) < 0.1
        assert level.capacity >= 2.0 ** (params.coeff_mod_bit_sizes[0] - params.scale_bits - 2)


@pytest.mark.slow
def test_a_deep_chain_multiplies_down_to_its_last_level() -> None:
    be = pets.backend("ckks", depth=20)
    x = be.encrypt(np.full((1, 4), 0.97), layout="batched")
    y = x
    for _ in range(20):
        y = y * x
    np.testing.assert_allclose(be.decrypt(y), 0.97**21, rtol=1e-3)


# ---- fingerprints and forged metadata ----------------------------------------------------


def test_key_id_is_a_fingerprint_of_the_public_keys(shallow: pets.Backend) -> None:
    shallow.encrypt([1.0])
    public = pets.load_backend(shallow.public().to_bytes())
    assert public.key_id == shallow.key_id == shallow.keys.fingerprint


def test_relabelled_key_bytes_are_refused(shallow: pets.Backend) -> None:
    envelope = unpack(shallow.public().to_bytes(), kind="backend")
    envelope.key_id = "0" * 32
    with pytest.raises(pets.SerializationError, match="were relabelled, forged or corrupted"):
        pets.load_backend(pack(envelope))


def test_key_bytes_whose_parameters_were_edited_are_refused(shallow: pets.Backend) -> None:
    envelope = unpack(shallow.public().to_bytes(), kind="backend")
    envelope.meta["scale_bits"] = 30
    envelope.meta["coeff_mod_bit_sizes"] = [50, 30, 30, 60]
    with pytest.raises(pets.SerializationError):
        pets.load_backend(pack(envelope))


def test_ckks_key_bytes_relabelled_as_plain_are_refused(shallow: pets.Backend) -> None:
    envelope = unpack(shallow.to_bytes(include_secret_key=True), kind="backend")
    envelope.backend = "plain"
    with pytest.raises(pets.SerializationError, match="carry key material"):
        pets.load_backend(pack(envelope))


def test_a_secret_key_from_other_keys_is_refused(shallow: pets.Backend) -> None:
    other = pets.backend("ckks", depth=2)
    ours = unpack(shallow.to_bytes(include_secret_key=True), kind="backend")
    theirs = unpack(other.to_bytes(include_secret_key=True), kind="backend")
    ours.blobs[3] = theirs.blobs[3]
    with pytest.raises(pets.SerializationError, match="does not belong to the public key"):
        pets.load_backend(pack(ours))


def test_a_tensor_relabelled_from_other_keys_is_refused_when_decrypted(
    shallow: pets.Backend,
) -> None:
    """Same parameters, other keys: SEAL cannot tell; the tracked bound can (garbage is huge)."""
    other = pets.backend("ckks", depth=2)
    envelope = unpack(other.encrypt(np.ones((1, 2))).to_bytes(), kind="tensor")
    envelope.key_id = shallow.key_id
    relabelled = shallow.load_tensor(pack(envelope))
    with pytest.raises(pets.SerializationError, match=re.escape(
        "far beyond the bound 1 tracked for this tensor: its ciphertexts were encrypted under "
        "other keys and relabelled, or damaged"
    )):
        shallow.decrypt(relabelled)


def test_a_ciphertext_at_a_forged_scale_is_refused(shallow: pets.Backend) -> None:
    import tenseal.sealapi as sealapi

    from pets import seal_io

    keys = shallow.keys
    plain, ct = sealapi.Plaintext(), sealapi.Ciphertext()
    keys.encoder.encode([1.0, 2.0], keys.top.parms_id, 2.0**35, plain)
    keys.encryptor.encrypt(plain, ct)
    envelope = unpack(shallow.encrypt(np.ones((1, 2)), layout="per_sample").to_bytes(),
                      kind="tensor")
    envelope.blobs[0] = seal_io.dump(ct)
    with pytest.raises(pets.SerializationError, match="is not the scale of its level"):
        shallow.load_tensor(pack(envelope))


def test_repr_and_describe_make_no_keys() -> None:
    be = pets.backend("ckks")
    repr(be), be.describe(), be.has_secret_key
    assert be._keys is None
    net_input = np.ones((2, 3))
    import torch

    model = pets.compile(torch.nn.Linear(3, 2), backend=be, example_input=net_input)
    assert np.allclose(model.predict(net_input), model.simulate(net_input), atol=1e-3)


# ---- SEAL bytes staged in memory, failures as pets errors --------------------------------


def test_seal_objects_pass_through_an_anonymous_memory_file(shallow: pets.Backend) -> None:
    from pets import seal_io

    assert seal_io._HAS_MEMFD  # Linux: no /dev/shm (64 MiB in containers), nothing on disk
    x = shallow.encrypt(np.ones((1, 2)))
    assert np.allclose(shallow.decrypt(shallow.load_tensor(x.to_bytes())), 1.0, atol=1e-6)


def test_a_failing_scratch_file_is_a_serialization_error(
    shallow: pets.Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: object,
) -> None:
    import tempfile

    from pets import seal_io

    monkeypatch.setattr(seal_io, "_HAS_MEMFD", False)
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/pets-scratch")
    with pytest.raises(pets.SerializationError, match="could not stage a ciphertext in a "
                       "temporary file"):
        shallow.encrypt(np.ones((1, 2))).to_bytes()


def test_a_client_with_only_the_description_checks_the_announced_input_range() -> None:
    """What a server announces (Requirements.to_dict, as JSON) carries the calibrated input
    bound, so a client that has no model refuses inputs the model was not calibrated for."""
    import json

    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), pets.nn.Square(), torch.nn.Linear(4, 2))
    model = pets.compile(net, backend=pets.backend("ckks"), example_input=torch.randn(16, 8))
    announced = pets.Requirements.from_dict(json.loads(json.dumps(model.requirements.to_dict())))
    assert announced == model.requirements
    client = pets.backend("ckks")
    client.prepare(announced)
    bound = model.levelled_requirements.input_bound
    assert bound is not None
    assert bound < 8.0 < client.params.max_abs_value  # beyond calibration, within the scheme
    with pytest.raises(pets.ValueRangeError, match="beyond the range this model was calibrated"):
        client.encrypt_for(np.full((2, 8), 8.0), announced)
