"""What every mechanism is, and the registry that finds one by name.

A mechanism is a calibrated source of randomness with a privacy promise
``(epsilon, delta)`` for inputs whose sensitivity it was told. Additive
mechanisms (Laplace, Gaussian and their discrete twins) also hand out their
noise alone through :meth:`AdditiveMechanism.noise`, so that a backend can add
it where the data is: to a ciphertext before decryption, or to secret shares
before they are revealed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from pets.dp._splitting import check_parts
from pets.errors import DPConfigurationError

__all__ = [
    "AdditiveMechanism",
    "Mechanism",
    "make_mechanism",
    "register_mechanism",
    "registered_mechanisms",
]

Event = dict[str, Any]
"""A JSON-serialisable description of a privacy event (see ``pets.dp.events``)."""

_REGISTRY: dict[str, type[Mechanism]] = {}

M = TypeVar("M", bound="type[Mechanism]")


class Mechanism(ABC):
    """A randomised function with an ``(epsilon, delta)`` promise.

    >>> import pets.dp
    >>> mechanism = pets.dp.make_mechanism("laplace", epsilon=1.0, sensitivity=1.0)
    >>> (mechanism.epsilon, mechanism.delta)
    (1.0, 0.0)
    """

    name: ClassVar[str] = ""

    @property
    @abstractmethod
    def epsilon(self) -> float:
        """The privacy-loss bound this mechanism was calibrated for."""

    @property
    def delta(self) -> float:
        """The probability with which the epsilon bound may fail (0 for pure DP)."""
        return 0.0

    @abstractmethod
    def __call__(self, x: Any) -> npt.NDArray[Any]:
        """Return a private version of ``x`` (a numpy array of ``x``'s shape)."""

    @abstractmethod
    def dp_event(self) -> Event:
        """Describe one use of this mechanism for a privacy accountant."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self._describe().items())
        return f"{type(self).__name__}({fields})"

    def _describe(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "delta": self.delta}


class AdditiveMechanism(Mechanism):
    """A mechanism that adds independent noise to each value: ``x + noise(shape)``.

    Subclasses set ``_epsilon``, ``_sensitivity`` and ``_scale`` (and ``_delta``
    for approximate DP) when they calibrate.
    """

    _epsilon: float
    _delta: float = 0.0
    _sensitivity: float
    _scale: float

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @property
    def delta(self) -> float:
        return self._delta

    @property
    def scale(self) -> float:
        """The noise scale (Laplace ``b``, Gaussian standard deviation ``sigma``)."""
        return self._scale

    @property
    def sensitivity(self) -> float:
        """The bound on how much one person can change the input (L1 or L2)."""
        return self._sensitivity

    @abstractmethod
    def noise(self, shape: int | tuple[int, ...]) -> npt.NDArray[Any]:
        """Noise alone, for a backend to add to data it holds (ciphertexts, shares)."""

    def noise_share(self, shape: int | tuple[int, ...], *, parts: int) -> npt.NDArray[Any]:
        """One of ``parts`` independent shares whose sum is distributed exactly as :meth:`noise`.

        Each party of a multi-party run adds one share to its own secret share
        (see :func:`pets.dp.joint_noise`), so the released value carries the
        mechanism's noise and no party knows it. A mechanism whose noise does
        not divide overrides nothing and refuses ``parts > 1``.
        """
        if check_parts(parts) == 1:
            return self.noise(shape)
        raise DPConfigurationError(
            f"{type(self).__name__} cannot split its noise into {parts} shares. Fix: use "
            "LaplaceMechanism, GaussianMechanism, DiscreteLaplaceMechanism or "
            "DiscreteGaussianMechanism, or implement noise_share for yours."
        )

    @property
    def std(self) -> float:
        """The standard deviation of one noise value."""
        return self.scale


def register_mechanism(name: str) -> Callable[[M], M]:
    """Class decorator: make a mechanism available to :func:`make_mechanism` as ``name``.

    >>> from pets.dp.mechanisms import register_mechanism, registered_mechanisms
    >>> "laplace" in registered_mechanisms()
    True
    """

    def decorate(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise DPConfigurationError(
                f"a mechanism named {name!r} is already registered ({_REGISTRY[name].__name__}). "
                "Fix: register yours under another name."
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_mechanisms() -> tuple[str, ...]:
    """The names :func:`make_mechanism` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def make_mechanism(name: str, /, **parameters: Any) -> Mechanism:
    """Build the mechanism registered as ``name`` with keyword ``parameters``.

    >>> import pets.dp
    >>> pets.dp.make_mechanism("gaussian", epsilon=0.5, delta=1e-5, sensitivity=1.0).delta
    1e-05
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise DPConfigurationError(
            f"unknown mechanism {name!r}. Fix: use one of {', '.join(registered_mechanisms())} "
            "or register yours with @pets.dp.register_mechanism."
        ) from None
    return cls(**parameters)


def as_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    """Normalise an int or tuple shape, rejecting negative sizes."""
    result = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    if any(n < 0 for n in result):
        raise DPConfigurationError(
            f"shape must not be negative, got {shape!r}. Fix: pass a valid shape."
        )
    return tuple(int(n) for n in result)
