"""One CKKS key set: SEAL context, keys and tools, and the level table.

TenSEAL makes the keys of a new key set; evaluation goes through the SEAL
bindings TenSEAL ships (``tenseal.sealapi``), which TenSEAL's own Python API
hides: they rotate by any step, so only the rotation (Galois) keys a
computation needs are made, not TenSEAL's all-power-of-two set.

**Bytes.** Keys travel as SEAL objects, compressed (zstd), and the
relinearisation and rotation keys *seeded*: half of each key is the output of a
PRNG, so SEAL writes the 64-byte seed instead (half the bytes). The key set's
fingerprint (:attr:`KeySet.fingerprint`) is a hash of the parameters and the
public key: tensors carry it, and a key set whose bytes do not hash to the
fingerprint they claim is refused.

**Scales.** Each level ``l`` has one canonical scale ``S[l]``, with
``S[l-1] = S[l]**2 / q[l]`` (``q[l]`` the prime a rescale drops), so a product
of two canonical ciphertexts rescales to the canonical scale below, and a
plaintext factor is encoded at ``q[l] * S[l-1] / s`` to land there too. No
scale is ever overwritten. The table is anchored at the *bottom*
(``S[0] = 2**scale_bits``) and climbs by ``S[l] = sqrt(q[l] * S[l-1])``: the
primes' distance from ``2**scale_bits`` then halves at every level instead of
doubling, so deep chains keep every scale near ``2**scale_bits`` (anchoring at
the top drifted the bottom scale to ``2**41`` at depth 18 and to infinity at 24).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from pets import seal_io
from pets.backends.ckks.params import CKKSParameters
from pets.errors import MissingKeyError, ParameterError, SerializationError

__all__ = ["KeySet", "Level", "level_table", "seal_context"]


@dataclass(frozen=True)
class Level:
    """One level of the modulus chain."""

    index: int  # SEAL chain index: rescales still available
    parms_id: Any
    prime: int  # the prime a rescale from this level drops
    scale: float  # canonical scale of ciphertexts at this level
    modulus_bits: float  # log2 of the product of the primes at this level

    @property
    def capacity(self) -> float:
        """Largest |value| a ciphertext at this level holds before it wraps around."""
        return 2.0 ** (self.modulus_bits - 1 - math.log2(self.scale))


def _sealapi() -> Any:
    import tenseal.sealapi

    return tenseal.sealapi


def seal_context(params: CKKSParameters) -> Any:
    """A SEAL context for ``params`` (the same primes TenSEAL picks for them)."""
    sealapi = _sealapi()
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(params.poly_modulus_degree)
    try:
        parms.set_coeff_modulus(
            sealapi.CoeffModulus.Create(
                params.poly_modulus_degree, list(params.coeff_mod_bit_sizes)
            )
        )
    except (RuntimeError, ValueError) as exc:
        raise ParameterError(
            f"SEAL cannot make primes {list(params.coeff_mod_bit_sizes)} for "
            f"poly_modulus_degree={params.poly_modulus_degree} ({exc}); use larger primes"
        ) from exc
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise ParameterError(
            f"SEAL refuses these CKKS parameters: {context.parameters_error_message()}"
        )
    return context


def level_table(seal: Any, scale_bits: int) -> dict[int, Level]:
    """Every level of ``seal``'s chain with its canonical scale (see the module docstring)."""
    data = seal.first_context_data()
    chain = []
    while data is not None:
        primes = [m.value() for m in data.parms().coeff_modulus()]
        bits = sum(math.log2(p) for p in primes)
        chain.append((data.chain_index(), data.parms_id(), primes[-1], bits))
        data = data.next_context_data()
    chain.sort(key=lambda entry: entry[0])  # bottom first
    # anchor at the bottom and climb: S[l] = sqrt(q[l] * S[l-1]) keeps every scale near
    # 2**scale_bits; then recompute downwards exactly as SEAL does (S * S / q), so the
    # table agrees with the scales SEAL computes after each product to the last bit
    scale = 2.0**scale_bits
    for _index, _parms, prime, _bits in chain[1:]:
        scale = math.sqrt(prime * scale)
    levels: dict[int, Level] = {}
    for index, parms_id, prime, bits in reversed(chain):  # from the top level down
        levels[index] = Level(index, parms_id, prime, scale, bits)
        scale = scale * scale / prime
    return levels


class KeySet:
    """Keys, SEAL tools and the level table for one CKKS parameter set."""

    def __init__(self, params: CKKSParameters, seal: Any, public_key: Any, relin_keys: Any,
                 secret_key: Any | None = None, context: Any | None = None) -> None:
        sealapi = _sealapi()
        self.params = params
        #: the TenSEAL context that made the keys (only on the key holder that made them)
        self.context = context
        self.seal = seal
        self.public_key = public_key
        self.secret_key = secret_key
        self.encoder = sealapi.CKKSEncoder(self.seal)
        self.evaluator = sealapi.Evaluator(self.seal)
        self.encryptor = sealapi.Encryptor(self.seal, public_key)
        self.relin_keys = relin_keys
        self.decryptor = (
            None if secret_key is None else sealapi.Decryptor(self.seal, secret_key)
        )
        self.levels = level_table(self.seal, params.scale_bits)
        self.steps: frozenset[int] = frozenset()
        self.galois = sealapi.GaloisKeys()
        self._galois_blob: bytes | None = b""
        self._relin_blob: bytes | None = None
        self.fingerprint = self._fingerprint()

    @classmethod
    def create(cls, params: CKKSParameters) -> KeySet:
        import tenseal as ts

        try:
            context = ts.context(
                ts.SCHEME_TYPE.CKKS,
                params.poly_modulus_degree,
                coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            )
        except (RuntimeError, ValueError) as exc:
            raise ParameterError(
                f"SEAL cannot make keys for {params.describe()} ({exc}); use larger primes"
            ) from exc
        context.global_scale = 2.0**params.scale_bits
        return cls(params, context.seal_context().data, context.public_key().data,
                   context.relin_keys().data, context.secret_key().data, context)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(repr((self.params.poly_modulus_degree, self.params.coeff_mod_bit_sizes,
                            self.params.scale_bits)).encode())
        digest.update(seal_io.dump(self.public_key))
        return digest.hexdigest()[:32]

    @property
    def top(self) -> Level:
        return self.levels[max(self.levels)]

    @property
    def has_secret_key(self) -> bool:
        return self.decryptor is not None

    # ---- rotation keys -------------------------------------------------------

    def galois_element(self, step: int) -> int:
        """SEAL's Galois element for a left rotation by ``step`` slots."""
        m = 2 * self.params.poly_modulus_degree
        step %= self.params.slots
        return pow(3, step, m)

    def ensure_rotations(self, steps: set[int] | frozenset[int]) -> None:
        """Make rotation keys for ``steps`` (needs the secret key if any is new)."""
        wanted = {s % self.params.slots for s in steps} - {0}
        missing = wanted - self.steps
        if not missing:
            return
        if not self.has_secret_key:
            raise MissingKeyError(
                f"no rotation key for step(s) {sorted(missing)} in this public key set; the key "
                "holder must compile the model (or call backend.prepare) before sharing "
                ".public(), so the keys the computation needs are made"
            )
        sealapi = _sealapi()
        generator = sealapi.KeyGenerator(self.seal, self.secret_key)
        all_steps = frozenset(self.steps | missing)
        galois = sealapi.GaloisKeys()
        generator.create_galois_keys(sorted(self.galois_element(s) for s in all_steps), galois)
        self.galois, self.steps, self._galois_blob = galois, all_steps, None

    def _galois_bytes(self) -> bytes:
        """The rotation keys as bytes, *seeded*: a seed instead of half of every key (made
        when first sent: new keys for the same steps and secret, as valid as the ones here)."""
        if self._galois_blob is None:
            if not self.steps:
                self._galois_blob = b""
            else:
                generator = _sealapi().KeyGenerator(self.seal, self.secret_key)
                seeded = generator.create_galois_keys(
                    sorted(self.galois_element(s) for s in self.steps))
                self._galois_blob = seal_io.dump(seeded)
        return self._galois_blob

    # ---- copies and bytes ----------------------------------------------------

    def public(self) -> KeySet:
        keys = KeySet(self.params, self.seal, self.public_key, self.relin_keys)
        keys.galois, keys.steps = self.galois, self.steps
        keys._galois_blob = self._galois_bytes()
        keys._relin_blob = self._relin_bytes()
        return keys

    def _relin_bytes(self) -> bytes:
        if self._relin_blob is None and self.secret_key is None:
            self._relin_blob = seal_io.dump(self.relin_keys)
        if self._relin_blob is None:
            generator = _sealapi().KeyGenerator(self.seal, self.secret_key)
            self._relin_blob = seal_io.dump(generator.create_relin_keys())  # seeded
        return self._relin_blob

    def dump(self, *, include_secret_key: bool) -> list[bytes]:
        """``[public key, relinearisation keys, rotation keys, (secret key)]`` as SEAL bytes."""
        blobs = [seal_io.dump(self.public_key), self._relin_bytes(), self._galois_bytes()]
        if include_secret_key and self.secret_key is not None:
            blobs.append(seal_io.dump(self.secret_key))
        return blobs

    @classmethod
    def load(cls, params: CKKSParameters, blobs: list[bytes], steps: frozenset[int]) -> KeySet:
        """A key set from :meth:`dump`'s bytes, checked against ``params`` before SEAL reads it."""
        sealapi = _sealapi()
        if len(blobs) not in (3, 4):
            raise SerializationError(
                f"CKKS key bytes hold {len(blobs)} parts, not 3 or 4; they are corrupted"
            )
        seal = seal_context(params)
        public_key = seal_io.load(sealapi.PublicKey(), seal, blobs[0], "the public key")
        relin = seal_io.load(sealapi.RelinKeys(), seal, blobs[1], "the relinearisation keys")
        secret = (seal_io.load(sealapi.SecretKey(), seal, blobs[3], "the secret key")
                  if len(blobs) == 4 else None)
        keys = cls(params, seal, public_key, relin, secret)
        keys._relin_blob = blobs[1]
        if blobs[2]:
            keys.galois = seal_io.load(sealapi.GaloisKeys(), seal, blobs[2], "rotation keys")
            elements = {keys.galois_element(s) for s in steps}
            if not steps or any(not keys.galois.has_key(e) for e in elements):
                raise SerializationError(
                    "the CKKS rotation keys do not cover the steps their header lists; the key "
                    "bytes are corrupted or forged"
                )
            keys.steps, keys._galois_blob = steps, blobs[2]
        elif steps:
            raise SerializationError("CKKS key bytes list rotation steps but hold no rotation keys")
        return keys
