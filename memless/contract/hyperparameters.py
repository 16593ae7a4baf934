"""Hyperparameters: declared once per optimizer, validated in one place.

An optimizer lists them in its class attribute ``hyperparameters``; each becomes
an attribute of the instance, checked on construction::

    hyperparameters = (decay("beta", 0.9, "momentum decay"), positive("eps", 1e-8))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..checks import in_range, real, shown
from ..errors import HyperparameterError


@dataclass(frozen=True)
class Hyperparameter:
    """A named hyperparameter with its default, its allowed values and a doc line.

    ``validate(value)`` returns the value converted to its canonical type, or raises
    :class:`~memless.errors.HyperparameterError` naming what is allowed.
    """

    name: str
    default: Any
    allowed: str
    check: Callable[[Any], Any] = field(repr=False)
    doc: str = ""
    #: the value the conformance kit and the report's evidence use, where the
    #: first-order theory holds within a short horizon (None: keep the instance's value)
    tame: Any = None

    def validate(self, value: Any, owner: str = "optimizer") -> Any:
        try:
            return self.check(value)
        except (TypeError, ValueError) as exc:
            raise HyperparameterError(
                f"{owner}: {self.name}={shown(value)} is invalid; allowed: {self.allowed}"
            ) from exc


def decay(name: str, default: float, doc: str = "", tame: float = 0.5) -> Hyperparameter:
    """A memory decay (momentum) parameter, in [0, 1)."""
    return Hyperparameter(name, default, "a number in [0, 1)", in_range(0.0, 1.0), doc, tame)


def positive(name: str, default: float, doc: str = "", tame: Any = None) -> Hyperparameter:
    """A strictly positive number (e.g. a numerical-stability epsilon)."""
    return Hyperparameter(name, default, "a number > 0", in_range(0.0, float("inf"), lo_open=True), doc, tame)


def nonnegative(name: str, default: float, doc: str = "") -> Hyperparameter:
    """A number >= 0."""
    return Hyperparameter(name, default, "a number >= 0", in_range(0.0, float("inf")), doc)


def weight_decay(default: float = 0.0) -> Hyperparameter:
    """The decoupled weight decay lambda >= 0 (see :class:`memless.DecoupledWeightDecay`)."""
    return nonnegative("weight_decay", default, "decoupled weight decay lambda")


def flag(name: str, default: bool, doc: str = "") -> Hyperparameter:
    """A boolean switch."""

    def check(value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError("not a bool")
        return bool(value)

    return Hyperparameter(name, default, "True or False", check, doc)


def choice(name: str, default: str, options: Iterable[str], doc: str = "") -> Hyperparameter:
    """One of a fixed set of strings."""
    options = tuple(options)

    def check(value):
        if value not in options:
            raise ValueError("not an option")
        return value

    return Hyperparameter(name, default, "one of " + ", ".join(repr(o) for o in options), check, doc)


def integer(name: str, default: int, lo: int, hi: int, doc: str = "") -> Hyperparameter:
    """An integer in [lo, hi] (an integral float such as 5.0 is accepted)."""

    def check(value):
        value = real(value)
        if value != int(value) or not lo <= value <= hi:
            raise ValueError("not an integer in range")
        return int(value)

    return Hyperparameter(name, default, f"an integer in [{lo}, {hi}]", check, doc)


def coefficients(name: str, default, length: int, doc: str = "") -> Hyperparameter:
    """A tuple of ``length`` finite numbers (also given as the string "a,b,c", as the CLI's --set does)."""

    def check(value):
        if isinstance(value, str):
            value = [part for part in value.split(",")]
            value = [float(part) for part in value]
        values = tuple(real(v) for v in value)
        if len(values) != length:
            raise ValueError("wrong length")
        return values

    return Hyperparameter(name, tuple(default), f"{length} finite numbers (a tuple, or 'a,b,c')", check, doc)


__all__ = ["Hyperparameter", "decay", "positive", "nonnegative", "weight_decay", "flag", "choice", "integer",
           "coefficients", "real"]
