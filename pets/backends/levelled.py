"""What the levelled-SIMD lowering and the backends it serves say to each other.

A levelled backend (CKKS today, a BFV backend later) computes on vectors of
slots with a budget of multiplicative levels. ``pets.compile`` hands a model
for such a backend to the levelled lowering (:mod:`pets.compiler.model`: fused
affine maps, polynomials, placements, precision and noise plans, estimates),
which talks to the backend through two declared things only:

* :class:`LevelledRequirements`, the extension of
  :class:`~pets.backends.base.Requirements` the lowering writes and the backend
  reads (depth, products, the first product's packing, precision, noise gain);
* :class:`LevelledBackend`, the methods the lowering calls on a backend whose
  ``lowering`` is ``"levelled"`` (costs, packing advice, bounds, splitting rows).

The lowering also runs on a backend that names another lowering
(``pets.compile(..., approximate=True)`` on ``"plain"``, to check what HE will
compute); :func:`levelled_backend` then answers ``None`` and the lowering uses
plain tensor operations and the :data:`DEFAULT_PLANNING` assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from pets.backends.base import Backend, Requirements, RequirementsExtension, read_count
from pets.errors import SerializationError

if TYPE_CHECKING:
    import numpy as np

    from pets.slots import SparseMatrix

__all__ = [
    "DEFAULT_PLANNING",
    "LEVELLED",
    "LevelledBackend",
    "LevelledRequirements",
    "Planning",
    "levelled_backend",
    "levelled_requirements",
]

#: the name of the lowering (``Backend.lowering``) and of its requirements extension
LEVELLED = "levelled"

Native = Any
Shape = tuple[int, int]


@dataclass(frozen=True)
class Planning:
    """What the lowering assumes when it places values, before any key exists."""

    #: slots per ciphertext assumed when costing a gathered first product
    slots: int = 8192
    #: what a rotation costs, in plaintext multiplications
    rotation_cost: float = 8.0


#: the assumptions of a backend that gives none (N = 16384, measured on CKKS)
DEFAULT_PLANNING = Planning()


@dataclass(frozen=True)
class LevelledRequirements(RequirementsExtension):
    """What a levelled backend sizes its parameters and keys by.

    >>> r = Requirements(extension=LevelledRequirements(depth=2, matmul_shapes=((4, 2),)))
    >>> Requirements.from_dict(r.to_dict()) == r
    True
    """

    kind: ClassVar[str] = LEVELLED

    #: multiplicative depth of the longest chain of products
    depth: int = 0
    #: ``(n, m)`` of every product with a plain ``n x m`` matrix
    matmul_shapes: tuple[Shape, ...] = ()
    #: ``(n, m)`` when the input feeds a single ``n x m`` product first
    first_product: Shape | None = None
    #: output error per unit of noise (sizes the scale that meets ``precision``)
    noise_gain: float | None = None
    #: the largest output error the parameters are sized for
    precision: float | None = None
    #: largest ``|x|`` an input may hold (``encrypt`` checks it)
    input_bound: float | None = None
    #: the layer that adds the most noise, named in errors
    noisiest_layer: str | None = None
    #: every product's periods and non-zero diagonals (the backend's rotation keys)
    products: tuple[Mapping[str, Any], ...] | None = None
    #: the gather table of a sparse first product (JSON-safe)
    gather: Mapping[str, Any] | None = None
    #: one party's own option, never sent: ``"raise"``, ``"warn"`` or ``"off"``
    check_range: str = field(default="raise", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "matmul_shapes": [list(s) for s in self.matmul_shapes],
            "first_product": None if self.first_product is None else list(self.first_product),
            "noise_gain": self.noise_gain,
            "precision": self.precision,
            "input_bound": self.input_bound,
            "noisiest_layer": self.noisiest_layer,
            "products": None if self.products is None else [dict(p) for p in self.products],
            "gather": None if self.gather is None else dict(self.gather),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LevelledRequirements:
        shapes = data.get("matmul_shapes", [])
        if not isinstance(shapes, list) or len(shapes) > 4096:
            raise SerializationError("requirements: matmul_shapes must be a short list")
        first = data.get("first_product")
        products = data.get("products")
        if products is not None and not (
            isinstance(products, list) and all(isinstance(p, Mapping) for p in products)
        ):
            raise SerializationError("requirements: products must be a list of objects")
        gather = data.get("gather")
        if gather is not None and not isinstance(gather, Mapping):
            raise SerializationError("requirements: gather must be an object")
        noisiest = data.get("noisiest_layer")
        if noisiest is not None and not isinstance(noisiest, str):
            raise SerializationError("requirements: noisiest_layer must be a name")
        return cls(
            depth=read_count(data.get("depth", 0), "requirements: depth"),
            matmul_shapes=tuple(_pair(s, "matmul_shapes") for s in shapes),
            first_product=None if first is None else _pair(first, "first_product"),
            noise_gain=_size(data.get("noise_gain"), "noise_gain"),
            precision=_size(data.get("precision"), "precision"),
            input_bound=_size(data.get("input_bound"), "input_bound"),
            noisiest_layer=noisiest,
            products=None if products is None else tuple(dict(p) for p in products),
            gather=None if gather is None else dict(gather),
        )


def _pair(value: Any, what: str) -> Shape:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SerializationError(f"requirements: {what} must be a pair [n, m]")
    return (read_count(value[0], f"requirements: {what}", 1),
            read_count(value[1], f"requirements: {what}", 1))


def _size(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value >= 0
    ):
        raise SerializationError(
            f"requirements: {what} must be a finite number >= 0, got {value!r}"
        )
    return float(value)


def levelled_requirements(requirements: Requirements | None) -> LevelledRequirements:
    """The levelled extension of ``requirements`` (an empty one if it carries none)."""
    extension = None if requirements is None else requirements.extension
    return extension if isinstance(extension, LevelledRequirements) else LevelledRequirements()


class LevelledBackend(Protocol):
    """What the levelled lowering asks of a backend whose ``lowering`` is ``"levelled"``."""

    def planning(self) -> Planning:
        """The slots and rotation cost to assume when placing values (before keys exist)."""
        ...

    def operation_costs(self) -> dict[str, Any]:
        """Bytes of a ciphertext and a plaintext per level, seconds per operation, ``slots``
        (:mod:`pets.compiler.estimate` reads them)."""
        ...

    def packing_advice(self, a: Native, requirements: Requirements) -> str | None:
        """Why ``a`` is packed slowly for a computation with ``requirements`` (or ``None``)."""
        ...

    def assume_bound(self, a: Native, bound: float) -> Native:
        """``a`` whose values are vouched to stay within ``bound`` (a calibrated range)."""
        ...

    def matmul_sparse(self, a: Native, matrix: np.ndarray | SparseMatrix,
                      placement: np.ndarray | None) -> Native:
        """``a @ matrix`` for a dense or sparse matrix, the result placed at ``placement``."""
        ...

    def split_rows(self, a: Native, parts: int) -> list[Native]:
        """``a`` cut into at most ``parts`` independent pieces (for worker processes)."""
        ...

    def join_rows(self, pieces: Sequence[Native]) -> Native:
        """The inverse of :meth:`split_rows`."""
        ...


def levelled_backend(backend: Backend) -> LevelledBackend | None:
    """``backend`` as a :class:`LevelledBackend` if it names the levelled lowering, else
    ``None`` (it declares the interface by naming the lowering; nothing is probed)."""
    return cast(LevelledBackend, backend) if backend.lowering == LEVELLED else None
