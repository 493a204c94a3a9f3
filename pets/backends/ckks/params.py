"""CKKS parameters sized from what a computation needs: depth, value range, precision.

Security follows the HomomorphicEncryption.org standard (128-bit, classical,
ternary secret): the total coefficient-modulus size may not exceed the bound
for the ring dimension. SEAL enforces the same table, so parameters that pass
here are accepted there.

A chain is ``[first, scale x depth, special]``:

* the **scale** (``2**scale_bits``, also the size of every middle prime) sets
  the precision: each operation adds noise of about
  ``NOISE_FACTOR * sqrt(N) / 2**scale_bits`` to a value (twice the measured
  standard deviation). Given a target output error and how much the
  computation amplifies noise (its *noise gain*), the smallest scale that meets
  the target is chosen, so that the smallest ring can hold the chain;
* the **first prime** holds the integer part of the largest value at the
  bottom level: ``scale_bits + integer_bits`` bits, where ``integer_bits``
  comes from the largest value the computation produces, with headroom;
* the **special prime** (key switching) is 60 bits, SEAL's largest: rotation
  noise falls with it (a 36-bit one costs 100x the error at a 26-bit scale).

Without a precision target the scale is the largest of 40, 36, 33 or 30 bits
that fits the smallest ring (speed first, precision next).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pets.errors import ParameterError, ValueRangeError

__all__ = [
    "MAX_MODULUS_BITS_128",
    "NOISE_FACTOR",
    "CKKSParameters",
    "choose_parameters",
    "deepest",
    "integer_bits_for",
]

#: ring dimension -> largest total coefficient modulus (bits) at 128-bit security
MAX_MODULUS_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: integer bits above the scale when nothing says how large values get (|x| < 2**19)
INTEGER_BITS = 20
#: headroom above the largest value a computation is known to produce (2x: the bounds
#: compile computes are sound, or already include the headroom a calibration is trusted with)
HEADROOM_BITS = 1
#: the key-switching ("special") prime: key-switching noise shrinks as it grows past the
#: data primes, so it takes SEAL's largest prime size (rotation error ~1e-7 instead of ~5e-5)
SPECIAL_PRIME_BITS = 60
#: error one operation adds to a value, in units of ``sqrt(N) / scale``: the standard
#: deviation measured over 16k slots (encryption ~27, a product ~42), doubled for safety;
#: a model's noise gain (measured in the clear, pets.compiler.precision) multiplies it
NOISE_FACTOR = 100.0
_SCALES = (40, 36, 33, 30)  # preferred scale bits without a precision target, most precise first
_DEGREES = (8192, 16384, 32768)
#: no automatic scale below this (precision) nor above (the first prime would not fit)
MIN_SCALE_BITS, MAX_SCALE_BITS = 22, 50


def _min_prime_bits(n: int) -> int:
    """Smallest prime size for which SEAL finds enough primes = 1 mod 2N (and some slack)."""
    return max(20, int(math.log2(n)) + 8)


def integer_bits_for(max_abs: float) -> int:
    """Integer bits that hold ``|values| <= max_abs`` with :data:`HEADROOM_BITS` of headroom.

    >>> integer_bits_for(30.0)
    7
    """
    if not max_abs > 0:
        return 1 + HEADROOM_BITS
    return max(1, math.ceil(math.log2(max_abs))) + 1 + HEADROOM_BITS


def _headroom(integer: int, max_abs: float) -> str:
    """How many times ``max_abs`` fits below ``2**(integer - 1)``, in words (never overflows)."""
    exponent = integer - 1 - math.log2(max(max_abs, 1e-300))
    return f"{2.0 ** exponent:.0f}x" if exponent < 1000 else f"2**{exponent:.0f} times"


@dataclass(frozen=True)
class CKKSParameters:
    """Ring dimension, modulus chain and scale of a CKKS key set, and why they were chosen."""

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
        """Largest |value| a ciphertext at the bottom level may hold before it wraps."""
        return float(2 ** (self.coeff_mod_bit_sizes[0] - self.scale_bits - 1))

    @property
    def noise(self) -> float:
        """Estimated largest error one operation adds to a value (see :data:`NOISE_FACTOR`)."""
        return NOISE_FACTOR * math.sqrt(self.poly_modulus_degree) / 2.0**self.scale_bits

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
            "noise_per_operation": self.noise,
            "security_bits": self.security_bits,
            "why": list(self.notes),
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
    if min(params.coeff_mod_bit_sizes) < _min_prime_bits(n):
        raise ParameterError(
            f"primes of {min(params.coeff_mod_bit_sizes)} bits are too small for "
            f"poly_modulus_degree={n}: SEAL needs primes = 1 mod {2 * n} and finds too few "
            f"below 2**{min(params.coeff_mod_bit_sizes)}; use primes of at least "
            f"{_min_prime_bits(n)} bits"
        )
    return params


def _scale_for_precision(n: int, noise_gain: float, precision: float) -> int:
    """Smallest scale bits whose estimated output error ``noise * gain`` is within ``precision``."""
    error = NOISE_FACTOR * math.sqrt(n) * max(noise_gain, 1e-12)
    needed = math.log2(error / max(precision, 1e-300))
    return max(_min_prime_bits(n), MIN_SCALE_BITS, math.ceil(needed))


def choose_parameters(
    depth: int,
    *,
    slots: int = 1,
    poly_modulus_degree: int | None = None,
    coeff_mod_bit_sizes: Sequence[int] | None = None,
    scale_bits: int | None = None,
    max_abs: float | None = None,
    noise_gain: float | None = None,
    precision: float | None = None,
) -> CKKSParameters:
    """The fastest 128-bit-secure parameters with ``depth`` levels and ``slots`` slots.

    ``max_abs`` (the largest value the computation produces) sizes the first
    prime; ``precision`` (largest acceptable output error) and ``noise_gain``
    (how much the computation amplifies one operation's noise at its output)
    size the scale. Smaller rings are preferred (speed), then larger scales
    (precision, free within a ring). Anything given explicitly is used as
    given and only checked.

    >>> choose_parameters(3).coeff_mod_bit_sizes
    (53, 33, 33, 33, 60)
    >>> p = choose_parameters(5, max_abs=100.0, noise_gain=20.0, precision=0.05)
    >>> p.poly_modulus_degree, p.scale_bits
    (8192, 24)
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
    integer = INTEGER_BITS if max_abs is None else integer_bits_for(max_abs)
    why_integer = (
        f"first prime = scale + {integer} integer bits: |values| < 2**{integer - 1}"
        + ("" if max_abs is None else
           f" ({_headroom(integer, max_abs)} the largest value, {max_abs:.3g})")
    )
    if 60 - integer < max(MIN_SCALE_BITS, scale_bits or 0):
        assert max_abs is not None
        raise ValueRangeError(
            f"values up to {max_abs:.3g} need {integer} integer bits above a scale of at least "
            f"{max(MIN_SCALE_BITS, scale_bits or 0)} bits, beyond the 60 bits of SEAL's largest "
            "prime; scale the input or the weights down so that every layer's values stay "
            f"below {2.0 ** (60 - max(MIN_SCALE_BITS, scale_bits or 0) - 1 - HEADROOM_BITS):.3g}"
        )
    targeted = precision is not None and noise_gain is not None and scale_bits is None
    for n in degrees:
        if n // 2 < slots or n not in MAX_MODULUS_BITS_128:
            continue
        bound = MAX_MODULUS_BITS_128[n]
        if scale_bits:
            scales = [scale_bits]
        elif targeted:
            assert precision is not None and noise_gain is not None
            low = _scale_for_precision(n, noise_gain, precision)
            # the largest scale that fits this ring (precision is free within it)
            high = (bound - SPECIAL_PRIME_BITS - integer) // (depth + 1)
            high = min(high, MAX_SCALE_BITS, 60 - integer)
            scales = [high] if high >= low else []
        else:
            scales = [s for s in _SCALES if s + integer <= 60] or [60 - integer]
        for scale in scales:
            if scale < _min_prime_bits(n):
                continue
            first = min(60, scale + integer)
            sizes = (first, *([scale] * depth), SPECIAL_PRIME_BITS)
            if sum(sizes) <= bound and first > scale:
                notes = [f"N={n}: the smallest ring whose 128-bit bound ({bound} bits) holds "
                         f"the {sum(sizes)}-bit chain for depth {depth}"
                         + (f" and {slots} slots" if slots > 1 else "")]
                if targeted:
                    assert precision is not None and noise_gain is not None
                    error = NOISE_FACTOR * math.sqrt(n) / 2.0**scale * noise_gain
                    notes.append(
                        f"scale 2**{scale}: estimated output error {error:.2g} (noise gain "
                        f"{noise_gain:.3g}) within the precision asked, {precision:.2g}"
                    )
                else:
                    notes.append(f"scale 2**{scale}: the largest preferred scale that fits")
                notes.append(why_integer)
                return _validate(CKKSParameters(n, sizes, scale, tuple(notes)))
    deep = deepest(poly_modulus_degree=poly_modulus_degree, max_abs=max_abs)
    if targeted and depth <= deep:
        assert precision is not None and noise_gain is not None
        n = degrees[-1]
        best = (MAX_MODULUS_BITS_128[n] - SPECIAL_PRIME_BITS - integer) // (depth + 1)
        best = min(best, 60 - integer)
        reachable = NOISE_FACTOR * math.sqrt(n) / 2.0**best * noise_gain
        raise ParameterError(
            f"no 128-bit-secure CKKS parameters reach precision {precision:.2g} at depth "
            f"{depth}: the best (N={n}, scale 2**{best}) gives an estimated output error of "
            f"{reachable:.2g}; ask for a precision of at least {reachable:.2g}, or make the "
            "model shallower or less sensitive (see the model's noise gain per layer)"
        )
    raise ParameterError(
        f"no 128-bit-secure CKKS parameters give depth {depth} with {slots} slots"
        + (f" at poly_modulus_degree={poly_modulus_degree}" if poly_modulus_degree else "")
        + f"; the deepest that works is depth {deep}: reduce the model's depth (fewer layers, "
        "lower-degree activations)"
        + ("" if poly_modulus_degree is None or deep >= depth else
           " or allow a larger poly_modulus_degree")
    )


def deepest(*, poly_modulus_degree: int | None = None, max_abs: float | None = None) -> int:
    """The largest depth any 128-bit-secure chain holds (at the smallest preferred scale).

    >>> deepest()
    25
    """
    n = poly_modulus_degree or _DEGREES[-1]
    integer = INTEGER_BITS if max_abs is None else integer_bits_for(max_abs)
    scale = _SCALES[-1]
    first = min(60, scale + integer)
    return max(0, (MAX_MODULUS_BITS_128.get(n, 0) - first - SPECIAL_PRIME_BITS) // scale)
