"""Property tests of the envelope every pets object travels in (``pets.serialization``).

One property per test: what is packed unpacks unchanged; anything else, whether
truncated, flipped, re-checksummed by a forger, or holding absurd integers, is
refused with ``SerializationError``, never another exception; with a key, only
bytes packed with that key load.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct

import pytest
from fuzz_payloads import mutate_envelope, raw_pack, resum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pets
from pets.serialization import MAX_BLOBS, Envelope, is_authenticated, pack, unpack

#: fixed seed (derandomize) and a small example budget in CI; PETS_FUZZ_EXAMPLES for more
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("PETS_FUZZ_EXAMPLES", "100")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = bytes(range(32))

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
labels = st.text(min_size=1, max_size=40)
envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(["tensor", "backend"]),
    backend=labels,
    key_id=st.text(max_size=40),
    meta=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    blobs=st.lists(st.binary(max_size=64), max_size=6),
)


def _same(a: Envelope, b: Envelope) -> bool:
    return (a.kind, a.backend, a.key_id, a.meta, a.blobs) == (
        b.kind, b.backend, b.key_id, b.meta, b.blobs
    )


@FUZZ
@given(envelopes)
def test_what_is_packed_unpacks_unchanged(envelope: Envelope) -> None:
    assert _same(unpack(pack(envelope), kind=envelope.kind), envelope)


@FUZZ
@given(envelopes)
def test_what_is_packed_with_a_key_unpacks_only_with_that_key(envelope: Envelope) -> None:
    data = pack(envelope, key=KEY)
    assert is_authenticated(data)
    assert _same(unpack(data, kind=envelope.kind, key=KEY), envelope)
    with pytest.raises(pets.SerializationError, match="pass the same key= to load them"):
        unpack(data, kind=envelope.kind)
    with pytest.raises(pets.SerializationError, match="failed authentication"):
        unpack(data, kind=envelope.kind, key=bytes(32))


@FUZZ
@given(envelopes)
def test_checksummed_bytes_are_refused_where_a_key_is_required(envelope: Envelope) -> None:
    with pytest.raises(pets.SerializationError, match="carry only a checksum"):
        unpack(pack(envelope), kind=envelope.kind, key=KEY)


@FUZZ
@given(envelopes, st.data())
def test_every_truncation_is_refused(envelope: Envelope, data: st.DataObject) -> None:
    packed = pack(envelope)
    cut = data.draw(st.integers(min_value=0, max_value=len(packed) - 1))
    with pytest.raises(pets.SerializationError):
        unpack(packed[:cut], kind=envelope.kind)


@FUZZ
@given(envelopes, st.data())
def test_every_single_bit_flip_is_refused(envelope: Envelope, data: st.DataObject) -> None:
    packed = bytearray(pack(envelope))
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(packed) - 1))
    packed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(pets.SerializationError):
        unpack(bytes(packed), kind=envelope.kind)


@FUZZ
@given(envelopes, st.randoms(use_true_random=False))
def test_forged_bytes_load_as_an_envelope_or_are_refused(
    envelope: Envelope, rng: random.Random
) -> None:
    """Mutations with recomputed checksums reach the parser: it must hold."""
    forged = mutate_envelope(pack(envelope), rng)
    try:
        loaded = unpack(forged, kind=envelope.kind)
    except pets.SerializationError:
        return
    assert isinstance(loaded.meta, dict) and all(isinstance(b, bytes) for b in loaded.blobs)
    assert len(forged) >= sum(len(b) for b in loaded.blobs)


@FUZZ
@given(envelopes, st.randoms(use_true_random=False))
def test_no_forgery_without_the_key_loads_authenticated(
    envelope: Envelope, rng: random.Random
) -> None:
    """A forger without the key may recompute SHA-256 trailers, never the HMAC."""
    forged = mutate_envelope(pack(envelope, key=KEY), rng)
    forged = resum(forged) if rng.random() < 0.5 else forged
    if forged == pack(envelope, key=KEY):
        return
    with pytest.raises(pets.SerializationError):
        unpack(forged, kind=envelope.kind, key=KEY)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=-(2**80), max_value=2**80),
            st.floats(allow_nan=False),
            st.booleans(),
            st.text(max_size=3),
            st.none(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_blob_lengths_that_are_not_the_blobs_are_refused(lengths: list[object]) -> None:
    header = {"kind": "tensor", "backend": "plain", "key_id": "k", "meta": {}, "blobs": lengths}
    data = raw_pack(b"PETS", 1, json.dumps(header).encode(), [b"abc"])
    if lengths == [3]:
        assert unpack(data, kind="tensor").blobs == [b"abc"]
        return
    with pytest.raises(pets.SerializationError):
        unpack(data, kind="tensor")


@FUZZ
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_header_lengths_that_are_not_the_header_are_refused(length: int) -> None:
    header = json.dumps({"kind": "tensor", "backend": "plain", "key_id": "k", "meta": {},
                         "blobs": []}).encode()
    data = raw_pack(b"PETS", 1, header, [], header_length=length)
    if length == len(header):
        assert unpack(data, kind="tensor").blobs == []
        return
    with pytest.raises(pets.SerializationError):
        unpack(data, kind="tensor")


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(pets.SerializationError):
        unpack(data, kind="tensor")


# ---- specific bounds ------------------------------------------------------------------------


def _forge(header: object, blobs: list[bytes] | None = None) -> bytes:
    return raw_pack(b"PETS", 1, json.dumps(header).encode(), blobs or [])


def test_a_header_over_one_mebibyte_is_refused_before_parsing() -> None:
    header = b"{" + b" " * (1 << 20) + b"}"
    body = struct.pack(">4sHI", b"PETS", 1, len(header)) + header
    data = body + hashlib.sha256(body).digest()
    with pytest.raises(pets.SerializationError, match="impossible header length"):
        unpack(data, kind="tensor")


def test_deeply_nested_metadata_is_refused_not_a_recursion_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"kind":"tensor","backend":"plain","key_id":"k","blobs":[],"meta":{"a":' + deep + "}}"
    data = raw_pack(b"PETS", 1, text.encode(), [])
    with pytest.raises(pets.SerializationError, match="malformed header"):
        unpack(data, kind="tensor")


def test_nan_and_infinity_in_a_header_are_refused() -> None:
    for token in ("NaN", "Infinity", "1e999"):
        text = '{"kind":"tensor","backend":"plain","key_id":"k","blobs":[],"meta":{"a":%s}}'
        with pytest.raises(pets.SerializationError, match="malformed header"):
            unpack(raw_pack(b"PETS", 1, (text % token).encode(), []), kind="tensor")


def test_more_blobs_than_the_limit_are_refused() -> None:
    header = {"kind": "tensor", "backend": "plain", "key_id": "k", "meta": {},
              "blobs": [0] * (MAX_BLOBS + 1)}
    with pytest.raises(pets.SerializationError, match="blobs must be a list of at most 65536"):
        unpack(_forge(header), kind="tensor")
    with pytest.raises(pets.SerializationError, match="holds at most 65536 blobs"):
        pack(Envelope("tensor", "plain", "k", {}, [b""] * (MAX_BLOBS + 1)))


def test_a_huge_blob_length_is_refused_before_anything_is_sliced() -> None:
    header = {"kind": "tensor", "backend": "plain", "key_id": "k", "meta": {}, "blobs": [10**400]}
    with pytest.raises(pets.SerializationError, match="every blob length must be an integer in"):
        unpack(_forge(header), kind="tensor")


@pytest.mark.parametrize(
    ("field", "value"), [("kind", 7), ("backend", ""), ("backend", "x" * 300), ("key_id", None)]
)
def test_names_that_are_not_short_strings_are_refused(field: str, value: object) -> None:
    header = {"kind": "tensor", "backend": "plain", "key_id": "k", "meta": {}, "blobs": []}
    header[field] = value
    with pytest.raises(pets.SerializationError, match=f"{field} must be a string"):
        unpack(_forge(header), kind="tensor")


@pytest.mark.parametrize("key", [b"short", "a string key", 12345])
def test_weak_or_mistyped_keys_are_refused(key: object) -> None:
    with pytest.raises(pets.SerializationError, match="key"):
        pack(Envelope("tensor", "plain", "k"), key=key)  # type: ignore[arg-type]
