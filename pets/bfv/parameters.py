"""BFV parameter sets for two-party products, and the noise bound each one floods.

Two sets, both at ring degree 8192 and at most SEAL's 218-bit coefficient
modulus for 128-bit security (``SEC_LEVEL_TYPE.TC128``, checked by SEAL):

* :data:`ARITHMETIC`: three 57-bit batching plaintext moduli. A product of two
  64-bit ring elements plus a 168-bit mask stays below ``2^169``, under their
  product (``2^171``), so the exact integer comes back by CRT and is reduced
  mod ``2^64`` (CrypTen's share ring) afterwards.
* :data:`BITS`: plaintext modulus 65537 for products of single bits.

Noise flooding: the responder's ciphertext carries ``e * y``, the querier's
fresh noise times the responder's plaintext polynomial, which depends on the
responder's secret ``y``. SEAL draws fresh noise from a normal clipped at
``6 * 3.2`` (19.2), so ``|e * y| <= N * 19.7 * t`` per coefficient. The
responder adds a uniform integer in ``[-2^f, 2^f)`` to every coefficient,
``f = log2(that bound) + 40 + log2(N) + 1``: per coefficient the two
distributions are ``2^-(41 + log2 N)`` apart, over all ``N`` coefficients at
most ``2^-40`` (statistical security 40). :func:`check` proves that the flooded
noise still decrypts with the data-level modulus (and after the modulus switch
that shrinks a response) -- a margin a test keeps honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ARITHMETIC", "BITS", "STATISTICAL_SECURITY", "Parameters", "check"]

#: bits of statistical security of every flooded response and every mask
STATISTICAL_SECURITY = 40
_FRESH_NOISE = 19.2 + 0.5  # SEAL's clipped normal (6 sigma) plus the rounding of q/t scaling


@dataclass(frozen=True)
class Parameters:
    """One BFV set: ring degree, coefficient-modulus prime sizes, plaintext moduli.

    ``coeff_bits``' last prime is SEAL's special prime (never used here: no key
    switching), so ciphertexts live on the others. ``response_primes`` is how
    many primes a response keeps after flooding (a modulus switch down).
    """

    name: str
    degree: int
    coeff_bits: tuple[int, ...]
    plain_bits: tuple[int, ...]  # bit sizes of batching primes (0 = use fixed_plain)
    response_primes: int
    fixed_plain: int = 0

    @property
    def data_bits(self) -> int:
        return sum(self.coeff_bits[:-1])

    def flood_bits(self, plain_modulus: int) -> int:
        """``f``: the flood is uniform in ``[-2^f, 2^f)`` on each coefficient."""
        bound = self.degree * _FRESH_NOISE * plain_modulus
        return math.ceil(math.log2(bound)) + STATISTICAL_SECURITY + int(math.log2(self.degree)) + 1


ARITHMETIC = Parameters(name="arithmetic", degree=8192, coeff_bits=(50, 50, 50, 50, 18),
                        plain_bits=(57, 57, 57), response_primes=2)
BITS = Parameters(name="bits", degree=8192, coeff_bits=(60, 60, 18), plain_bits=(),
                  response_primes=1, fixed_plain=65537)


def check(parameters: Parameters, plain_modulus: int, response_bits: int) -> float:
    """Bits of margin left for decryption after flooding and the response's switch.

    ``response_bits`` is the size of the modulus a response keeps. Decryption
    is correct while the noise stays below ``q / (2 t)``; the flood scales down
    with the switch, and switching adds rounding noise below ``2^(log2 N + 5)``
    (``N`` rounded coefficients times the ternary secret, with room).
    """
    flood = parameters.flood_bits(plain_modulus)
    data = parameters.data_bits
    before = data - 1 - math.log2(plain_modulus) - (flood + 1)
    scaled = flood + 1 - (data - response_bits)
    after_noise = math.log2(2.0**scaled + 2.0 ** (math.log2(parameters.degree) + 5))
    after = response_bits - 1 - math.log2(plain_modulus) - after_noise
    return min(before, after)
