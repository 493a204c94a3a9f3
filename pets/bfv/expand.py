"""Bilinear tensor products as elementwise products followed by sums.

``op(a, b) == reduce(A * B)`` for ``A, B = expand(op, a, b)``: ``mul``
broadcasts, ``matmul`` pairs each row entry with each column entry, ``conv1d`` /
``conv2d`` gather image patches by index (im2col, zeros for padding). One party
can expand its ``a`` and the other its ``b`` alone (each passes zeros of the
other's shape): the slot order is fixed by the shapes, so an oblivious
elementwise product under BFV, summed afterwards, gives shares of ``op(a, b)``.

>>> import torch
>>> a, b = torch.arange(6).reshape(2, 3), torch.arange(12).reshape(3, 4)
>>> left, right, reduce = expand("matmul", a, b, {})
>>> torch.equal(reduce(left * right), a @ b)
True
"""

from __future__ import annotations

from typing import Any

from pets.errors import ProtocolError

__all__ = ["expand"]


def _torch() -> Any:
    import torch

    return torch


def _shape_of(op: str, a: Any, b: Any, kwargs: dict[str, Any]) -> tuple[int, ...]:
    """The shape ``op(a, b)`` has, found on torch's meta device (no arithmetic)."""
    torch = _torch()
    left, right = (torch.empty(t.shape, dtype=torch.float64, device="meta") for t in (a, b))
    function = torch.matmul if op == "matmul" else getattr(torch.nn.functional, op)
    return tuple(function(left, right, **kwargs).shape)


def expand(op: str, a: Any, b: Any, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Tensors ``A, B`` of one shape and ``reduce`` with ``op(a, b) == reduce(A * B)``."""
    torch = _torch()
    if op == "mul":
        left, right = torch.broadcast_tensors(a, b)
        return left, right, lambda products: products
    if op == "matmul":
        out = _shape_of(op, a, b, {})
        rows = a.unsqueeze(0) if a.dim() == 1 else a
        columns = b.unsqueeze(-1) if b.dim() == 1 else b
        left, right = torch.broadcast_tensors(rows.unsqueeze(-1), columns.unsqueeze(-3))
        return left, right, lambda products: products.sum(-2).reshape(out)
    if op in ("conv1d", "conv2d"):
        return _expand_conv(op, a, b, kwargs)
    raise ProtocolError(f"provider 'he' makes no triples for {op!r}; it serves mul, matmul, "
                        f"conv1d and conv2d")


def _pair(value: Any, one_d: bool, neutral: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (neutral, int(value[0])) if one_d else (int(value[0]), int(value[1]))
    return (neutral, int(value)) if one_d else (int(value), int(value))


def _expand_conv(op: str, a: Any, b: Any, kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Im2col by index: each output sums image patch entries times kernel entries."""
    torch = _torch()
    if int(kwargs.get("groups", 1)) != 1:
        raise ProtocolError("provider 'he' makes convolution triples for groups=1 only")
    one_d = op == "conv1d"
    image = a.unsqueeze(-2) if one_d else a
    kernel = b.unsqueeze(-2) if one_d else b
    stride = _pair(kwargs.get("stride", 1), one_d, 1)
    padding = _pair(kwargs.get("padding", 0), one_d, 0)
    dilation = _pair(kwargs.get("dilation", 1), one_d, 1)
    batch, out_channels = image.shape[0], kernel.shape[0]
    index = torch.arange(1, image[0].numel() + 1, dtype=torch.float64).reshape(1, *image.shape[1:])
    patches = torch.nn.functional.unfold(index, tuple(kernel.shape[2:]), dilation=dilation,
                                         padding=padding, stride=stride).long()[0]  # 0: padding
    flat = torch.cat([torch.zeros(batch, 1, dtype=torch.int64), image.reshape(batch, -1)], 1)
    gathered = flat[:, patches.reshape(-1)].reshape(batch, 1, *patches.shape)
    left, right = torch.broadcast_tensors(gathered, kernel.reshape(1, out_channels, -1, 1))
    out = _shape_of(op, a, b, kwargs)
    return left, right, lambda products: products.sum(2).reshape(out)
