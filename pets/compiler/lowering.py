"""The lowering registry: what each torch operation becomes in a private model.

A rule is registered for torch targets (module classes, functions, ``Tensor``
method names written ``"Tensor.view"``, ATen operators) with
``@register_lowering``, Opacus style, and returns one of:

=================  ========================================================
``Linear()``       affine in its private inputs; fused with its neighbours
                   into one ``x @ W + b`` probed from torch (one level)
``Square()``       ``x * x`` (one level)
``Product()``      ``x * y`` of two private tensors (one level)
``Activation(f)``  element-wise function ``f``, replaced by a fitted polynomial
``Polynomial(c)``  an exact polynomial (``pets.nn.PolyActivation``)
``Unsupported``    why it cannot run privately and what to use instead
=================  ========================================================

A module class with a rule is kept whole when tracing:

>>> import torch
>>> class Swish(torch.nn.Module):
...     def forward(self, x): return x * torch.sigmoid(x)
>>> @register_lowering(Swish)
... def _swish(op: OpContext) -> Lowering:
...     return Activation("swish")
>>> is_registered(Swish)
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import fx, nn

__all__ = [
    "Activation",
    "Linear",
    "Lowering",
    "OpContext",
    "Polynomial",
    "Product",
    "Rule",
    "Square",
    "Unsupported",
    "lookup",
    "register_lowering",
    "is_registered",
    "supported_layers",
]


@dataclass(frozen=True)
class Linear:
    """Affine in its private inputs (per sample); fused into one ``x @ W + b``."""


@dataclass(frozen=True)
class Square:
    """``x * x`` of one private tensor."""


@dataclass(frozen=True)
class Product:
    """``x * y`` of two different private tensors of the same shape."""


@dataclass(frozen=True)
class Activation:
    """An element-wise function approximated by a polynomial fitted over a range."""

    function: str


@dataclass(frozen=True)
class Polynomial:
    """An exact polynomial, power-basis coefficients ``c0, c1, ...``."""

    coefficients: tuple[float, ...]


@dataclass(frozen=True)
class Unsupported:
    """An operation that cannot run privately: why, and what to use instead."""

    problem: str
    fix: str


Lowering = Linear | Square | Product | Activation | Polynomial | Unsupported


@dataclass(frozen=True)
class OpContext:
    """What a rule sees of one graph node."""

    node: fx.Node
    #: the submodule, for ``call_module`` nodes
    module: nn.Module | None
    #: arguments that carry private data, in argument order
    data_args: tuple[fx.Node, ...]
    #: values of every node on the example input (constants included)
    values: Mapping[fx.Node, Any]

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """A plain argument's value, positional ``index`` or keyword ``name``."""
        if len(self.node.args) > index:
            value = self.node.args[index]
        else:
            value = self.node.kwargs.get(name, default)
        return self.values.get(value, default) if isinstance(value, fx.Node) else value


Rule = Callable[[OpContext], Lowering]
RuleT = TypeVar("RuleT", bound=Rule)

_RULES: dict[Any, Rule] = {}
_SUPPORTED_MODULES: dict[type[nn.Module], None] = {}


def register_lowering(*targets: Any, supported: bool = True) -> Callable[[RuleT], RuleT]:
    """Register ``rule`` for torch targets (module classes, functions, ATen ops, ``"Tensor.x"``).

    ``supported=False`` marks rules that only explain why a target is rejected, so
    that error messages list only what works.
    """

    def decorate(rule: RuleT) -> RuleT:
        for target in targets:
            key = _key(target)
            _RULES[key] = rule
            if supported and isinstance(target, type) and issubclass(target, nn.Module):
                _SUPPORTED_MODULES[target] = None
        return rule

    return decorate


def _key(target: Any) -> Any:
    if isinstance(target, torch._ops.OpOverload):
        return target.overloadpacket
    return target


def lookup(node: fx.Node, module: nn.Module | None) -> Rule | None:
    """The rule registered for what ``node`` calls, or ``None``."""
    if node.op == "call_module" and module is not None:
        for cls in type(module).__mro__:
            if cls in _RULES:
                return _RULES[cls]
        return None
    if node.op == "call_method":
        return _RULES.get(f"Tensor.{node.target}")
    if node.op == "call_function":
        try:
            return _RULES.get(_key(node.target))
        except TypeError:  # unhashable target
            return None
    return None


def is_registered(cls: type[nn.Module]) -> bool:
    """Whether a rule is registered for module class ``cls`` (or a base class)."""
    return any(base in _RULES for base in cls.__mro__)


def supported_layers() -> list[str]:
    """Names of the registered module classes that compile (listed in error messages)."""
    return sorted(cls.__name__ for cls in _SUPPORTED_MODULES)
