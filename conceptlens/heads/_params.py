"""Declarative parameter tables for the heads, checked at the top of ``fit``.

Each estimator lists, for every ``__init__`` parameter, the values it accepts
(``_parameter_constraints``, as scikit-learn does); :func:`validate_params` checks them
all before any work and raises one :class:`~conceptlens.exceptions.ConfigError` shape::

    SparseLinearHead: parameter 'C' must be a float in (0, inf); got -1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from conceptlens.exceptions import ConfigError

__all__ = [
    "ArrayLike",
    "Boolean",
    "HasMethods",
    "Interval",
    "Options",
    "check_param",
    "validate_params",
]


@dataclass(frozen=True)
class Interval:
    """A real (``kind=Real``) or integer (``kind=Integral``) range; ``None`` is unbounded."""

    kind: Any  # numbers.Real or numbers.Integral
    left: float | None
    right: float | None
    closed: str = "both"  # "both", "left", "right" or "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool | np.bool_) or not isinstance(value, self.kind):
            return False
        v = float(value)
        if not math.isfinite(v):
            return False
        lo_ok = self.left is None or (
            v >= self.left if self.closed in ("both", "left") else v > self.left
        )
        hi_ok = self.right is None or (
            v <= self.right if self.closed in ("both", "right") else v < self.right
        )
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        what = "an int" if self.kind is Integral else "a float"
        return f"{what} in {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class _Boolean:
    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)

    def __str__(self) -> str:
        return "a bool"


class _ArrayLike:
    def accepts(self, value: Any) -> bool:
        return hasattr(value, "__array__") or isinstance(value, list | tuple)

    def __str__(self) -> str:
        return "an array"


@dataclass(frozen=True)
class HasMethods:
    """An object with these methods (an estimator)."""

    methods: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return all(callable(getattr(value, m, None)) for m in self.methods)

    def __str__(self) -> str:
        return "an object with " + ", ".join(f"{m}()" for m in self.methods)


@dataclass(frozen=True)
class _InstanceOf:
    kind: Any  # a class

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return f"a {self.kind.__name__}"


class _Device:
    """A device name for the passes over ``X``: "auto", "cpu", "cuda" or "cuda:N"."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and (
            value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value) is not None
        )

    def __str__(self) -> str:
        return "one of 'auto', 'cpu', 'cuda', 'cuda:N'"


Boolean = _Boolean()
ArrayLike = _ArrayLike()


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return _InstanceOf(constraint).accepts(value)
    return bool(constraint.accepts(value))


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return str(_InstanceOf(constraint))
    return str(constraint)


def validate_params(estimator: Any, constraints: dict[str, list[Any]]) -> None:
    """Check every parameter of ``estimator`` against its table; raise on the first miss.

    Examples
    --------
    >>> from conceptlens.heads import SparseLinearHead
    >>> from conceptlens.heads._params import validate_params
    >>> validate_params(SparseLinearHead(C=-1.0), SparseLinearHead._parameter_constraints)
    Traceback (most recent call last):
    ...
    conceptlens.exceptions.ConfigError: SparseLinearHead: parameter 'C' must be a float in (0, inf); got -1.0.
    """  # noqa: E501
    params = estimator.get_params(deep=False)
    missing = sorted(set(params) - set(constraints))
    if missing:  # a parameter without a row in the table is a bug of the estimator
        raise RuntimeError(f"{type(estimator).__name__} has no constraints for {missing}")
    for name, allowed in constraints.items():
        check_param(type(estimator).__name__, name, params[name], allowed)


def check_param(owner: str, name: str, value: Any, allowed: list[Any]) -> None:
    """Raise ConfigError unless ``value`` meets one of the ``allowed`` constraints."""
    if not any(_accepts(c, value) for c in allowed):
        what = " or ".join(_describe(c) for c in allowed)
        raise ConfigError(f"{owner}: parameter {name!r} must be {what}; got {value!r}.")


# shared rows
POSITIVE = Interval(Real, 0.0, None, "neither")
NON_NEGATIVE = Interval(Real, 0.0, None, "left")
UNIT = Interval(Real, 0.0, 1.0, "both")
POSITIVE_INT = Interval(Integral, 1, None, "left")
CLASS_WEIGHT = [None, Options(("balanced",)), dict]
SEED = [None, Interval(Integral, 0, None, "left"), np.random.Generator]
CS = [POSITIVE_INT, ArrayLike]  # grid length, or explicit positive values
EPS = [Interval(Real, 0.0, 1.0, "neither")]
FRACTION = Interval(Real, 0.0, 1.0, "neither")
DEVICE = [_Device()]  # where the solver's passes over X run (see heads._device)
