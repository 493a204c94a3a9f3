"""Hybrid two-party inference: linear layers under BFV, non-linear layers under MPC.

Two parties and no one else: party 0 the client (its input), party 1 the
model owner (its weights, ``weights_from=1``). Linear layers (Linear, Conv2d,
a per-channel scale) run as HE products of the client's encrypted share with
the owner's weights in the clear (:mod:`~pets.backends.hybrid.linear`); their
results become MPC shares (:mod:`~pets.backends.hybrid.conversion`); ReLU,
max-pool and softmax run exactly under CrypTen's protocols with Beaver triples
the two parties make under BFV themselves (provider ``"he"``). Additions,
average pooling and other steps linear in shares are local.

Use it inside :func:`pets.run_parties`::

    def fn(party):
        model = pets.compile(net, backend=party.backend, example_input=x0, weights_from=1)
        x = model.encrypt(inputs if party.rank == 0 else None, src=0)
        return model.decrypt(model(x), to=0)

    pets.run_parties(fn, parties=2, backend="hybrid")

What the owner passes to ``encrypt`` (its weights) stays with it in the clear;
the other party holds only the shape. The threat model is in ``docs/hybrid.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from pets.backends.base import Capabilities, Requirements
from pets.backends.hybrid.linear import LinearSession, apply_owned
from pets.backends.hybrid.owned import Owned
from pets.backends.mpc import MPCBackend, engine
from pets.backends.mpc.launch import MPCRuntime
from pets.errors import MissingKeyError, ParameterError, UnsupportedOperationError
from pets.registry import register_backend

__all__ = ["OWNER", "HybridBackend", "HybridRuntime"]

#: the model owner's rank; the client is the other party
OWNER = 1


def _unsupported(what: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"the hybrid backend cannot {what}: the owner's parameters stay on the owner in the "
        "clear, and only products of private data with them (Linear, Conv2d, a "
        "per-channel scale) and additions of them (biases) run under HE; compile without "
        "weights_from to share the weights instead, or use backend 'mpc'"
    )


class HybridRuntime(MPCRuntime):
    """The hybrid run for :func:`pets.run_parties`: two parties, triples made under HE."""

    default_provider = "he"

    def check_provider(self, parties: int, provider: str | None) -> str:
        if parties != 2:
            raise ParameterError(f"backend 'hybrid' runs between exactly two parties (the "
                                 f"client, rank 0, and the model owner, rank 1), not {parties}; "
                                 f"use backend 'mpc' for more parties")
        if provider not in (None, "he"):
            raise ParameterError(f"backend 'hybrid' has no dealer: its triples are made by the "
                                 f"two parties under HE (provider 'he'), not {provider!r}")
        return "he"


@register_backend("hybrid")
class HybridBackend(MPCBackend):
    """One of the two parties of a hybrid run (client rank 0, owner rank 1)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        comparisons=True, private_weights=True,
        max_rank=None, training=False,
        parties="2: client (rank 0) and owner (rank 1), no dealer",
    )

    @classmethod
    def party_runtime(cls) -> HybridRuntime:
        """Client and owner, no dealer (:class:`HybridRuntime`)."""
        return HybridRuntime()

    def __init__(self, **options: Any) -> None:
        config = engine.current()
        if config is None or config.parties != 2 or config.provider != "he":
            raise ParameterError(
                "the hybrid backend runs between exactly two parties with no dealer: start them "
                "with pets.run_parties(fn, parties=2, backend='hybrid') and use party.backend"
            )
        super().__init__(**options)
        self._session = LinearSession(engine.communicator(), self._crypten,
                                      config.precision_bits)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        role = "client (input)" if self.rank != OWNER else "owner (weights in the clear)"
        out.update(backend=self.name, role=role, linear_layers="BFV (SEAL), owner's weights "
                   "in the clear", non_linear="CrypTen protocols, provider 'he' triples")
        return out

    # ---- the owner's parameters stay with it -----------------------------------------

    def _encrypt(self, array: np.ndarray | None, *, src: int | None, layout: str,
                 requirements: Requirements | None = None) -> Any:
        if src == OWNER:
            shape = self._agree_on_shape(array, OWNER)
            if self.rank == OWNER:
                assert array is not None
                return Owned(np.array(array, dtype=np.float64), owner=OWNER, here=self.rank)
            return Owned.placeholder(shape, owner=OWNER)
        return super()._encrypt(array, src=src, layout=layout, requirements=requirements)

    def _decrypt(self, native: Any, *, to: int | None) -> np.ndarray | None:
        if isinstance(native, Owned):
            if to != native.owner:
                raise MissingKeyError(f"party {native.owner}'s parameters stay with party "
                                      f"{native.owner}; decrypt them with to={native.owner}")
            return native.values if self.rank == native.owner else None
        return super()._decrypt(native, to=to)

    def native_shape(self, a: Any) -> tuple[int, ...]:
        return a.shape if isinstance(a, Owned) else super().native_shape(a)

    # ---- products with the owner's parameters: HE ------------------------------------

    def _owned_product(self, op: str, a: Any, b: Any, **kwargs: Any) -> Any:
        if isinstance(a, Owned) and isinstance(b, Owned):
            if op != "mul":
                raise _unsupported(f"run {op} of two of the owner's parameters")
            return a.combine(b, np.multiply)
        if isinstance(a, Owned):
            if op != "mul":
                raise _unsupported(f"multiply the owner's parameters by private data ({op})")
            a, b = b, a
        return apply_owned(self._session, op, a, b, kwargs)

    def multiply(self, a: Any, b: Any) -> Any:
        if isinstance(a, Owned) or isinstance(b, Owned):
            return self._owned_product("mul", a, b)
        return super().multiply(a, b)

    def matmul(self, a: Any, b: Any) -> Any:
        if isinstance(a, Owned) or isinstance(b, Owned):
            return self._owned_product("matmul", a, b)
        return super().matmul(a, b)

    def conv2d(self, a: Any, weight: Any, *, stride: tuple[int, int],
               padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> Any:
        if isinstance(weight, Owned):
            if isinstance(a, Owned) or groups != 1:
                raise _unsupported("run a grouped convolution of the owner's weights" if groups != 1
                                   else "convolve the owner's parameters with each other")
            return self._owned_product("conv2d", a, weight, stride=stride, padding=padding,
                                       dilation=dilation)
        return super().conv2d(a, weight, stride=stride, padding=padding, dilation=dilation,
                              groups=groups)

    # ---- additions: the owner adds its parameters to its share -------------------------

    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, Owned) and isinstance(b, Owned):
            return a.combine(b, np.add)
        if isinstance(a, Owned):
            a, b = b, a
        if isinstance(b, Owned):
            values = b.values if b.values is not None else np.zeros(b.shape)
            encoded = self._session.encode(values)
            out = a.clone()
            out.share = out.share + encoded.to(out.share.device).expand(out.share.shape)
            return out
        return super().add(a, b)

    def negate(self, a: Any) -> Any:
        return a.apply(np.negative) if isinstance(a, Owned) else super().negate(a)

    def add_plain(self, a: Any, plain: np.ndarray) -> Any:
        if isinstance(a, Owned):
            return a.apply(lambda v: v + plain)
        return super().add_plain(a, plain)

    def multiply_plain(self, a: Any, plain: np.ndarray) -> Any:
        if isinstance(a, Owned):
            return a.apply(lambda v: v * plain)
        return super().multiply_plain(a, plain)

    # ---- layout: local on both sides ---------------------------------------------------

    def reshape(self, a: Any, old: tuple[int, ...], new: tuple[int, ...]) -> Any:
        return a.apply(lambda v: v.reshape(new)) if isinstance(a, Owned) else super().reshape(
            a, old, new)

    def transpose(self, a: Any, axes: tuple[int, ...], shape: tuple[int, ...]) -> Any:
        if isinstance(a, Owned):
            return a.apply(lambda v: np.transpose(v, axes))
        return super().transpose(a, axes, shape)

    def broadcast_to(self, a: Any, old: tuple[int, ...], new: tuple[int, ...]) -> Any:
        if isinstance(a, Owned):
            return a.apply(lambda v: np.broadcast_to(v, new))
        return super().broadcast_to(a, old, new)

    def take(self, a: Any, index: Any, shape: tuple[int, ...]) -> Any:
        return a.apply(lambda v: v[index]) if isinstance(a, Owned) else super().take(
            a, index, shape)

    def sum(self, a: Any, axes: tuple[int, ...], shape: tuple[int, ...]) -> Any:
        return a.apply(lambda v: v.sum(axis=axes)) if isinstance(a, Owned) else super().sum(
            a, axes, shape)

    def concat(self, natives: Sequence[Any], axis: int,
               shapes: Sequence[tuple[int, ...]]) -> Any:
        if any(isinstance(n, Owned) for n in natives):
            raise _unsupported("join the owner's parameters with private data")
        return super().concat(natives, axis, shapes)

    def less_than_zero(self, a: Any) -> Any:
        if isinstance(a, Owned):
            raise _unsupported("compare the owner's parameters")
        return super().less_than_zero(a)

    def matmul_plain(self, a: Any, matrix: np.ndarray) -> Any:
        if isinstance(a, Owned):
            return a.apply(lambda v: v @ matrix)
        return super().matmul_plain(a, matrix)

    def _dump_tensor(self, a: Any) -> tuple[dict[str, Any], list[bytes]]:
        if isinstance(a, Owned):
            raise _unsupported("save the owner's parameters as shares")
        return super()._dump_tensor(a)
