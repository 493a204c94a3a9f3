"""Bytes authenticated with a key (HMAC-SHA256) through the public loaders.

The checksum of every envelope catches accidents; a key makes forgery
detectable too (docs/security.md). Without the key, keyed bytes are refused,
and with it, unkeyed bytes are refused (no downgrade).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import pets

KEY = b"k" * 32


def test_tensor_bytes_round_trip_with_a_key(any_backend: pets.Backend) -> None:
    data = np.linspace(-1, 1, 6).reshape(2, 3)
    sealed = any_backend.encrypt(data).to_bytes(key=KEY)
    loaded = pets.load_tensor(sealed, any_backend, key=KEY)
    np.testing.assert_allclose(any_backend.decrypt(loaded), data, atol=any_backend.tolerance)


def test_keyed_bytes_need_the_key_and_unkeyed_bytes_are_refused_with_one(
    plain: pets.Backend,
) -> None:
    tensor = plain.encrypt(np.ones(3))
    with pytest.raises(pets.SerializationError):
        pets.load_tensor(tensor.to_bytes(key=KEY), plain)
    with pytest.raises(pets.SerializationError):
        pets.load_tensor(tensor.to_bytes(), plain, key=KEY)
    with pytest.raises(pets.SerializationError):
        pets.load_tensor(tensor.to_bytes(key=KEY), plain, key=b"x" * 32)


def test_backend_bytes_round_trip_with_a_key(plain: pets.Backend) -> None:
    sealed = plain.public().to_bytes(key=KEY)
    assert pets.load_backend(sealed, key=KEY).key_id == plain.key_id
    with pytest.raises(pets.SerializationError):
        pets.load_backend(sealed)


def test_absurd_requirements_are_refused_as_malformed() -> None:
    with pytest.raises(pets.SerializationError, match=re.escape("requirements are malformed")):
        pets.Requirements.from_dict({"max_abs": 10**400})
