"""Share conversion: BFV plaintext residues and the owner's masks into MPC ring shares.

After the HE linear layer, the client holds ``V = x_c * W + mask`` per slot
(as residues modulo the BFV plaintext moduli) and the owner holds ``mask``.
This module turns them into CrypTen shares of the layer's output: the client's
``V mod 2^64`` by CRT, the owner's ``-mask mod 2^64`` plus its own local
product, each summed over the products an output collects; then the product's
doubled fixed-point scale is truncated back (CrypTen's local two-party
truncation). Nothing here knows that HE came before; nothing after it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pets.bfv.ole import from_residues
from pets.bfv.randomness import low_word

__all__ = ["client_share", "owner_share", "to_mpc"]


def _torch() -> Any:
    import torch

    return torch


def _signed(values: np.ndarray, shape: tuple[int, ...]) -> Any:
    return _torch().from_numpy(values.view(np.int64).reshape(shape).copy())


def client_share(opened: list[np.ndarray], moduli: list[int], shape: tuple[int, ...],
                 reduce: Callable[[Any], Any]) -> Any:
    """The client's ring share: its decrypted residues, as integers mod ``2^64``, summed."""
    return reduce(_signed(from_residues(opened, moduli), shape))


def owner_share(local: Any, mask: np.ndarray, shape: tuple[int, ...],
                reduce: Callable[[Any], Any]) -> Any:
    """The owner's ring share: its own product minus its masks (low words), summed."""
    return local - reduce(_signed(low_word(mask), shape))


def to_mpc(crypten: Any, share: Any, precision: int) -> Any:
    """A CrypTen tensor from this party's share of a product at scale ``2^(2 precision)``."""
    tensor = crypten.mpc.MPCTensor.from_shares(share, precision=precision)
    return tensor.div(2**precision)
