"""One party's BFV keys for a parameter set, and the three steps of an oblivious product.

A *query* encrypts this party's vector under its own secret key; a *response*
is what the other party computes on a query without any secret key: times its
plaintext vector, plus its plaintext vector, re-randomised with a fresh
encryption of zero under the querier's public key (so ``c1`` says nothing of
the multiplier), flooded (see :mod:`pets.bfv.parameters`) and switched down to
fewer primes; *decrypt* opens a response. Vectors are uint64 residues modulo
the plaintext modulus, packed ``N`` to a ciphertext (SIMD batching).

>>> import numpy as np
>>> from pets.bfv.parameters import BITS
>>> me, you = Keys(BITS), Keys(BITS)
>>> you.accept_peer(me.public_keys())
>>> query = me.query([np.array([0, 1, 1], dtype=np.uint64)])
>>> reply = you.respond(query, [np.array([1, 1, 0], dtype=np.uint64)],
...                     [np.array([0, 0, 1], dtype=np.uint64)], length=3)
>>> me.decrypt(reply, length=3)[0].tolist()
[0, 1, 1]
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from pets import seal_io
from pets.bfv.parameters import Parameters, check
from pets.bfv.randomness import residue, uniform_bits
from pets.errors import KeyMismatchError, ParameterError, SerializationError

__all__ = ["Keys"]

_HEADER = struct.Struct("<HBBBBHQ")


def _sealapi() -> Any:
    import tenseal.sealapi as sealapi

    return sealapi


class _Modulus:
    """SEAL's objects for one plaintext modulus: context, encoder, evaluator."""

    def __init__(self, parameters: Parameters, plain: Any) -> None:
        seal = _sealapi()
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(parameters.degree)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(parameters.degree,
                                                         list(parameters.coeff_bits)))
        parms.set_plain_modulus(plain)
        self.context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise ParameterError(f"SEAL refuses the BFV set {parameters.name}: "
                                 f"{self.context.parameters_error_message()}")
        self.t = int(plain.value())
        self.encoder = seal.BatchEncoder(self.context)
        self.evaluator = seal.Evaluator(self.context)
        first = self.context.first_context_data()
        self.primes = [int(m.value()) for m in first.parms().coeff_modulus()]
        self.parms_id = self.context.first_parms_id()
        self.flood_bits = parameters.flood_bits(self.t)
        kept = self.primes[: parameters.response_primes]
        response_bits = sum(int(p).bit_length() for p in kept) - len(kept)
        if check(parameters, self.t, response_bits) < 1:
            raise ParameterError(f"BFV set {parameters.name}: the flooded noise would not "
                                 "decrypt; widen the coefficient modulus")
        self.switches = len(self.primes) - parameters.response_primes

    def encode(self, values: np.ndarray) -> Any:
        plain = _sealapi().Plaintext()
        self.encoder.encode(values.tolist(), plain)
        return plain

    def flood(self, degree: int) -> Any:
        """A ciphertext ``(e, 0)`` with ``e`` uniform in ``[-2^f, 2^f)`` per coefficient."""
        draws = uniform_bits(degree, self.flood_bits + 1)
        limbs = np.stack([(residue(draws, q) + np.uint64(q - pow(2, self.flood_bits, q)))
                          % np.uint64(q) for q in self.primes])
        data = np.zeros((2, len(self.primes), degree), dtype="<u8")
        data[0] = limbs
        array = struct.pack("<Q", data.size) + data.tobytes()
        nested = _header(len(array)) + array
        body = (struct.pack("<4Q", *self.parms_id) + b"\x00"
                + struct.pack("<QQQdQ", 2, degree, len(self.primes), 1.0, 1) + nested)
        blob = _header(len(body)) + body
        return seal_io.load(_sealapi().Ciphertext(), self.context, blob, "a flooding term")


@functools.cache
def _version() -> tuple[int, int]:
    """The SEAL version TenSEAL ships (its loader accepts only its own minor version)."""
    written = seal_io.dump(_sealapi().Plaintext(), "an empty plaintext")
    return written[3], written[4]


def _fingerprint(blobs: Sequence[bytes]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for blob in blobs:
        digest.update(blob)
    return digest.hexdigest()


def _header(payload: int) -> bytes:
    """SEAL 4.x's serialisation header for an uncompressed object of ``payload`` bytes."""
    major, minor = _version()
    return _HEADER.pack(0xA15E, _HEADER.size, major, minor, 0, 0, _HEADER.size + payload)


class Keys:
    """This party's secret and public keys (one pair per plaintext modulus), and its peer's
    public keys once :meth:`accept_peer` has them."""

    def __init__(self, parameters: Parameters) -> None:
        seal = _sealapi()
        self.parameters = parameters
        plains = ([seal.Modulus(parameters.fixed_plain)] if parameters.fixed_plain else
                  list(seal.PlainModulus.Batching(parameters.degree, list(parameters.plain_bits))))
        self.moduli = [_Modulus(parameters, plain) for plain in plains]
        self._secret: list[Any] = []
        self._public: list[Any] = []
        self._encryptors: list[Any] = []
        self._decryptors: list[Any] = []
        for modulus in self.moduli:
            generator = seal.KeyGenerator(modulus.context)
            public = seal.PublicKey()
            generator.create_public_key(public)
            secret = generator.secret_key()
            self._secret.append(secret)
            self._public.append(public)
            self._encryptors.append(seal.Encryptor(modulus.context, secret))
            self._decryptors.append(seal.Decryptor(modulus.context, secret))
        self._peer: list[Any] | None = None
        self.peer_fingerprint = ""

    @property
    def degree(self) -> int:
        return self.parameters.degree

    @property
    def plain_moduli(self) -> list[int]:
        return [m.t for m in self.moduli]

    def public_keys(self) -> list[bytes]:
        return [seal_io.dump(key, "a public key") for key in self._public]

    @property
    def fingerprint(self) -> str:
        """A short hash of this party's public keys: the label its queries travel under."""
        return _fingerprint(self.public_keys())

    def accept_peer(self, blobs: Sequence[bytes]) -> None:
        """Load the other party's public keys (for re-randomising responses)."""
        seal = _sealapi()
        if len(blobs) != len(self.moduli):
            raise SerializationError(f"expected {len(self.moduli)} public keys for the BFV set "
                                     f"{self.parameters.name}, got {len(blobs)}")
        self.peer_fingerprint = _fingerprint(blobs)
        self._peer = [
            seal.Encryptor(m.context, seal_io.load(seal.PublicKey(), m.context, blob,
                                                   "the peer's public key"))
            for m, blob in zip(self.moduli, blobs, strict=True)
        ]

    def count(self, length: int) -> int:
        """Ciphertexts per plaintext modulus for a vector of ``length`` values."""
        return -(-length // self.degree)

    def _chunks(self, values: np.ndarray) -> list[np.ndarray]:
        padded = np.zeros(self.count(len(values)) * self.degree, dtype=np.uint64)
        padded[: len(values)] = values
        return list(padded.reshape(-1, self.degree))

    def query(self, values: Sequence[np.ndarray]) -> list[bytes]:
        """Encrypt one vector per plaintext modulus (residues below it) under this party's key."""
        blobs = []
        for modulus, encryptor, vector in zip(self.moduli, self._encryptors, values, strict=True):
            for chunk in self._chunks(vector):  # seeded: c1 travels as its PRNG seed (half)
                seeded = encryptor.encrypt_symmetric(modulus.encode(chunk))
                blobs.append(seal_io.dump(seeded, "a query"))
        return blobs

    def respond(self, blobs: Sequence[bytes], multipliers: Sequence[np.ndarray],
                addends: Sequence[np.ndarray], *, length: int,
                fingerprint: str | None = None) -> list[bytes]:
        """``query * multiplier + addend`` per slot, re-randomised, flooded and switched down.

        ``fingerprint``, where the query came labelled, must be the peer's: a query
        under another key (another session's, a key swapped after the handshake)
        is refused with :class:`~pets.errors.KeyMismatchError` before any work.
        """
        seal = _sealapi()
        if self._peer is None:
            raise ParameterError("respond before accept_peer: the peer's public keys are needed")
        if fingerprint is not None and fingerprint != self.peer_fingerprint:
            raise KeyMismatchError(
                f"the query is encrypted under key {fingerprint}, not under the key "
                f"{self.peer_fingerprint} the peer announced for this session; a ciphertext "
                "from another key cannot be answered: encrypt with this session's keys")
        per = self.count(length)
        if len(blobs) != per * len(self.moduli):
            raise SerializationError(f"a query for {length} values holds {per * len(self.moduli)}"
                                     f" ciphertexts; this one holds {len(blobs)}")
        out = []
        for index, (modulus, peer) in enumerate(zip(self.moduli, self._peer, strict=True)):
            for part, (times, plus) in enumerate(zip(self._chunks(multipliers[index]),
                                                     self._chunks(addends[index]), strict=True)):
                ct = seal_io.load(seal.Ciphertext(), modulus.context, blobs[index * per + part],
                                  "a query")
                if ct.parms_id() != modulus.parms_id or ct.size() != 2:
                    raise SerializationError("a query ciphertext is not a fresh encryption under "
                                             "these parameters")
                fresh = seal.Ciphertext()
                peer.encrypt_zero(fresh)
                if np.any(times):
                    modulus.evaluator.multiply_plain_inplace(ct, modulus.encode(times))
                    modulus.evaluator.add_inplace(ct, fresh)
                else:
                    ct = fresh  # SEAL refuses a product by zero; the fresh zero stands for it
                modulus.evaluator.add_plain_inplace(ct, modulus.encode(plus))
                modulus.evaluator.add_inplace(ct, modulus.flood(self.degree))
                for _ in range(modulus.switches):
                    modulus.evaluator.mod_switch_to_next_inplace(ct)
                out.append(seal_io.dump(ct, "a response"))
        return out

    def decrypt(self, blobs: Sequence[bytes], *, length: int) -> list[np.ndarray]:
        """Open responses to this party's query: one vector per plaintext modulus."""
        seal = _sealapi()
        per = self.count(length)
        if len(blobs) != per * len(self.moduli):
            raise SerializationError(f"a response for {length} values holds "
                                     f"{per * len(self.moduli)} ciphertexts; got {len(blobs)}")
        vectors = []
        for index, (modulus, decryptor) in enumerate(zip(self.moduli, self._decryptors,
                                                         strict=True)):
            parts = []
            for part in range(per):
                ct = seal_io.load(seal.Ciphertext(), modulus.context, blobs[index * per + part],
                                  "a response")
                plain = seal.Plaintext()
                decryptor.decrypt(ct, plain)
                parts.append(np.array(modulus.encoder.decode_uint64(plain), dtype=np.uint64))
            vectors.append(np.concatenate(parts)[:length])
        return vectors
