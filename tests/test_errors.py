"""Every bad input gets a specific pets error whose message names the fix."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import pets
from pets import registry
from pets.backends.levelled import LevelledRequirements


def test_unknown_backend_lists_registered_names() -> None:
    with pytest.raises(pets.UnknownBackendError, match=re.escape(
        "unknown backend 'paillier'; registered backends: " + ", ".join(pets.available_backends())
    )):
        pets.backend("paillier")


def test_missing_engine_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_LAZY", dict(registry._LAZY))  # registration undone after
    registry.register_lazy_backend("ghost", "pets_ghost_engine", "GhostBackend", "pets[ghost]")
    with pytest.raises(pets.BackendNotInstalledError, match=re.escape(
        "backend 'ghost' needs an engine that is not installed (pets_ghost_engine); "
        "install it with: pip install pets[ghost]"
    )):
        pets.backend("ghost")


def test_import_pets_imports_no_engine() -> None:
    code = (
        "import sys, pets; be = pets.backend('plain'); be.encrypt([1.0]);"
        "print(sorted(m for m in ('torch', 'tenseal', 'crypten', 'opacus', 'opendp') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(any_backend: pets.Backend, bad: float) -> None:
    with pytest.raises(pets.NonFiniteValueError, match=re.escape(
        "encrypt got NaN or infinite values; clean or clip the data first"
    )):
        any_backend.encrypt(np.array([1.0, bad]))


def test_non_finite_plain_operand_is_refused(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.NonFiniteValueError, match="multiply got NaN or infinite values"):
        any_backend.encrypt(np.ones(3)) * np.array([1.0, np.nan, 1.0])


def test_shape_mismatch_between_private_tensors(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "cannot add private tensors of shapes (2, 3) and (3, 3); private operands must have "
        "equal shapes"
    )):
        any_backend.encrypt(np.ones((2, 3))) + any_backend.encrypt(np.ones((3, 3)))


def test_shape_mismatch_with_plain_operand(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "cannot multiply a private tensor of shape (2, 3) and a plain array of shape (4,); "
        "the plain operand must broadcast to (2, 3)"
    )):
        any_backend.encrypt(np.ones((2, 3))) * np.ones(4)


def test_matmul_with_wrong_rows(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "cannot multiply a private tensor of shape (2, 3) by a matrix of shape (4, 2); "
        "the matrix needs 3 rows (transpose a torch Linear weight: x @ W.T)"
    )):
        any_backend.encrypt(np.ones((2, 3))) @ np.ones((4, 2))


def test_plain_matrix_on_the_left(any_backend: pets.Backend) -> None:
    with pytest.raises(TypeError, match=re.escape(
        "plain @ private is not supported: a private tensor holds samples as rows, so write "
        "x @ W (for a torch Linear weight: x @ W.T)"
    )):
        np.ones((2, 2)) @ any_backend.encrypt(np.ones((2, 2)))


def test_more_than_two_dimensions_on_a_matrix_backend(ckks: pets.Backend) -> None:
    with pytest.raises(pets.ShapeMismatchError, match=re.escape(
        "encrypt takes arrays of at most 2 dimensions (samples, features) on this backend, got "
        "shape (1, 2, 2); flatten each sample first, e.g. x.reshape(len(x), -1)"
    )):
        ckks.encrypt(np.ones((1, 2, 2)))


def test_tensors_of_different_keys_cannot_mix(any_backend: pets.Backend) -> None:
    other = type(any_backend)()
    a, b = any_backend.encrypt(np.ones(2)), other.encrypt(np.ones(2))
    with pytest.raises(pets.KeyMismatchError, match="tensors from different backends or keys"):
        a + b
    with pytest.raises(pets.KeyMismatchError, match="encrypt every operand with the same backend"):
        other.decrypt(a)


def test_tensors_of_different_backends_cannot_mix(ckks: pets.Backend, plain: pets.Backend) -> None:
    with pytest.raises(pets.KeyMismatchError, match=re.escape(
        f"(ckks key {ckks.key_id} vs plain key {plain.key_id})"
    )):
        ckks.encrypt(np.ones(2)) + plain.encrypt(np.ones(2))


def test_loading_a_tensor_under_foreign_keys(ckks: pets.Backend) -> None:
    data = ckks.encrypt(np.ones(2)).to_bytes()
    stranger = pets.backend("ckks", depth=3)
    with pytest.raises(pets.KeyMismatchError, match="load them with the backend"):
        pets.load_tensor(data, stranger)


def test_layouts_cannot_mix(ckks: pets.Backend) -> None:
    a = ckks.encrypt(np.ones((2, 2)), layout="batched")
    b = ckks.encrypt(np.ones((2, 2)), layout="per_sample")
    with pytest.raises(pets.LayoutMismatchError, match=re.escape(
        "cannot add a 'batched' tensor and a 'per_sample' tensor; encrypt both with the same "
        "layout"
    )):
        a + b


def test_unknown_layout_lists_the_choices(ckks: pets.Backend) -> None:
    with pytest.raises(ValueError, match=re.escape(
        "ckks backend has no layout 'diagonal'; choose one of: batched, per_sample"
    )):
        ckks.encrypt(np.ones(2), layout="diagonal")


def test_decrypting_without_the_secret_key(ckks: pets.Backend) -> None:
    server = pets.load_backend(ckks.public().to_bytes())
    assert not server.has_secret_key
    tensor = server.encrypt(np.ones(2))
    with pytest.raises(pets.MissingKeyError, match=re.escape(
        "this ckks backend holds no secret key (it came from .public(), or from to_bytes() "
        "without include_secret_key=True); send the tensor's to_bytes() to the key holder and "
        "decrypt there"
    )):
        server.decrypt(tensor)
    np.testing.assert_allclose(ckks.decrypt(ckks.load_tensor(tensor.to_bytes())), 1.0, atol=1e-4)


def test_secret_key_travels_only_when_asked(ckks: pets.Backend) -> None:
    assert not pets.load_backend(ckks.to_bytes()).has_secret_key
    restored = pets.load_backend(ckks.to_bytes(include_secret_key=True))
    assert restored.has_secret_key
    np.testing.assert_allclose(
        restored.decrypt(restored.load_tensor(ckks.encrypt([0.25]).to_bytes())), [0.25], atol=1e-4
    )


def test_public_backend_without_rotation_keys_says_who_must_make_them() -> None:
    owner = pets.backend("ckks", depth=2, layout="per_sample")
    server = owner.public()
    with pytest.raises(pets.MissingKeyError, match=re.escape(
        "no rotation key for step(s) [1, 2] in this public key set; the key holder must "
        "compile the model (or call backend.prepare) before sharing .public()"
    )):
        server.encrypt(np.ones((1, 4))) @ np.ones((4, 4))


def test_depth_exhausted_names_the_depth_to_ask_for() -> None:
    be = pets.backend("ckks", depth=1)
    x = be.encrypt(np.full(3, 0.5))
    with pytest.raises(pets.DepthExhaustedError, match=re.escape(
        "no multiplicative depth left for a multiplication: the ciphertext has used all 1 "
        "levels of these parameters; create the backend with a larger depth "
        "(pets.backend('ckks', depth=2))"
    )):
        (x * x) * x


def test_values_beyond_ckks_precision_range(ckks: pets.Backend) -> None:
    with pytest.raises(pets.ValueRangeError, match=re.escape(
        "|values| up to 1e+07 exceed 5.24e+05, the largest these CKKS parameters keep precisely"
    )):
        ckks.encrypt(np.array([1e7]))


def test_insecure_parameters_are_refused() -> None:
    with pytest.raises(pets.ParameterError, match=re.escape(
        "coefficient modulus of 240 bits is insecure at poly_modulus_degree=8192 (128-bit "
        "security allows at most 218)"
    )):
        pets.backend(
            "ckks", poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40, 40, 60]
        ).encrypt([1.0])


def test_prepare_after_keys_exist_names_the_fix() -> None:
    be = pets.backend("ckks", depth=1)
    be.encrypt([1.0])
    with pytest.raises(pets.ParameterError, match=re.escape(
        "this backend's keys were made for depth 1 but the computation needs 3; create "
        "pets.backend('ckks', depth=3)"
    )):
        be.prepare(pets.Requirements(extension=LevelledRequirements(depth=3)))


# ---- bytes --------------------------------------------------------------------------


def test_foreign_bytes_are_refused(ckks: pets.Backend) -> None:
    import tenseal as ts

    raw = ts.ckks_vector(ckks.keys.context, [1.0]).serialize()
    with pytest.raises(pets.SerializationError, match=re.escape(
        "these bytes are not pets data (no PETS header)"
    )):
        pets.load_tensor(raw, ckks)


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_bytes_are_refused(any_backend: pets.Backend, cut: int) -> None:
    data = any_backend.encrypt(np.ones((2, 3))).to_bytes()
    with pytest.raises(pets.SerializationError, match=r"truncated or corrupted|not pets data"):
        pets.load_tensor(data[: max(len(data) - cut, 0)], any_backend)


def test_flipped_byte_is_detected(any_backend: pets.Backend) -> None:
    data = bytearray(any_backend.encrypt(np.ones((2, 3))).to_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(pets.SerializationError, match=re.escape(
        "pets data is truncated or corrupted (checksum mismatch)"
    )):
        pets.load_tensor(bytes(data), any_backend)


def test_backend_bytes_given_to_tensor_loader(any_backend: pets.Backend) -> None:
    with pytest.raises(pets.SerializationError, match=re.escape(
        "these bytes hold a pets backend, not a tensor; use pets.load_backend() for them"
    )):
        pets.load_tensor(any_backend.to_bytes(), any_backend)


def test_forged_ciphertext_size_is_caught_before_seal(ckks: pets.Backend) -> None:
    """A well-formed envelope whose inner SEAL header lies about its size."""
    from pets.serialization import pack, unpack

    envelope = unpack(ckks.encrypt(np.ones(2)).to_bytes(), kind="tensor")
    blob = bytearray(envelope.blobs[0])
    blob[8:16] = (len(blob) * 1000).to_bytes(8, "little")
    envelope.blobs[0] = bytes(blob)
    with pytest.raises(pets.SerializationError, match=re.escape(
        f"a ciphertext declares {len(blob) * 1000} bytes but holds {len(blob)}"
    )):
        pets.load_tensor(pack(envelope), ckks)


def test_forged_ciphertext_count_is_caught(ckks: pets.Backend) -> None:
    from pets.serialization import pack, unpack

    envelope = unpack(ckks.encrypt(np.ones((1, 2)), layout="per_sample").to_bytes(), kind="tensor")
    envelope.meta["rows"] = 3
    with pytest.raises(pets.SerializationError, match="does not match a per_sample 3x2 tensor"):
        pets.load_tensor(pack(envelope), ckks)


def test_forged_shape_is_caught(any_backend: pets.Backend) -> None:
    from pets.serialization import pack, unpack

    envelope = unpack(any_backend.encrypt(np.ones((1, 2))).to_bytes(), kind="tensor")
    envelope.meta["shape"] = [2, 2]
    with pytest.raises(pets.SerializationError, match=re.escape(
        "pets tensor bytes say shape (2, 2) but hold 1x2 values; they are corrupted"
    )):
        pets.load_tensor(pack(envelope), any_backend)


def test_forged_ciphertext_bodies_never_reach_seal_unchecked(ckks: pets.Backend) -> None:
    """Random damage inside a re-checksummed envelope: a SerializationError or a valid load.

    Never a crash, never another exception type (fuzzing with a fixed seed).
    """
    import random
    import struct

    from pets.serialization import pack, unpack

    envelope = unpack(ckks.encrypt(np.ones((1, 3)), layout="per_sample").to_bytes(),
                      kind="tensor")
    original = envelope.blobs[0]
    rng = random.Random(0)
    outcomes = set()
    for trial in range(60):
        blob = bytearray(original)
        if trial % 3 == 0:  # scattered byte changes after the header
            for _ in range(rng.randint(1, 20)):
                blob[rng.randrange(16, len(blob))] = rng.randrange(256)
        elif trial % 3 == 1:  # truncated, header size made to agree
            blob = blob[: rng.randrange(16, len(blob))]
            blob[8:16] = struct.pack("<Q", len(blob))
        else:  # garbage after a valid header
            blob = blob[:16] + bytearray(rng.randbytes(rng.randrange(1, 2000)))
            blob[8:16] = struct.pack("<Q", len(blob))
        envelope.blobs[0] = bytes(blob)
        try:
            ckks.decrypt(pets.load_tensor(pack(envelope), ckks))
            outcomes.add("loaded")
        except pets.SerializationError:
            outcomes.add("refused")
    assert "refused" in outcomes and outcomes <= {"loaded", "refused"}


def test_middle_primes_must_match_the_scale() -> None:
    with pytest.raises(pets.ParameterError, match=re.escape(
        "the middle primes [40, 40] must each have scale_bits=25 bits: every rescale divides "
        "by one of them"
    )):
        pets.backend("ckks", coeff_mod_bit_sizes=[60, 40, 40, 60], scale_bits=25).encrypt([1.0])
