"""One CKKS key set: a TenSEAL context plus the SEAL tools that work on it.

TenSEAL makes and serialises the keys (public, relinearisation, secret) and
drops the secret for a public copy. Evaluation goes through the SEAL bindings
TenSEAL ships (``tenseal.sealapi``), which TenSEAL's own Python API hides: they
rotate by any step, so only the rotation (Galois) keys a computation needs are
made, not TenSEAL's all-power-of-two set (~50-100 MB at N=8192).

Scales are managed exactly. Each level ``l`` has one canonical scale ``S[l]``,
with ``S[l-1] = S[l]**2 / q[l]`` (``q[l]`` the prime a rescale drops), so a
product of two canonical ciphertexts rescales to the canonical scale below, and
a plaintext factor is encoded at ``q[l] * S[l-1] / s`` to land there too. No
scale is ever overwritten, so no relative error of ``(q - 2**bits) / q`` creeps
in (that error is ~1e-4 at 33 bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pets.backends.ckks import seal_io
from pets.backends.ckks.params import CKKSParameters
from pets.errors import MissingKeyError, SerializationError

__all__ = ["KeySet", "Level"]


@dataclass(frozen=True)
class Level:
    """One level of the modulus chain."""

    index: int  # SEAL chain index: rescales still available
    parms_id: Any
    prime: int  # the prime a rescale from this level drops
    scale: float  # canonical scale of ciphertexts at this level


def _tenseal() -> Any:
    import tenseal
    import tenseal.sealapi

    return tenseal


class KeySet:
    """Keys, SEAL tools and the level table for one CKKS parameter set."""

    def __init__(self, params: CKKSParameters, context: Any, galois_blob: bytes | None = None,
                 steps: frozenset[int] = frozenset()) -> None:
        sealapi = _tenseal().sealapi
        self.params = params
        self.context = context
        self.seal = context.seal_context().data
        self.encoder = sealapi.CKKSEncoder(self.seal)
        self.evaluator = sealapi.Evaluator(self.seal)
        self.encryptor = sealapi.Encryptor(self.seal, context.public_key().data)
        self.relin_keys = context.relin_keys().data
        self.decryptor = (
            sealapi.Decryptor(self.seal, context.secret_key().data)
            if context.has_secret_key()
            else None
        )
        self.levels = self._level_table()
        self.steps: frozenset[int] = frozenset()
        self.galois = sealapi.GaloisKeys()
        if galois_blob:
            seal_io.load(self.galois, self.seal, galois_blob, "rotation keys")
            self.steps = steps

    @classmethod
    def create(cls, params: CKKSParameters) -> KeySet:
        ts = _tenseal()
        context = ts.context(
            ts.SCHEME_TYPE.CKKS,
            params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        )
        context.global_scale = 2.0**params.scale_bits
        return cls(params, context)

    def _level_table(self) -> dict[int, Level]:
        data = self.seal.first_context_data()
        chain = []
        while data is not None:
            primes = [m.value() for m in data.parms().coeff_modulus()]
            chain.append((data.chain_index(), data.parms_id(), primes[-1]))
            data = data.next_context_data()
        levels: dict[int, Level] = {}
        scale = 2.0**self.params.scale_bits
        for index, parms_id, prime in chain:  # from the top level down
            levels[index] = Level(index, parms_id, prime, scale)
            scale = scale * scale / prime
        return levels

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
        sealapi = _tenseal().sealapi
        generator = sealapi.KeyGenerator(self.seal, self.context.secret_key().data)
        galois = sealapi.GaloisKeys()
        all_steps = frozenset(self.steps | missing)
        generator.create_galois_keys(sorted(self.galois_element(s) for s in all_steps), galois)
        self.galois, self.steps = galois, all_steps

    # ---- copies and bytes ----------------------------------------------------

    def public(self) -> KeySet:
        context = self.context.copy()
        context.make_context_public()
        keys = KeySet(self.params, context)
        keys.galois, keys.steps = self.galois, self.steps
        return keys

    def dump(self, *, include_secret_key: bool) -> tuple[bytes, bytes]:
        context = self.context.serialize(
            save_public_key=True,
            save_secret_key=include_secret_key and self.has_secret_key,
            save_galois_keys=False,
            save_relin_keys=True,
        )
        galois = seal_io.dump(self.galois) if self.steps else b""
        return context, galois

    @classmethod
    def load(cls, params: CKKSParameters, context_blob: bytes, galois_blob: bytes,
             steps: frozenset[int]) -> KeySet:
        ts = _tenseal()
        try:
            context = ts.context_from(context_blob)
        except Exception as exc:  # TenSEAL raises bare std::exception wrappers
            raise SerializationError(
                f"the CKKS key material could not be read ({exc}); it is corrupted or "
                "was not written by pets"
            ) from exc
        keys = cls(params, context, galois_blob or None, steps)
        if keys.params.poly_modulus_degree != context.seal_context().data.first_context_data(
        ).parms().poly_modulus_degree():
            raise SerializationError("the CKKS key material does not match its parameters")
        return keys
