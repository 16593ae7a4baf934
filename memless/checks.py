"""Input checks, in one place: each returns the canonical value or raises a
:class:`~memless.errors.MemlessError` whose one-line message names the argument,
the bad value and what is allowed.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Literal, Optional, Sequence, overload

import numpy as np

from .errors import LossError, MemlessError

# ----------------------------------------------------------------------------
# Showing a value in a one-line message
# ----------------------------------------------------------------------------


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line, at most ``limit`` characters (arrays summarized)."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, separator=", ", threshold=8, edgeitems=3, max_line_width=10 ** 6)
        text = f"array({text}) of shape {value.shape}" if value.ndim != 1 else text
    else:
        try:
            text = repr(value)
        except Exception:
            text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def said(exc: BaseException, limit: int = 160) -> str:
    """What an exception says, on one line, its first ``limit`` characters (for a one-line error
    that passes on another library's message)."""
    return " ".join(str(exc).split())[:limit]


# ----------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------


def real(value: Any) -> float:
    """``value`` as a finite float; TypeError/ValueError otherwise (for :class:`Hyperparameter` checks)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("not a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def in_range(lo: float, hi: float, lo_open: bool = False, hi_open: bool = True):
    """A check accepting real numbers in the interval (lo_open/hi_open choose the brackets)."""
    def check(value):
        value = real(value)
        if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
            raise ValueError("out of range")
        return value

    return check


def check_positive(value: Any, name: str) -> float:
    """A finite number > 0, named ``name`` in the error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise MemlessError(f"{name} must be a finite number > 0, got {shown(value)}")
    return float(value)


def check_lr(lr: Any) -> float:
    """The learning rate h: a finite number > 0."""
    return check_positive(lr, "lr")


@overload
def check_n(n: Any, allow_none: Literal[False], name: str = "n") -> int: ...
@overload
def check_n(n: Any, allow_none: bool = True, name: str = "n") -> Optional[int]: ...


def check_n(n: Any, allow_none: bool = True, name: str = "n") -> Optional[int]:
    """A step count: an integer >= 0 (or None, for the n -> infinity limit, where allowed)."""
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        allowed = "an integer >= 0 (or None for the n -> infinity limit)" if allow_none else "an integer >= 0"
        raise MemlessError(f"{name} must be {allowed}, got {shown(n)}")
    return int(n)


def check_flag(value: Any, name: str) -> bool:
    """True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise MemlessError(f"{name} must be True or False, got {shown(value)}")
    return bool(value)


def check_choice(value: Any, options: Sequence[str], name: str) -> str:
    """One of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise MemlessError(f"{name} must be one of {', '.join(options)}; got {shown(value)}")
    return value


def check_lrs(lrs: Any) -> list:
    """At least two distinct learning rates > 0 (an order is a slope)."""
    try:
        values = list(lrs)
    except TypeError:
        raise MemlessError(f"lrs must be a list of learning rates, got {type(lrs).__name__}") from None
    values = [check_positive(lr, "each of lrs") for lr in values]
    if len(set(values)) != len(values) or len(values) < 2:
        raise MemlessError(f"lrs must hold at least two learning rates, all different, to fit an order, got {shown(values)}")
    return values


# ----------------------------------------------------------------------------
# Budgets: every request is bounded before its work starts
# ----------------------------------------------------------------------------

#: the most optimizer steps (all paths of a request together, or history entries read) one request may run
MAX_STEPS = 10_000_000
#: the most corrections M (each a few gradients and Hessian-vector products) one request may compute
MAX_CORRECTIONS = 50_000
#: the most bytes one request may hold in its arrays (2 GiB)
MAX_BYTES = 2 ** 31
#: the most parameters theta may have (a correction holds about 20 vectors of theta's size)
MAX_PARAMETERS = 50_000_000


def check_budget(what: str, *, steps: int = 0, corrections: int = 0, nbytes: int = 0) -> None:
    """Refuse, before any work, a request beyond :data:`MAX_STEPS` optimizer steps,
    :data:`MAX_CORRECTIONS` corrections or :data:`MAX_BYTES` bytes (module attributes: raise them
    with ``memless.checks.MAX_STEPS = ...`` to allow more)."""
    if steps > MAX_STEPS:
        raise MemlessError(f"{what}: {steps:.3g} optimizer steps is more than memless.checks.MAX_STEPS={MAX_STEPS:.3g}; "
                           "ask for fewer (or raise memless.checks.MAX_STEPS)")
    if corrections > MAX_CORRECTIONS:
        raise MemlessError(f"{what}: {corrections:.3g} corrections is more than memless.checks.MAX_CORRECTIONS="
                           f"{MAX_CORRECTIONS:.3g}; ask for fewer (or raise memless.checks.MAX_CORRECTIONS)")
    if nbytes > MAX_BYTES:
        raise MemlessError(f"{what}: {nbytes / 2 ** 30:.3g} GiB of arrays is more than memless.checks.MAX_BYTES="
                           f"{MAX_BYTES / 2 ** 30:.3g} GiB; ask for less (or raise memless.checks.MAX_BYTES)")


def history_work(steps: int, window: Optional[int] = None) -> int:
    """History entries a corrected memoryless path of ``steps`` steps reads with the history method
    (M^(n) at every n: at least 32 terms of n + 1 entries each, or window - 1 terms of ``window``
    entries): the budget's measure for optimizers that have no momentum form."""
    if window is not None:
        return steps * max(int(window), 1) ** 2
    return sum(min(n, 32) * (n + 1) for n in range(min(steps, 33))) + max(steps - 33, 0) * 32 * (steps + 34) // 2


def check_callback(value: Any, name: str, signature: str):
    """None or a callable (its ``signature`` is named in the error)."""
    if value is not None and not callable(value):
        raise MemlessError(f"{name} must be a callable {signature} or None, got {shown(value)}")
    return value


def check_count(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in lo..hi (a bounded size: grid cells, points, steps)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise MemlessError(f"{name} must be an integer in {lo}..{hi}, got {shown(value)}")
    return int(value)


# ----------------------------------------------------------------------------
# Parameters and optimizers
# ----------------------------------------------------------------------------


def check_theta(theta: Any, name: str = "theta") -> np.ndarray:
    """theta as a finite, non-empty, real 1-D float array (a copy)."""
    if np.iscomplexobj(theta):
        raise LossError(f"{name} must be real, got a complex array")
    try:
        arr = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        raise LossError(f"{name} must be a 1-D array of real numbers, got {type(theta).__name__}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise LossError(
            f"{name} must be a non-empty 1-D array of parameters, got shape {arr.shape}; "
            "flatten structured parameters first (e.g. autograd.misc.flatten)")
    if arr.size > MAX_PARAMETERS:
        raise LossError(f"{name} has {arr.size:.3g} parameters, more than memless.checks.MAX_PARAMETERS="
                        f"{MAX_PARAMETERS:.3g} (a correction holds about 20 vectors of that size: "
                        f"{20 * arr.size * 8 / 2 ** 30:.3g} GiB); raise memless.checks.MAX_PARAMETERS to try")
    if not np.all(np.isfinite(arr)):
        raise LossError(f"{name} must be finite, got {shown(arr)}")
    return arr.copy()
