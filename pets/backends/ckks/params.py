"""CKKS parameters sized from the multiplicative depth a computation needs.

Security follows the HomomorphicEncryption.org standard (128-bit, classical,
ternary secret): the total coefficient-modulus size may not exceed the bound
for the ring dimension. SEAL enforces the same table, so parameters that pass
here are accepted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pets.errors import ParameterError

__all__ = ["MAX_MODULUS_BITS_128", "CKKSParameters", "choose_parameters"]

#: ring dimension -> largest total coefficient modulus (bits) at 128-bit security
MAX_MODULUS_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: bits kept above the scale for the integer part of values (|x| < 2**(bits - 1))
INTEGER_BITS = 20
#: the key-switching ("special") prime: key-switching noise shrinks as it grows past the
#: data primes, so it takes SEAL's largest prime size (rotation error ~1e-7 instead of ~5e-5)
SPECIAL_PRIME_BITS = 60
_SCALES = (40, 36, 33, 30)  # preferred scale bits, most precise first
_DEGREES = (8192, 16384, 32768)


@dataclass(frozen=True)
class CKKSParameters:
    """Ring dimension, modulus chain and scale of a CKKS key set."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def depth(self) -> int:
        """Multiplications a fresh ciphertext can go through (rescales available)."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def max_abs_value(self) -> float:
        """Largest |value| a ciphertext may hold before its integer part overflows."""
        return float(2 ** (self.coeff_mod_bit_sizes[0] - self.scale_bits - 1))

    @property
    def security_bits(self) -> int:
        return 128

    def describe(self) -> dict[str, object]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "scale_bits": self.scale_bits,
            "depth": self.depth,
            "slots": self.slots,
            "max_abs_value": self.max_abs_value,
            "security_bits": self.security_bits,
        }


def _validate(params: CKKSParameters) -> CKKSParameters:
    n = params.poly_modulus_degree
    if n not in MAX_MODULUS_BITS_128:
        raise ParameterError(
            f"poly_modulus_degree must be one of {sorted(MAX_MODULUS_BITS_128)}, got {n}"
        )
    total = sum(params.coeff_mod_bit_sizes)
    if total > MAX_MODULUS_BITS_128[n]:
        raise ParameterError(
            f"coefficient modulus of {total} bits is insecure at poly_modulus_degree={n} "
            f"(128-bit security allows at most {MAX_MODULUS_BITS_128[n]}); use a larger "
            "poly_modulus_degree, fewer levels (depth) or a smaller scale_bits"
        )
    if len(params.coeff_mod_bit_sizes) < 3:
        raise ParameterError("a CKKS modulus chain needs at least 3 primes (depth >= 1)")
    if any(not 20 <= b <= 60 for b in params.coeff_mod_bit_sizes):
        raise ParameterError("every CKKS prime must have between 20 and 60 bits")
    if params.coeff_mod_bit_sizes[0] <= params.scale_bits:
        raise ParameterError(
            "the first prime must be larger than the scale, or values have no integer part"
        )
    middle = params.coeff_mod_bit_sizes[1:-1]
    if any(bits != params.scale_bits for bits in middle):
        raise ParameterError(
            f"the middle primes {list(middle)} must each have scale_bits={params.scale_bits} "
            "bits: every rescale divides by one of them, so any other size makes the scale "
            "drift until precision is lost or SEAL overflows; use "
            f"coeff_mod_bit_sizes=[{params.coeff_mod_bit_sizes[0]}, "
            f"{', '.join([str(params.scale_bits)] * len(middle))}, "
            f"{params.coeff_mod_bit_sizes[-1]}] or set scale_bits to their size"
        )
    return params


def choose_parameters(
    depth: int,
    *,
    slots: int = 1,
    poly_modulus_degree: int | None = None,
    coeff_mod_bit_sizes: Sequence[int] | None = None,
    scale_bits: int | None = None,
) -> CKKSParameters:
    """The fastest 128-bit-secure parameters with ``depth`` levels and ``slots`` slots.

    Smaller rings are preferred over larger scales (speed first), larger scales
    over smaller ones within a ring (precision next). Anything given explicitly
    is used as given and only checked.

    >>> choose_parameters(3).coeff_mod_bit_sizes
    (53, 33, 33, 33, 60)
    """
    depth = max(int(depth), 1)
    if coeff_mod_bit_sizes is not None:
        sizes = tuple(int(b) for b in coeff_mod_bit_sizes)
        scale = scale_bits if scale_bits is not None else sizes[1] if len(sizes) > 2 else 40
        n = poly_modulus_degree or next(
            (d for d in _DEGREES if MAX_MODULUS_BITS_128[d] >= sum(sizes) and d // 2 >= slots),
            _DEGREES[-1],
        )
        return _validate(CKKSParameters(n, sizes, scale, ("given explicitly",)))
    degrees = [poly_modulus_degree] if poly_modulus_degree else list(_DEGREES)
    scales = [scale_bits] if scale_bits else list(_SCALES)
    for n in degrees:
        if n // 2 < slots or n not in MAX_MODULUS_BITS_128:
            continue
        for scale in scales:
            first = min(60, scale + INTEGER_BITS)
            sizes = (first, *([scale] * depth), SPECIAL_PRIME_BITS)
            if sum(sizes) <= MAX_MODULUS_BITS_128[n]:
                note = f"depth {depth} at {scale}-bit scale fits N={n} at 128-bit security"
                return _validate(CKKSParameters(n, sizes, scale, (note,)))
    raise ParameterError(
        f"no 128-bit-secure CKKS parameters give depth {depth} with {slots} slots"
        + (f" at poly_modulus_degree={poly_modulus_degree}" if poly_modulus_degree else "")
        + "; reduce the model's depth (fewer layers, lower-degree activations) or allow a "
        "larger poly_modulus_degree"
    )
